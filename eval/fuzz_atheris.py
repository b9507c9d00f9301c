"""Coverage-guided fuzzing of lowbit's two loaders with atheris (libFuzzer for Python).

    pip install atheris                      # a dev/bench tool only: not in the `dev` extra CI installs
    python eval/fuzz_atheris.py lowbit --seconds 300
    python eval/fuzz_atheris.py onnx   --seconds 300 [--corpus DIR] [-- extra libFuzzer flags]

Targets:

``lowbit``
    the bytes are written as a ``.lowbit`` file and loaded (``lowbit.load``), then run on one
    sample when they load;
``onnx``
    the bytes are loaded as an ONNX model (``lowbit.load(bytes)``), then run on one sample.

A ``LowbitError`` is the expected answer to bad bytes; any other exception, a crash by signal or
a libFuzzer timeout/out-of-memory is a finding, and libFuzzer writes the input that caused it as
``crash-*`` / ``timeout-*`` / ``oom-*`` in the current folder.  Reproduce one with
``python eval/fuzz_atheris.py onnx crash-<hash>`` (a file argument runs that input once).

The corpus grows under ``--corpus`` (default ``~/.cache/lowbit/atheris/<target>``) and is
seeded, on the first run, from the valid seeds of ``tests/fuzz/seeds.py`` (the committed models,
the small onnx.helper graphs, and ``.lowbit`` files quantized from them), so a later run starts
where the last one stopped.  The container's size caps are lowered (graph.json 1 MiB, tensors
16 MiB) so that each input stays fast; the caps themselves are tested by the corpus in
``tests/fuzz``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _seed_corpus(target: str, folder: Path) -> None:
    """Write the valid seeds into an empty corpus folder."""
    if any(folder.iterdir()):
        return
    from tests.fuzz import seeds

    if target == "onnx":
        for name in seeds.ONNX_SEEDS:
            (folder / f"seed-{name}.onnx").write_bytes(seeds.seed_bytes(name))
        return
    import lowbit

    (folder / "seed-deep_convnet_binary.lowbit").write_bytes((ROOT / "models" / "deep_convnet_binary.lowbit").read_bytes())
    for name, precision in (("conv_basic", "fp16"), ("conv_basic", "int8"), ("conv_basic", "int4"),
                            ("conv_basic", "ternary"), ("conv_basic", "binary"), ("two_outputs", "int8")):
        model = lowbit.load(seeds.seed_bytes(name))
        quantized = lowbit.quantize(model, precision, calibration=seeds.sample_input(name, 1, batch=8))
        lowbit.save(quantized, folder / f"seed-{name}-{precision}.lowbit")


def _make_target(target: str, scratch: Path):
    import numpy as np

    import lowbit
    from lowbit.errors import LowbitError
    from lowbit.io import container

    container.MAX_GRAPH_JSON_BYTES = 1 << 20
    container.MAX_TENSOR_BYTES = 16 << 20
    path = scratch / "input.lowbit"

    def run_one(model):
        for info in model.graph.inputs:
            if info.shape is None or any(d is None or d <= 0 or d > 64 for d in info.shape[1:]) or len(info.shape) > 5:
                return  # a huge or undeclared input: loading was the point
        feeds = {i.name: np.zeros((1,) + tuple(i.shape[1:]), dtype=i.dtype or np.float32) for i in model.graph.inputs}
        if model.fixed_batch and model.fixed_batch > 64:
            return
        model.run(feeds)

    def fuzz_one(data: bytes):
        try:
            if target == "lowbit":
                path.write_bytes(data)
                model = lowbit.load(str(path))
            else:
                model = lowbit.load(data)
            run_one(model)
        except LowbitError as exc:
            if "\n" in str(exc).strip():
                raise AssertionError(f"a LowbitError message spans several lines: {str(exc)[:200]!r}") from None

    return fuzz_one


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=("lowbit", "onnx"))
    parser.add_argument("inputs", nargs="*", help="run these inputs once instead of fuzzing")
    parser.add_argument("--seconds", type=int, default=300, help="fuzzing budget (libFuzzer -max_total_time)")
    parser.add_argument("--corpus", help="corpus folder (default ~/.cache/lowbit/atheris/<target>)")
    parser.add_argument("--max-len", type=int, default=1 << 20, help="largest input libFuzzer makes (bytes)")
    args, extra = parser.parse_known_args(argv)
    try:
        import atheris
    except ImportError:
        print("fuzz_atheris: atheris is not installed; `pip install atheris` into the venv (a dev/bench tool, "
              "not part of the dev extra)", file=sys.stderr)
        return 2
    # Only the pure-Python loader layers are instrumented: atheris's bytecode hooks break Numba's
    # compilation, so every module holding @jit functions is imported first, uninstrumented.
    import lowbit.kernels.registry  # noqa: F401
    import lowbit.formats.float_formats  # noqa: F401
    import lowbit.kernels.storage  # noqa: F401
    with atheris.instrument_imports(include=["lowbit.io", "lowbit.graph", "lowbit.api", "lowbit.model",
                                             "lowbit.runtime", "lowbit.precision"],
                                    exclude=["lowbit.kernels", "lowbit.quant", "lowbit.config", "lowbit.train"]):
        import lowbit.api  # noqa: F401
        import lowbit.io.container  # noqa: F401
        import lowbit.graph.onnx_import  # noqa: F401
    scratch = Path(tempfile.mkdtemp(prefix="lowbit-atheris-"))
    fuzz_one = _make_target(args.target, scratch)
    if args.inputs:
        for name in args.inputs:
            fuzz_one(Path(name).read_bytes())
            print(f"{name}: no finding")
        return 0
    corpus = Path(args.corpus or Path.home() / ".cache" / "lowbit" / "atheris" / args.target)
    corpus.mkdir(parents=True, exist_ok=True)
    _seed_corpus(args.target, corpus)
    flags = [sys.argv[0], str(corpus), f"-max_total_time={args.seconds}", f"-max_len={args.max_len}",
             "-timeout=20", "-rss_limit_mb=2048"] + [f for f in extra if f != "--"]
    atheris.Setup(flags, fuzz_one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
