"""The ``lowbit`` command.

Exit status: 0 on success; 2 on a user error (one line on stderr, no
traceback); 1 on an internal error (a bug: one line, the traceback with
``--debug`` or ``LOWBIT_DEBUG=1``); 130 on Ctrl-C and 143 on SIGTERM, after
removing the temporary files of unfinished writes.  Only the standard
library is imported before :func:`main` starts, so an early Ctrl-C exits
cleanly too.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from .errors import InputError, LowbitError


def _checked(convert, ok, expected: str):
    """An argparse ``type``: ``convert(text)``, accepted when ``ok(value)``, else a one-line error."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


positive_int = _checked(int, lambda v: 1 <= v < 2 ** 31, "a positive integer below 2**31")
fraction = _checked(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
positive_float = _checked(float, lambda v: 0.0 < v < math.inf, "a positive number")
decay_rate = _checked(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
points = _checked(float, lambda v: 0.0 <= v <= 100.0, "a number of accuracy points in [0, 100]")
percent = _checked(float, lambda v: 0.0 <= v <= 100.0, "a percentage in [0, 100]")
decibels = _checked(float, math.isfinite, "a number of dB")
activation_bits = _checked(int, lambda v: 2 <= v <= 8, "an integer from 2 to 8")
image_size = _checked(lambda t: tuple(int(v) for v in t.lower().replace(",", "x").split("x")),
                      lambda v: len(v) in (1, 2) and min(v) >= 1, "H or HxW (positive integers, e.g. 224 or 224x224)")
float_list = _checked(lambda t: tuple(float(v) for v in t.split(",")),
                      lambda v: len(v) in (1, 3) and all(math.isfinite(x) for x in v),
                      "one or three comma-separated numbers, e.g. 0.485,0.456,0.406")


def load_input_array(path: str, keys=("x_test", "x", "x_train")):
    """Read a ``.npy`` array, or the first of ``keys`` in an ``.npz`` dataset, without pickle.

    uint8 images go through :func:`lowbit.data.preprocess` (``/255``, channel
    axis first); other arrays are returned as stored.
    """
    import numpy as np

    from .data import preprocess

    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file not found: {p}")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"cannot read {p} as a numpy .npy/.npz file ({str(exc).splitlines()[0]})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        names = list(data.keys())
        key = next((k for k in keys if k in names), None)
        if key is None:
            raise InputError(f"{p} has keys {names}; expected one of {list(keys)}")
        data = data[key]
    if data.dtype == np.uint8:
        data = preprocess(data)
    return data


def cmd_run(args) -> int:
    from . import load
    from .io.atomic import save_npy, save_npz

    model = load(args.model)
    stored = model.graph.metadata.get("precision", "fp32")
    if args.precision and args.precision != stored:
        raise LowbitError(f"{args.model} holds a {stored} model, not {args.precision}; "
                          f"make one with: lowbit quantize MODEL.onnx --precision {args.precision} -o OUT.lowbit")
    x = load_input_array(args.input)
    _check_finite(x, args.input, stored, args.strict)
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


def _check_finite(x, label: str, precision: str, strict: bool) -> None:
    """Report NaN and infinity in a float input: refused with ``--strict``, else a warning.

    Float precisions propagate them; integer models clamp an infinity to the
    end of their range and NaN to an arbitrary level, and binary models read
    NaN as +1, so their outputs would look confident and mean nothing.
    """
    import numpy as np

    if not np.issubdtype(np.asarray(x).dtype, np.floating):
        return
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if not bad:
        return
    message = f"{label} holds {bad:,} NaN or infinite value(s)"
    if strict:
        raise InputError(f"{message}; expected finite inputs (--strict)")
    consequence = "they propagate to the outputs" if precision.startswith(("fp", "bf")) else \
        f"a {precision} model cannot represent them, so the affected outputs are meaningless"
    print(f"lowbit: warning: {message}; {consequence}", file=sys.stderr)


def _ort_options(args) -> dict:
    """The onnxruntime-spelled flags of ``lowbit quantize`` given, as :func:`lowbit.quantize` options."""
    options = {"per_channel": True} if args.per_channel else {}
    if args.op_types_to_quantize:
        options["op_types_to_quantize"] = [t for t in args.op_types_to_quantize.split(",") if t]
    for key in ("weight_type", "calibrate_method"):
        if getattr(args, key):
            options[key] = getattr(args, key)
    return options


def cmd_quantize(args) -> int:
    from . import load, quantize, save
    from .precision import get as get_precision

    try:
        precision = get_precision(args.precision)
    except ValueError as exc:
        raise LowbitError(str(exc)) from None
    model = load(args.model)
    calibration = None
    if args.calibration:
        calibration = load_input_array(args.calibration, keys=("x_train", "x_test", "x"))
    options = {}
    if precision.kind in ("int", "ternary"):
        options["activation_type"] = args.activation_type
    if not precision.is_float:
        for key in ("first_layer", "last_layer"):
            choice = getattr(args, key)
            if choice == "int8" and precision.kind == "binary":
                raise LowbitError(f"--{key.replace('_', '-')} int8 is not available for binary; use quantized or fp32")
            if choice != "default":
                options[key] = ("binary" if precision.kind == "binary" else "quantized") if choice == "quantized" \
                    else choice
    exclude = [n for n in (args.exclude or "").split(",") if n]
    options.update(_ort_options(args))
    options.update(post_training_options(args, precision))
    quantized = quantize(model, precision, calibration=calibration, method=args.method,
                         calibration_size=args.calibration_size, nodes_to_exclude=exclude, **options)
    save(quantized, args.output)
    size = Path(args.output).stat().st_size
    original = Path(args.model).stat().st_size
    print(f"wrote {args.output}: {precision.name}, {size:,} bytes ({size / original:.1%} of {args.model})")
    return 0


def post_training_options(args, precision=None) -> dict:
    """``lowbit.quantize`` keywords of ``--equalize``, ``--bias-correction``, ``--adaround`` and ``--activation-bits``.

    With ``precision`` (``lowbit quantize``) a flag that cannot apply to it is
    a user error; a sweep (``precision`` None) applies each where it can.
    """
    options = {}
    if args.equalize:
        options["equalize"] = True
    if args.bias_correction:
        options["bias_correction"] = True
    if args.adaround:
        options["adaround"] = {"iterations": args.adaround_iterations} if args.adaround_iterations else True
    elif args.adaround_iterations:
        raise InputError("--adaround-iterations needs --adaround")
    if args.activation_bits:
        options["activation_bits"] = args.activation_bits
    if precision is not None and precision.kind not in ("int", "ternary"):
        wrong = [f for f, k in (("--bias-correction", "bias_correction"), ("--adaround", "adaround"),
                                ("--activation-bits", "activation_bits")) if k in options]
        if wrong:
            raise InputError(f"{', '.join(wrong)} apply to int2..int8 and ternary, not {precision.name}")
    return options


def add_post_training_flags(parser) -> None:
    """The post-training algorithm flags shared by ``lowbit quantize`` and ``lowbit eval``."""
    parser.add_argument("--equalize", action="store_true",
                        help="cross-layer equalization and high-bias absorption first (exact in fp32)")
    parser.add_argument("--bias-correction", action="store_true",
                        help="empirical bias correction of each layer's mean weight-quantization error")
    parser.add_argument("--adaround", action="store_true", help="learn each weight's rounding (AdaRound) on the "
                        "calibration data, layer by layer")
    parser.add_argument("--adaround-iterations", type=positive_int, metavar="N",
                        help="AdaRound iterations per layer (default 1000)")
    parser.add_argument("--activation-bits", type=activation_bits, metavar="N",
                        help="activation bits 2..8 (default: the weight bits; 8 for ternary)")


def cmd_export(args) -> int:
    import onnx

    from . import load
    from .graph.onnx_export import check_onnxruntime, export_onnx
    from .graph.qonnx_export import export_qonnx
    from .io.atomic import atomic_path

    model = load(args.model)
    # Checked before anything is written: onnx's full checker (in export_onnx), then an onnxruntime
    # session (standard ONNX only: QONNX's custom domain does not run there); either failing is an
    # ExportError naming the node (exit 2, no file).
    fmt = getattr(args, "format", "onnx")
    if fmt == "qonnx":
        proto, opened = export_qonnx(model.graph), None
    else:
        proto = export_onnx(model.graph, low_bits=fmt == "qdq")
        opened = check_onnxruntime(proto)
    with atomic_path(args.output) as tmp:
        onnx.save(proto, str(tmp))
    checks = {True: "onnx full check, onnxruntime session", False: "onnx full check; onnxruntime not installed",
              None: "QONNX; onnx full check"}[opened]
    print(f"wrote {args.output} ({model.graph.metadata.get('precision', 'fp32')}, opset "
          f"{proto.opset_import[0].version}; {checks})")
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
    post = graph.metadata.get("post_training")
    if post:
        print("post-training: " + describe_post_training(post))
    reasons = {}
    for node in graph.nodes:
        if "fallback" in node.quant:
            reasons[node.quant["fallback"]] = reasons.get(node.quant["fallback"], 0) + 1
    if reasons:
        print(f"fp32 fallbacks: {sum(reasons.values())} nodes (" +
              "; ".join(f"{n} x {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])) + ")")
    print()
    print(model.summary())
    return 0


def describe_post_training(post: dict) -> str:
    """One line of what ``graph.metadata["post_training"]`` records."""
    parts = []
    if "equalize" in post:
        eq = post["equalize"]
        parts.append(f"equalize ({len(eq.get('pairs', []))} layer pairs, {eq.get('iterations', 0)} sweeps, "
                     f"high bias absorbed in {len(eq.get('absorbed', {}))} layers)")
    if "adaround" in post:
        ada = post["adaround"]
        parts.append(f"adaround ({len(ada.get('layers', {}))} layers, {ada.get('iterations')} iterations, "
                     f"{ada.get('seconds', 0.0):.1f} s)")
    if "bias_correction" in post:
        parts.append(f"bias correction ({len(post['bias_correction'].get('layers', {}))} layers, "
                     f"{post['bias_correction'].get('inputs', '')} inputs)")
    if "activation_bits" in post:
        parts.append(f"activation bits {post['activation_bits']}")
    return "; ".join(parts)


DEFAULT_PRECISIONS = "fp32,fp16,bf16,fp8-e4m3,fp8-e5m2,int8,int4,int2,ternary,binary"


IMAGE_FOLDER_FLAGS = ("labels", "preprocess", "size", "mean", "std", "bgr")


def load_eval_data(args, source=None):
    """(x_test, y_test, calibration, dataset label) for ``lowbit eval``.

    With ``--data FOLDER`` (see :func:`load_image_folder`) ``x_test`` is a
    stream of ``(x, y)`` batches and ``y_test`` the labels (None without).
    """
    from .data import load_npz, mnist

    if args.data and Path(args.data).is_dir():
        return load_image_folder(args, source)
    given = [f"--{flag}" for flag in IMAGE_FOLDER_FLAGS if getattr(args, flag, None) not in (None, False)]
    if given:
        raise InputError(f"{', '.join(given)} apply to image folders; pass --data FOLDER "
                         f"(got {args.data or 'the bundled MNIST'})")
    if args.data:
        x_test, y_test = load_npz(args.data, "test")
        label = Path(args.data).name
    else:
        x_test, y_test = mnist("test")
        label = "MNIST (bundled)"
    if args.calibration:
        calibration = load_input_array(args.calibration, keys=("x_train", "x_test", "x"))
    elif args.data:
        calibration = load_input_array(args.data, keys=("x_train", "x_test"))
    else:
        calibration = mnist("train")[0][:args.calibration_size]
    if args.limit:
        x_test, y_test = x_test[:args.limit], y_test[:args.limit]
    return x_test, y_test, calibration[:args.calibration_size], label


def load_image_folder(args, source):
    """Stream a folder of JPEG/PNG images of any size for ``lowbit eval --data FOLDER``.

    Labels come from class sub-folders or ``--labels FILE`` (lines
    ``filename label``); without either the sweep is label-free.  With no
    preprocessing flags every image is resized to the model's input size
    (H, W from its input shape; ``--size`` for dynamic ones), converted to
    RGB (L for a 1-channel input) and scaled to [0, 1]; ``--preprocess
    imagenet`` resizes the shorter side to 256 (for 224), centre-crops and
    normalises with the ImageNet mean/std; ``--size``, ``--mean``, ``--std``
    and ``--bgr`` override.  The line printed to stderr says which.
    Calibration uses the first ``--calibration-size`` images (or
    ``--calibration FOLDER`` / ``.npz``), decoded into one array.
    """
    import numpy as np

    from . import load
    from .data.images import ImageBatches, preprocessing_for, scan_folder

    graph = load(str(source)).graph
    if len(graph.inputs) != 1:
        raise InputError(f"the model has {len(graph.inputs)} inputs {graph.input_names()}; "
                         "image folders feed one-input models")
    prep = preprocessing_for(graph.inputs[0].shape, preset=args.preprocess, size=args.size, mean=args.mean,
                             std=args.std, bgr=args.bgr)
    print(f"preprocessing: {prep.describe()}", file=sys.stderr)
    images = scan_folder(args.data, labels=args.labels)
    if images.ignored:
        print(f"lowbit: note: {images.ignored:,} image(s) under {args.data} are not in {args.labels}; "
              "they are not evaluated", file=sys.stderr)
    if args.limit:
        images = images.head(args.limit)
    batches = ImageBatches(images, prep, batch_size=args.batch_size)
    if args.calibration and Path(args.calibration).is_dir():
        calibration = ImageBatches(scan_folder(args.calibration).head(args.calibration_size), prep,
                                   batch_size=args.batch_size).arrays()[0]
    elif args.calibration:
        calibration = load_input_array(args.calibration, keys=("x_train", "x_test", "x"))[:args.calibration_size]
    else:
        calibration = ImageBatches(images.head(args.calibration_size), prep, batch_size=args.batch_size).arrays()[0]
    y = None if images.labels is None else np.asarray(images.labels, dtype=np.int64)
    return batches, y, calibration, f"{Path(args.data).name}/ (image folder)"


def cmd_eval(args) -> int:
    from .precision import get as get_precision
    from .zoo import model_path

    source = Path(args.model) if args.model else model_path()
    if not source.is_file():
        raise InputError(f"model file not found: {source}")
    try:
        precisions = [get_precision(p).name for p in args.precisions.split(",") if p.strip()]
        if args.sensitivity:
            args.sensitivity = ",".join(get_precision(p).name for p in args.sensitivity.split(",") if p.strip())
    except ValueError as exc:
        raise LowbitError(str(exc)) from None
    if not precisions:
        raise LowbitError(f"--precisions {args.precisions!r} names no precision; expected e.g. fp32,int8")
    args.include = _included(args)
    mixed_budget(args)  # several budgets: refused before any work
    x_test, y_test, calibration, label = load_eval_data(args, source)
    if y_test is not None and _scores_output(source):
        _check_labels(x_test, y_test, source)
    out = Path(args.out)
    with removed_on_failure(out):
        out.mkdir(parents=True, exist_ok=True)
        return _eval_into(args, source, precisions, x_test, y_test, calibration, label, out)


def _included(args) -> list:
    """``--include`` files, checked; the seed's fine-tuned binary model for the seed network's default sweep."""
    from .zoo import DEFAULT_MODEL, MODELS_DIR

    if args.include is None:
        seed = MODELS_DIR / f"{DEFAULT_MODEL}_binary.lowbit"
        default_sweep = not args.model and args.precisions == DEFAULT_PRECISIONS and not args.data
        return [seed] if default_sweep and seed.is_file() else []
    paths = [Path(p) for p in args.include]
    for path in paths:
        if not path.is_file():
            raise InputError(f"--include {path}: file not found")
        if path.suffix != ".lowbit":
            raise InputError(f"--include {path}: expected a quantized .lowbit file (an .onnx model is the sweep's "
                             "MODEL argument)")
    return paths


def _scores_output(source) -> bool:
    """Whether the model's first output is (or may be) class scores (N, K): labels only apply to those."""
    from . import load

    outputs = load(str(source)).graph.outputs
    return not outputs or outputs[0].shape is None or len(outputs[0].shape) == 2


def _check_labels(x_test, y_test, source) -> None:
    """Labels are integers in [0, number of classes), one per sample, before anything is written."""
    import numpy as np

    from . import load

    y = np.asarray(y_test)
    if len(y) != len(x_test):
        raise InputError(f"the data has {len(x_test)} samples but {len(y)} labels; expected one label per sample")
    if y.size == 0:
        return
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels have dtype {y.dtype}; expected integer class indices")
    outputs = load(str(source)).graph.outputs
    classes = outputs[0].shape[-1] if outputs and outputs[0].shape and outputs[0].shape[-1] else None
    if y.min() < 0 or (classes is not None and y.max() >= classes):
        raise InputError(f"labels span [{y.min()}, {y.max()}]; expected class indices in [0, {classes or 'classes'})")


def _eval_into(args, source, precisions, x_test, y_test, calibration, label, out) -> int:
    from .console import is_quiet
    from .evaluate.plots import plot_sweep
    from .evaluate.report import reference_lines, text_table, write_results
    from .evaluate.sweep import sweep
    from .data.images import ImageBatches

    images = x_test.images if isinstance(x_test, ImageBatches) else None
    if images is not None and (args.sensitivity or args.max_drop is not None):
        # both measure accuracy drops over arrays: decode the folder into memory (bounded)
        if not images.labelled:
            raise InputError(f"--{'sensitivity' if args.sensitivity else 'max-drop'} measures accuracy drops and "
                             f"needs labels; {args.data} has no class sub-folders and no --labels FILE")
        x_test, y_test = x_test.arrays(limit_bytes=IN_MEMORY_BYTES)
    if args.sensitivity:
        return _sensitivity_into(args, source, x_test, y_test, calibration, out)
    result = sweep(source, x_test, y_test, precisions, calibration=calibration, method=args.method, out_dir=out,
                   batch_size=args.batch_size, threads=args.threads, jobs=args.jobs, dataset_label=label,
                   include=args.include, reference=not args.no_reference,
                   options=post_training_options(args) or None)
    if images is not None:
        result.skipped = len(images.skipped)
        result.preprocessing = x_test.preprocessing.describe()
        if images.labelled and result.output != "scores":
            print(f"lowbit: note: the labels of {args.data} are not used: the model's output is not class scores "
                  "(N, K)", file=sys.stderr)
    if mixed_budget(args):
        result.results.append(mixed_precision_row(args, source, x_test, y_test, calibration, result, out))
    import shlex

    result.command = "lowbit " + shlex.join(getattr(args, "argv", []))
    result.settings = {k: v for k, v in _eval_settings(args).items() if v is not None}
    paths = write_results(result, out)
    plots = plot_sweep([result], out)
    paths += plots + [_write_report(result, out, plots)]
    if not is_quiet():
        print(text_table(result))
        for line in reference_lines(result):
            print(line)
        if result.skipped:
            print(f"skipped {result.skipped:,} unreadable file(s) (warnings above)")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _eval_settings(args) -> dict:
    """The settings shown in report.html beside the calibration method and sample count."""
    return {"calibration data": args.calibration or (args.data and f"{args.data} (x_train, else its first images)")
            or "MNIST train (bundled)", "calibration size": args.calibration_size, "batch size": args.batch_size,
            "threads": args.threads or "all cores", "jobs": args.jobs, "test samples limit": args.limit,
            "included models": ", ".join(str(p) for p in args.include) or None}


def _write_report(result, out, plots):
    """report.html for ``result`` with the sweep's plots and any sensitivity plots in ``out``."""
    from .evaluate.html_report import write_html

    images = list(plots) + sorted(p for p in out.glob("sensitivity_*.png") if p not in plots)
    return write_html(result, out, images=images, command=result.command, settings=result.settings)


def _sensitivity_into(args, source, x_test, y_test, calibration, out) -> int:
    """``--sensitivity P[,P...]``: per-layer rows, plots, the heatmap; report.html refreshed if a sweep is there."""
    import json

    from .console import is_quiet
    from .evaluate.plots import (SENSITIVITY_NOTE, plot_sensitivity, plot_sensitivity_heatmap, plot_sweep,
                                 sensitivity_table)
    from .evaluate.report import sensitivity_text
    from .evaluate.sweep import SweepResult
    from .evaluate.sensitivity import sensitivity, write_sensitivity

    paths = []
    for precision in args.sensitivity.split(","):
        rows = sensitivity(str(source), x_test, y_test, precision, calibration=calibration, method=args.method,
                           batch_size=args.batch_size, threads=args.threads)
        paths += write_sensitivity(rows, precision, out)
        paths.append(plot_sensitivity(rows, precision, out / f"sensitivity_{precision}.png"))
        if not is_quiet():
            print(sensitivity_text(rows, precision))
    table, title = sensitivity_table(out)
    if len(table) > 1:
        paths.append(plot_sensitivity_heatmap(table, out / "sensitivity_heatmap.png", title, SENSITIVITY_NOTE))
    if (out / "results.json").is_file():  # a sweep in the same folder: its page shows the new sensitivity too
        try:
            result = SweepResult.from_dict(json.loads((out / "results.json").read_text()))
        except (ValueError, KeyError, TypeError):
            result = None
        if result is not None:
            paths.append(_write_report(result, out, plot_sweep([result], out)))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


IN_MEMORY_BYTES = 4 << 30  # --sensitivity / --max-drop on an image folder decode it into one array of at most this


def mixed_budget(args) -> dict:
    """The one mixed-precision budget given (``--max-drop``, ``--min-agreement`` or ``--min-sqnr``), or {}."""
    given = {k: getattr(args, k) for k in ("max_drop", "min_agreement", "min_sqnr") if getattr(args, k) is not None}
    if len(given) > 1:
        raise InputError(f"give one of {', '.join('--' + k.replace('_', '-') for k in given)}, not several")
    return given


def validation_data(args, need_labels: bool) -> tuple:
    """``(x_val, y_val, description)``: the validation split of ``lowbit eval``'s mixed-precision search.

    Taken from the training side of the data the calibration samples come
    from (``--calibration`` .npz/.npy, else ``x_train``/``y_train`` of ``--data``,
    else the bundled MNIST training set): calibration is the first
    ``--calibration-size`` samples, validation the last 5,000 of the rest
    (:func:`lowbit.evaluate.mixed.validation_split`), so it is disjoint from
    both the calibration samples and the test set.
    """
    import numpy as np

    from .data import mnist
    from .evaluate.mixed import validation_split

    y = None
    if args.calibration and not Path(args.calibration).is_dir():
        x = load_input_array(args.calibration, keys=("x_train", "x_test", "x"))
        origin = Path(args.calibration).name
        if args.calibration.endswith(".npz"):
            with np.load(args.calibration, allow_pickle=False) as data:
                y = data["y_train"] if "y_train" in data and "x_train" in data else None
    elif args.data and not Path(args.data).is_dir():
        x = load_input_array(args.data, keys=("x_train",))
        origin = f"x_train of {Path(args.data).name}"
        with np.load(args.data, allow_pickle=False) as data:
            y = data["y_train"] if "y_train" in data else None
    elif not args.data:
        x, y = mnist("train")
        origin = "the bundled MNIST training set"
    else:
        raise InputError("a mixed-precision search on an image folder needs a training-side split for validation: "
                         "pass --calibration DATA.npz (x_train, and y_train for --max-drop)")
    _, val = validation_split(len(x), args.calibration_size)
    if need_labels and y is None:
        raise InputError(f"--max-drop needs labels for the validation split; {origin} has none "
                         "(use --min-agreement or --min-sqnr)")
    return x[val], None if y is None else np.asarray(y)[val], \
        f"{len(val):,} validation samples: the last of {origin} (calibration: its first {args.calibration_size:,})"


def mixed_precision_row(args, source, x_test, y_test, calibration, result, out):
    """Search a mixed-precision plan within ``--max-drop``; save it and return its sweep row."""
    from . import save
    from .evaluate.metrics import agreement, top1, topk
    from .evaluate.report import write_text
    from .evaluate.sweep import PrecisionResult, timed_run
    from .evaluate.mixed import plan_json, search

    x_val, y_val, split = validation_data(args, need_labels=args.max_drop is not None)
    print(f"mixed precision: budget checked on {split}", file=sys.stderr)
    found = search(str(source), x_val, y_val, **mixed_budget(args), calibration=calibration, method=args.method,
                   batch_size=args.batch_size, threads=args.threads)
    found["validation"]["split"] = split
    write_text(out / "mixed_plan.json", plan_json(found) + "\n")
    path = out / "models" / "mixed.lowbit"
    save(found["model"], path)
    from . import load

    model = load(path)
    scores, seconds, compile_seconds = timed_run(model, x_test, args.batch_size, args.threads)
    reference = load(result.get("fp32").model_file).run(x_test, batch_size=args.batch_size, threads=args.threads)
    bits = round(found["mean_weight_bits"], 2)  # parameter-weighted mean of the layers' weight bits
    print(f"mixed precision within {', '.join(f'{k} {v}' for k, v in found['budget'].items())} on validation: " +
          ", ".join(f"{k}={v}" for k, v in found["plan"].items()), file=sys.stderr)
    return PrecisionResult(precision="mixed", bits=bits, accuracy=top1(scores, y_test), top5=topk(scores, y_test),
                           drop=100.0 * (result.get("fp32").accuracy - top1(scores, y_test)),
                           agreement=agreement(scores, reference), size_bytes=path.stat().st_size,
                           images_per_s=len(x_test) / seconds, calibration_seconds=0.0,
                           compile_seconds=compile_seconds, overflow=0, model_file=str(path))


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


def cmd_finetune(args) -> int:
    from .finetune import main_finetune
    from .precision import get as get_precision

    try:
        args.precision = get_precision(args.precision).name
    except ValueError as exc:
        raise LowbitError(str(exc)) from None
    if args.precision not in FINETUNE_PRECISIONS:
        raise LowbitError(f"finetune supports {', '.join(FINETUNE_PRECISIONS)}; got {args.precision}")
    return int(main_finetune(args) or 0)


FINETUNE_PRECISIONS = ("binary", "ternary", "int4", "int2")


class _Parser(argparse.ArgumentParser):
    """Records the command line (``args.argv``, for reports) and applies ``--quiet`` when it parses."""

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        parsed.argv = list(sys.argv[1:] if args is None else args)
        from .console import set_quiet

        set_quiet(parsed.quiet)
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lowbit", description="Reduced-precision inference for CNNs.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars and no tables (errors, warnings and 'wrote' lines only)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a model on an input array")
    run.add_argument("model", help="model file (.onnx)")
    run.add_argument("--input", required=True, help="input .npy (float32 NCHW, or uint8 images)")
    run.add_argument("--output", help="write the output to this .npy (or .npz for several outputs)")
    run.add_argument("--precision", help="check that the model holds this precision (a .lowbit file from "
                     "`lowbit quantize` carries its own)")
    run.add_argument("--batch-size", type=positive_int, default=None, help="largest batch run at once (default 256)")
    run.add_argument("--threads", type=positive_int, default=None, help="threads (default: all cores)")
    run.add_argument("--strict", action="store_true",
                     help="refuse inputs holding NaN or infinity (by default: a warning, as integer and binary "
                          "models cannot carry them)")
    run.set_defaults(func=cmd_run)

    quant = sub.add_parser("quantize", help="quantize an fp32 ONNX model into a .lowbit file")
    quant.add_argument("model", help="fp32 model (.onnx)")
    quant.add_argument("--precision", required=True,
                       help="fp16, bf16, fp8-e4m3, fp8-e5m2, int8, int2..int7, ternary or binary")
    quant.add_argument("--calibration", help="calibration data: .npz (x_train, else x_test) or .npy")
    quant.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy", "mse"],
                       help="activation range method (default minmax)")
    quant.add_argument("--calibration-size", type=positive_int, default=1000,
                       help="calibration samples used (default 1000)")
    quant.add_argument("--activation-type", default="uint8", choices=["uint8", "int8", "QUInt8", "QInt8"],
                       help="integer activations: uint8 asymmetric (default) or int8 symmetric (onnxruntime's "
                            "QUInt8 / QInt8 also accepted)")
    quant.add_argument("--first-layer", default="default", choices=["default", "quantized", "int8", "fp32"],
                       help="first weighted layer: at the target precision, int8 or fp32 (default: quantized for "
                            "int8, int8 for int2..int7 and ternary, fp32 for binary)")
    quant.add_argument("--last-layer", default="default", choices=["default", "quantized", "int8", "fp32"],
                       help="last weighted layer, as --first-layer")
    quant.add_argument("--exclude", "--nodes-to-exclude", dest="exclude",
                       help="comma-separated node names or op types to keep in fp32")
    # onnxruntime quantize_static's names (lowbit/quant/ort_names.py)
    quant.add_argument("--per-channel", action="store_true", help="accepted: weights are always per channel")
    quant.add_argument("--op-types-to-quantize", metavar="OP[,OP...]", help="quantize only these op types")
    quant.add_argument("--weight-type", choices=["QInt8"], help="accepted: weights are always symmetric int8")
    quant.add_argument("--calibrate-method", choices=["MinMax", "Entropy", "Percentile"],
                       help="onnxruntime's name for --method minmax / entropy / percentile")
    add_post_training_flags(quant)
    quant.add_argument("-o", "--output", required=True, help="output .lowbit file")
    quant.set_defaults(func=cmd_quantize)

    export = sub.add_parser("export", help="export a .lowbit (or .onnx) model to ONNX (QDQ for integer models)")
    export.add_argument("model")
    export.add_argument("-o", "--output", required=True)
    export.add_argument("--format", choices=["onnx", "qdq", "qonnx"], default="onnx",
                        help="onnx: fp32 as is, int8 as QDQ (default); qdq: also int2..int7/ternary layers "
                        "(4-bit as INT4/UINT4 at opset 21, other widths as 8-bit QDQ of the k-bit values); "
                        "qonnx: Quant/BipolarQuant nodes for any width, binary included (FINN/Brevitas)")
    export.set_defaults(func=cmd_export)

    inspect = sub.add_parser("inspect", help="list layers, shapes, params, MACs, precision and bytes")
    inspect.add_argument("model")
    inspect.set_defaults(func=cmd_inspect)

    ev = sub.add_parser("eval", help="sweep precisions: accuracy, drop, agreement, size, speed, plots")
    ev.add_argument("model", nargs="?", help="fp32 .onnx model (default: models/deep_convnet.onnx)")
    ev.add_argument("--data", help="dataset .npz with x_test, y_test, or a folder of JPEG/PNG images of any size "
                    "(labels from class sub-folders or --labels; none: agreement with fp32) "
                    "(default: the bundled MNIST)")
    ev.add_argument("--labels", metavar="FILE", help="labels of an image folder: lines 'filename label' "
                    "(class index or name)")
    ev.add_argument("--preprocess", choices=["imagenet"], help="image folder preset: imagenet = resize shorter side "
                    "to 256, centre crop 224, RGB, ImageNet mean/std (default: resize to the model's input size, "
                    "RGB, /255)")
    ev.add_argument("--size", type=image_size, metavar="H[xW]",
                    help="image folder input size (default: the model's input H, W)")
    ev.add_argument("--mean", type=float_list, metavar="M[,M,M]",
                    help="image folder mean per channel, on the [0, 1] scale, in the model's channel order")
    ev.add_argument("--std", type=float_list, metavar="S[,S,S]", help="image folder std per channel, as --mean")
    ev.add_argument("--bgr", action="store_true", help="image folder: feed channels in BGR order")
    ev.add_argument("--precisions", default=DEFAULT_PRECISIONS, help=f"comma-separated (default {DEFAULT_PRECISIONS})")
    ev.add_argument("--calibration", help="calibration .npz/.npy or image folder (default: x_train of --data, "
                    "the first --calibration-size images of an image folder, or MNIST train)")
    ev.add_argument("--calibration-size", type=positive_int, default=1000, help="calibration samples (default 1000)")
    ev.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy", "mse"])
    ev.add_argument("--out", default="lowbit-eval", help="output folder (default ./lowbit-eval)")
    ev.add_argument("--jobs", type=positive_int, default=1, help="evaluate precisions in N processes")
    ev.add_argument("--batch-size", type=positive_int, default=256)
    ev.add_argument("--threads", type=positive_int, default=None)
    ev.add_argument("--limit", type=positive_int, help="use only the first N test samples")
    ev.add_argument("--sensitivity", metavar="PRECISION[,P...]",
                    help="per-layer sensitivity to each PRECISION instead of a sweep (several: a heatmap too)")
    ev.add_argument("--include", action="append", metavar="FILE.lowbit", default=None,
                    help="also evaluate this quantized model (e.g. fine-tuned) as a row; repeatable (default for "
                         "the seed network's default sweep: models/deep_convnet_binary.lowbit)")
    ev.add_argument("--no-reference", action="store_true",
                    help="do not time onnxruntime fp32 / int8 as reference lines (measured when installed)")
    ev.add_argument("--max-drop", type=points, metavar="POINTS",
                    help="also search per-layer bit widths (int4/int8/fp32) within this accuracy drop, checked "
                         "on a validation split of the training side (the last 5,000 samples, disjoint from the "
                         "calibration ones); the test set only reports the plan found")
    ev.add_argument("--min-agreement", type=percent, metavar="PERCENT",
                    help="as --max-drop, with the budget: top-1 agreement with fp32 on the validation split "
                         "(no labels needed)")
    ev.add_argument("--min-sqnr", type=decibels, metavar="DB",
                    help="as --max-drop, with the budget: output SQNR against fp32 on the validation split")
    add_post_training_flags(ev)
    ev.set_defaults(func=cmd_eval)

    finetune = sub.add_parser("finetune", help="quantization-aware fine-tuning (straight-through estimator)")
    finetune.add_argument("model", help="fp32 model (.onnx) to start from")
    finetune.add_argument("--precision", required=True, help="binary, ternary, int4 or int2")
    finetune.add_argument("--data", required=True, help="training data .npz (x_train, y_train; x_test, y_test to report)")
    finetune.add_argument("--epochs", type=positive_int, help="training epochs (default 10)")
    finetune.add_argument("--seed", type=int, default=0)
    finetune.add_argument("--distill", type=fraction, default=0.0,
                          help="weight in [0, 1] of the distillation loss from the fp32 model (default 0: labels only)")
    finetune.add_argument("--temperature", type=positive_float, default=1.0, help="distillation temperature")
    finetune.add_argument("--ema", type=decay_rate, default=0.0,
                          help="end on the moving average of the weights with this decay per step, e.g. 0.999 "
                               "(default 0: the last weights)")
    finetune.add_argument("--sign-grad", choices=("hardtanh", "approx"), default="hardtanh",
                          help="surrogate gradient of binary activations: hardtanh (default) or Bi-Real's approx")
    finetune.add_argument("-o", "--output", required=True, help="output .lowbit file")
    finetune.set_defaults(func=cmd_finetune)

    train = sub.add_parser("train", help="train a network of the model zoo (models/) from scratch")
    train.add_argument("name")
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--out")
    train.add_argument("--seed", type=int)
    train.set_defaults(func=cmd_train)
    return parser


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so that unfinished writes clean up as on Ctrl-C."""


#: The signal that stopped the command, if any. A signal can land inside library code that is cleaning up
#: (a zip file closing its member) and turn into that code's own error; the exit status still follows the signal.
_STOPPED_BY = []


def _on_sigterm(signum, frame):
    _STOPPED_BY.append(signal.SIGTERM)
    raise Terminated()


def _on_sigint(signum, frame):
    _STOPPED_BY.append(signal.SIGINT)
    raise KeyboardInterrupt()


@contextlib.contextmanager
def removed_on_failure(folder: Path):
    """Yield; if the body fails, remove what it created under ``folder`` (the folder too, if it made it)."""
    existed = folder.exists()
    before = set(folder.rglob("*")) if existed else set()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        elif folder.is_dir():
            for path in sorted(set(folder.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv=None) -> int:
    """Run the ``lowbit`` command; return its exit status (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("LOWBIT_DEBUG", "") not in ("", "0")
    _STOPPED_BY.clear()
    previous = None
    if _in_main_thread():
        previous = (signal.signal(signal.SIGTERM, _on_sigterm), signal.signal(signal.SIGINT, _on_sigint))
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return args.func(args)
    except LowbitError as exc:
        print(f"lowbit: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lowbit: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("lowbit: terminated", file=sys.stderr)
        return 143
    except MemoryError:
        print("lowbit: error: out of memory; try a smaller --batch-size", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so in one line, the traceback only on request
        if _STOPPED_BY:
            interrupted = _STOPPED_BY[0] == signal.SIGINT
            print(f"lowbit: {'interrupted' if interrupted else 'terminated'}", file=sys.stderr)
            return 130 if interrupted else 143
        if debug:
            import traceback

            traceback.print_exc()
        print(f"lowbit: internal error: {type(exc).__name__}: {_first_line(exc)} (this is a bug in lowbit; "
              "rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
