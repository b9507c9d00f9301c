"""The ``lowbit`` command.

Exit status: 0 on success, 2 on a user error (one line on stderr, no
traceback), 1 on an internal error.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError, LowbitError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def load_input_array(path: str) -> np.ndarray:
    """Read a ``.npy`` input (or an ``.npz`` dataset's ``x_test``) without pickle.

    uint8 images are scaled to float32 in [0, 1]; (N, H, W) gets a channel axis
    and (N, H, W, C) is moved to NCHW.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file not found: {p}")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"cannot read {p} as a numpy .npy/.npz file ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        key = next((k for k in ("x_test", "x", "x_train") if k in keys), None)
        if key is None:
            raise InputError(f"{p} has keys {keys}; expected x_test, x or x_train")
        data = data[key]
    if data.dtype == np.uint8:
        data = data.astype(np.float32) / np.float32(255)
        if data.ndim == 3:
            data = data[:, None]
        elif data.ndim == 4 and data.shape[-1] in (1, 3) and data.shape[1] not in (1, 3):
            data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))
    return data


def cmd_run(args) -> int:
    from . import load
    from .io.atomic import save_npy, save_npz

    if args.precision != "fp32":
        raise LowbitError(f"precision {args.precision!r} needs a quantized .lowbit model; only fp32 runs an .onnx file")
    model = load(args.model)
    x = load_input_array(args.input)
    start = time.perf_counter()
    result = model.run(x, batch_size=args.batch_size, threads=args.threads)
    seconds = time.perf_counter() - start
    outputs = result if isinstance(result, dict) else {model.output_names[0]: result}
    if args.output:
        if args.output.endswith(".npz"):
            save_npz(outputs, args.output)
        elif len(outputs) > 1:
            raise LowbitError(f"the model has {len(outputs)} outputs; write them with --output FILE.npz")
        else:
            save_npy(next(iter(outputs.values())), args.output)
    n = len(x)
    print(f"ran {n} input(s) in {seconds:.3f} s ({n / seconds:,.0f} img/s incl. compile)", file=sys.stderr)
    for name, value in outputs.items():
        line = f"{name}: shape {value.shape}, dtype {value.dtype}"
        if value.ndim == 2 and value.shape[1] > 1:
            line += f", argmax[:10] = {value.argmax(axis=1)[:10].tolist()}"
        print(line)
    if args.output:
        print(f"wrote {args.output}")
    return 0


def cmd_inspect(args) -> int:
    from . import load

    model = load(args.model)
    graph = model.graph
    print(f"model: {args.model}  (opset {graph.opset}; {graph.metadata.get('producer') or 'unknown producer'})")
    for info in graph.inputs:
        print(f"input  {info.name}: {info.describe_shape()} {info.dtype}")
    for info in graph.outputs:
        print(f"output {info.name}: {info.describe_shape()} {info.dtype}")
    print()
    print(model.summary())
    return 0


def cmd_train(args) -> int:
    try:
        from models.train import main as train_main
    except ImportError:
        raise LowbitError("the training recipes (models/) are not installed; run from a source checkout") from None
    argv = [args.name]
    if args.epochs is not None:
        argv += ["--epochs", str(args.epochs)]
    if args.out:
        argv += ["--out", args.out]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    return int(train_main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowbit", description="Reduced-precision inference for CNNs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a model on an input array")
    run.add_argument("model", help="model file (.onnx)")
    run.add_argument("--input", required=True, help="input .npy (float32 NCHW, or uint8 images)")
    run.add_argument("--output", help="write the output to this .npy (or .npz for several outputs)")
    run.add_argument("--precision", default="fp32", help="precision to run at (default fp32)")
    run.add_argument("--batch-size", type=positive_int, default=None, help="largest batch run at once (default 256)")
    run.add_argument("--threads", type=positive_int, default=None, help="threads (default: all cores)")
    run.set_defaults(func=cmd_run)

    inspect = sub.add_parser("inspect", help="list layers, shapes, params and MACs")
    inspect.add_argument("model")
    inspect.set_defaults(func=cmd_inspect)

    train = sub.add_parser("train", help="train a network of the model zoo (models/) from scratch")
    train.add_argument("name")
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--out")
    train.add_argument("--seed", type=int)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LowbitError as exc:
        print(f"lowbit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lowbit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
