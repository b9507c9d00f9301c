"""onnxruntime as a reference beside a sweep: its fp32 and its own QDQ int8, timed on the same images.

onnxruntime is a development dependency, not a runtime one: it is imported
here only, when the reference is measured; without it the sweep records a
note instead.  The int8 model is onnxruntime's ``quantize_static`` in QDQ
format, per-channel weights (QInt8), QUInt8 activations and MinMax ranges,
calibrated on the sweep's calibration images.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .metrics import top1

INT8_LABEL = "onnxruntime int8 (QDQ, per-channel)"
FP32_LABEL = "onnxruntime fp32"


def _session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed_ort(path, x, y, batch_size: int, threads, repeats: int) -> dict:
    """Run ``x`` through onnxruntime ``repeats`` times after a warm-up batch.

    Returns ``{"images_per_s": median over the runs, "runs": [...], "accuracy": top-1 or None}``.
    """
    session = _session(path, threads)
    name = session.get_inputs()[0].name

    def run_all():
        return np.concatenate([session.run(None, {name: x[i:i + batch_size]})[0]
                               for i in range(0, len(x), batch_size)])

    session.run(None, {name: x[:batch_size]})
    rates, scores = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        scores = run_all()
        rates.append(len(x) / max(time.perf_counter() - start, 1e-12))
    accuracy = top1(scores, y) if y is not None and scores.ndim == 2 else None
    return {"images_per_s": float(np.median(rates)), "runs": [float(r) for r in rates], "accuracy": accuracy}


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an array, in batches."""

    def __init__(self, name, x, batch_size):
        self.batches = iter([{name: x[i:i + batch_size]} for i in range(0, len(x), batch_size)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # pragma: no cover - called by newer onnxruntime versions only
        pass


def ort_int8(source, calibration, folder, batch_size: int = 100) -> Path:
    """``source`` quantized by onnxruntime's ``quantize_static`` (QDQ, per-channel) into ``folder``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    name = _session(source, None).get_inputs()[0].name
    path = Path(folder) / "ort_int8.onnx"
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to pre-process the model goes to the root logger
    try:
        quantize_static(str(source), str(path), _Reader(name, calibration, batch_size), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.disable(previous)
    return path


def measure(source, x_test, y_test, calibration, *, batch_size: int = 256, threads=None, repeats: int = 3) -> dict:
    """``{label: {images_per_s, runs, accuracy}}`` for onnxruntime fp32 and int8, or ``{"note": why not}``."""
    try:
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import quantize_static  # noqa: F401
    except ImportError:
        return {"note": "onnxruntime is not installed: no reference timings (pip install onnxruntime)"}
    if isinstance(x_test, dict):
        return {"note": "onnxruntime reference timings are measured for one-input models only"}
    out = {}
    try:
        out[FP32_LABEL] = timed_ort(os.fspath(source), x_test, y_test, batch_size, threads, repeats)
        if calibration is not None and not isinstance(calibration, dict):
            with tempfile.TemporaryDirectory() as folder:
                path = ort_int8(source, calibration, folder)
                out[INT8_LABEL] = timed_ort(path, x_test, y_test, batch_size, threads, repeats)
    except Exception as exc:  # onnxruntime refusing a model is a note, not a failed sweep
        out["note"] = f"onnxruntime could not run the reference: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return out
