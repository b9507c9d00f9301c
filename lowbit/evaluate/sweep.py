"""The precision sweep: quantize, save, reload, run the test set, measure.

Every precision's numbers come from the saved ``.lowbit`` file reloaded from
disk, so ``lowbit run`` on that file reproduces them.  Throughput is
measured after a warm-up batch (which also compiles the kernels; its time
is reported as ``compile_seconds``).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..precision import get as get_precision
from ..progress import Progress
from .metrics import agreement, top1, topk


@dataclass
class PrecisionResult:
    """One row of a sweep (see the README for the meaning of each field)."""

    precision: str
    bits: int
    accuracy: float
    top5: float | None
    drop: float
    agreement: float
    size_bytes: int
    images_per_s: float
    calibration_seconds: float
    compile_seconds: float
    overflow: int
    model_file: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SweepResult:
    model: str
    dataset: str
    n_test: int
    results: list = field(default_factory=list)
    calibration: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"model": self.model, "dataset": self.dataset, "n_test": self.n_test,
                "calibration": self.calibration, "results": [r.as_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, doc: dict) -> "SweepResult":
        """Read back what :meth:`as_dict` wrote (results.json)."""
        return cls(model=doc["model"], dataset=doc["dataset"], n_test=doc["n_test"],
                   calibration=doc.get("calibration", {}),
                   results=[PrecisionResult(**row) for row in doc["results"]])

    def get(self, precision: str) -> PrecisionResult:
        return next(r for r in self.results if r.precision == precision)


def timed_run(model, x, batch_size: int, threads: int | None) -> tuple:
    """Run ``x``; return ``(outputs, warm seconds, compile seconds)``."""
    start = time.perf_counter()
    model.run(_head(x, 8), batch_size=batch_size, threads=threads)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    out = model.run(x, batch_size=batch_size, threads=threads)
    seconds = time.perf_counter() - start
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return np.asarray(out), seconds, compile_seconds


def _samples(x) -> int:
    """Number of samples in an array or in a dict ``{input name: array}`` (several inputs)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _head(x, n: int):
    """The first ``n`` samples of an array or of every array of a dict."""
    if isinstance(x, dict):
        return {name: value[:n] for name, value in x.items()}
    return x[:n]


def evaluate_precision(source: str, precision: str, x_test, y_test, calibration, method: str,
                       models_dir: str, batch_size: int = 256, threads: int | None = None,
                       options: dict | None = None) -> tuple:
    """Quantize ``source`` to ``precision``, save it, reload it, run the test set.

    Returns
    -------
    scores : ndarray
        The model's outputs on ``x_test``.
    row : dict
        Every :class:`PrecisionResult` field except ``drop`` and ``agreement``.
    """
    import lowbit

    spec = get_precision(precision)
    base = lowbit.load(source)
    quantized = lowbit.quantize(base, spec, calibration=calibration, method=method, **(options or {}))
    path = Path(models_dir) / f"{spec.name}.lowbit"
    lowbit.save(quantized, path)
    model = lowbit.load(path)
    scores, seconds, compile_seconds = timed_run(model, x_test, batch_size, threads)
    executor = model._executor(batch_size, threads)
    row = dict(precision=spec.name, bits=spec.bits, accuracy=top1(scores, y_test), top5=topk(scores, y_test),
               size_bytes=path.stat().st_size, images_per_s=_samples(x_test) / seconds,
               calibration_seconds=float(quantized.graph.metadata.get("calibration_seconds", 0.0)),
               compile_seconds=compile_seconds, overflow=int(sum(executor.overflow.values())),
               model_file=str(path))
    return scores, row


def sweep(source, x_test, y_test, precisions, *, calibration=None, method: str = "minmax", out_dir=".",
          batch_size: int = 256, threads: int | None = None, jobs: int = 1, model_label: str | None = None,
          dataset_label: str = "", options: dict | None = None, progress=True) -> SweepResult:
    """Evaluate ``source`` at every precision in ``precisions``.

    Parameters
    ----------
    source : str
        Path of the fp32 model (.onnx).
    x_test, y_test : ndarray
        float32 NCHW samples and integer labels.
    precisions : list of str
        fp32 is always evaluated (first): drops and agreements are against it.
    calibration : ndarray, optional
        Calibration samples for the precisions that need them.
    jobs : int
        Worker processes; accuracies are identical to a serial run, while
        img/s measured by concurrent workers shares the cores.

    Returns
    -------
    SweepResult
    """
    names = ["fp32"] + [get_precision(p).name for p in precisions if get_precision(p).name != "fp32"]
    models_dir = Path(out_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    args = dict(x_test=x_test, y_test=y_test, calibration=calibration, method=method, models_dir=str(models_dir),
                batch_size=batch_size, threads=threads, options=options)
    bar = Progress(len(names), label="sweep", stream=None if not progress else __import__("sys").stderr)
    outcomes = {}
    if jobs > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(evaluate_precision, os.fspath(source), name, **args): name for name in names}
            for future in concurrent.futures.as_completed(futures):
                outcomes[futures[future]] = future.result()
                bar.update(1, images=_samples(x_test))
    else:
        for name in names:
            outcomes[name] = evaluate_precision(os.fspath(source), name, **args)
            bar.update(1, images=_samples(x_test))
    bar.close()
    reference, ref_row = outcomes["fp32"]
    result = SweepResult(model=model_label or Path(source).name, dataset=dataset_label, n_test=_samples(x_test),
                         calibration={"method": method, "samples": 0 if calibration is None else _samples(calibration)})
    for name in names:
        scores, row = outcomes[name]
        result.results.append(PrecisionResult(drop=100.0 * (ref_row["accuracy"] - row["accuracy"]),
                                              agreement=agreement(scores, reference), **row))
    return result
