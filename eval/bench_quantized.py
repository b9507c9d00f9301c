"""Whole-model throughput per precision: lowbit vs onnxruntime, in one run.

Run from the repository root (OPENBLAS variables cleared for this command only)::

    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python eval/bench_quantized.py
    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python eval/bench_quantized.py --precisions fp32,int8,int4 --repeats 7

For the deep CNN (``models/deep_convnet.onnx``, or the same architecture with
random weights when it is absent) at batch 256 and 2 threads, it prints the
median img/s of: lowbit at each precision (quantized with 1,000 MNIST
training images, minmax), onnxruntime fp32, onnxruntime int8 in QDQ form and
in QOperator form (``quantize_static``, per-channel, uint8 activations, same
calibration images), and the ratios to lowbit fp32 and to onnxruntime fp32.
A benchmark, not a test: compare ratios measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_rate(fn, x, repeats):
    fn(x[:8])  # warm-up: compiles (or loads the cache)
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def main(argv=None):
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    import lowbit
    from lowbit.data import mnist

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", default="fp32,fp16,int8,int4")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--saved", default=str(ROOT / "models" / "deep_convnet_binary.lowbit"),
                        help="also time this saved .lowbit model (default: the fine-tuned binary net; '' to skip)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp())
    model_path = ROOT / "models" / "deep_convnet.onnx"
    if not model_path.exists():
        from eval.bench_fp32 import build_deep_convnet

        model_path = tmp / "deep_convnet_random.onnx"
        build_deep_convnet(model_path)
    x_test, _ = mnist("test")
    x = np.ascontiguousarray(x_test[:args.batch])
    calibration = mnist("train")[0][:1000]
    print(f"model {model_path.name}, batch {args.batch}, threads {args.threads}, median of {args.repeats}")

    rates = {}
    base = lowbit.load(model_path)
    for name in args.precisions.split(","):
        start = time.perf_counter()
        model = lowbit.quantize(base, name, calibration=calibration)
        quantize_seconds = time.perf_counter() - start
        start = time.perf_counter()
        model.run(x[:8], threads=args.threads)
        first = time.perf_counter() - start
        rates[f"lowbit {name}"] = median_rate(lambda a: model.run(a, batch_size=args.batch, threads=args.threads),
                                              x, args.repeats)
        print(f"  lowbit {name:<9} {rates[f'lowbit {name}']:>9,.0f} img/s   (quantize {quantize_seconds:.2f} s, "
              f"first run incl. compile/cache {first:.2f} s)")

    if args.saved and Path(args.saved).exists():
        saved = lowbit.load(args.saved)
        label = f"lowbit {Path(args.saved).stem}"
        rates[label] = median_rate(lambda a: saved.run(a, batch_size=args.batch, threads=args.threads), x, args.repeats)
        print(f"  {label:<27} {rates[label]:>9,.0f} img/s   (saved model)")

    class Reader(CalibrationDataReader):
        def __init__(self, name):
            self.batches = iter([{name: calibration[i:i + 100]} for i in range(0, len(calibration), 100)])

        def get_next(self):
            return next(self.batches, None)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    input_name = ort.InferenceSession(str(model_path)).get_inputs()[0].name
    variants = {"onnxruntime fp32": model_path}
    for label, fmt in (("onnxruntime int8 QDQ", QuantFormat.QDQ), ("onnxruntime int8 QOperator", QuantFormat.QOperator)):
        out = tmp / f"{fmt.name}.onnx"
        quantize_static(str(model_path), str(out), Reader(input_name), quant_format=fmt, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        variants[label] = out
    for label, path in variants.items():
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rates[label] = median_rate(lambda a: session.run(None, {input_name: a}), x, args.repeats)
        print(f"  {label:<27} {rates[label]:>9,.0f} img/s")

    print("\nratios (higher is faster)")
    reference = rates.get("lowbit fp32")
    for label, rate in rates.items():
        parts = [f"{label:<27}"]
        if reference:
            parts.append(f"{rate / reference:5.2f}x lowbit fp32")
        parts.append(f"{rate / rates['onnxruntime fp32']:5.2f}x onnxruntime fp32")
        print("  " + "   ".join(parts))


if __name__ == "__main__":
    main()
