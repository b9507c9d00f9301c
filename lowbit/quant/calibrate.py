"""Calibration: activation ranges observed while running fp32 batches.

Observers are streamed over calibration batches: nothing but running
statistics (min/max, and a fixed-size histogram per tensor) is kept, so
memory does not grow with the calibration set.  Histogram methods make a
second pass, once the first pass has fixed each tensor's value range.

Every method gives the same ranges however the samples are split into
batches (the executor runs a fixed-batch model in chunks of its batch): the
first pass keeps min and max, the second adds up histogram counts on the
bins the first pass fixed, and the thresholds are computed from the totals.
``tests/test_shapes_batch.py`` checks this for each method.

Methods (the range ``[lo, hi]`` each returns always contains 0):

* ``minmax`` — ``[min(x), max(x)]``.
* ``percentile`` — the ``percentile``-th percentile of ``|x|`` (default
  99.99) as the clipping threshold, as onnxruntime's Percentile calibrator.
* ``entropy`` — the threshold whose 128-level quantized distribution has the
  least KL divergence from the observed one (TensorRT's calibrator), with the
  zero bin left out.
* ``mse`` — the threshold that minimises the expected squared
  quantize-dequantize error of the observed histogram for the target bits.
"""
from __future__ import annotations

import numpy as np

from ..console import Progress

METHODS = ("minmax", "percentile", "entropy", "mse")
HISTOGRAM_BINS = 2048


class TensorStats:
    """Running statistics of one tensor."""

    def __init__(self):
        self.lo = np.inf
        self.hi = -np.inf
        self.hist = None
        self.edge = 0.0

    def observe_range(self, x: np.ndarray) -> None:
        if x.size:
            self.lo = min(self.lo, float(x.min()))
            self.hi = max(self.hi, float(x.max()))

    def observe_histogram(self, x: np.ndarray) -> None:
        """Histogram of ``|x|`` on ``[0, max(|lo|, |hi|)]``."""
        if self.hist is None:
            self.edge = max(abs(self.lo), abs(self.hi), 1e-12)
            self.hist = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        counts, _ = np.histogram(np.abs(x), bins=HISTOGRAM_BINS, range=(0.0, self.edge))
        self.hist += counts


def _percentile_threshold(stats: TensorStats, percentile: float) -> float:
    cdf = np.cumsum(stats.hist) / max(1, stats.hist.sum())
    index = int(np.searchsorted(cdf, percentile / 100.0))
    return (min(index, HISTOGRAM_BINS - 1) + 1) * stats.edge / HISTOGRAM_BINS


def _entropy_threshold(stats: TensorStats, levels: int = 128) -> float:
    hist = stats.hist.astype(np.float64)
    # The first bin holds the exact zeros of post-ReLU tensors: every threshold represents
    # them exactly, and their mass would otherwise drown the comparison of the tails.
    hist[0] = 0.0
    best, best_i = np.inf, HISTOGRAM_BINS
    for i in range(levels, HISTOGRAM_BINS + 1, 16):
        reference = hist[:i].copy()
        reference[i - 1] += hist[i:].sum()  # outliers are clipped into the last bin
        chunks = np.array_split(np.arange(i), levels)
        candidate = np.zeros(i)
        for chunk in chunks:
            nonzero = hist[chunk] > 0
            if nonzero.any():
                candidate[chunk[nonzero]] = hist[chunk].sum() / nonzero.sum()
        p = reference / max(reference.sum(), 1e-12)
        q = candidate / max(candidate.sum(), 1e-12)
        mask = p > 0
        kl = np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12)))
        if kl < best:
            best, best_i = kl, i
    return best_i * stats.edge / HISTOGRAM_BINS


def _mse_threshold(stats: TensorStats, levels: int) -> float:
    centres = (np.arange(HISTOGRAM_BINS) + 0.5) * stats.edge / HISTOGRAM_BINS
    hist = stats.hist.astype(np.float64)
    best, best_t = np.inf, stats.edge
    for t in np.linspace(stats.edge / 64, stats.edge, 128):
        step = t / levels
        q = np.clip(np.rint(centres / step), 0, levels) * step
        err = np.sum(hist * (centres - q) ** 2)
        if err < best:
            best, best_t = err, t
    return float(best_t)


def calibrate(run_batches, names, method: str = "minmax", percentile: float = 99.99, bits: int = 8) -> dict:
    """Observe tensors ``names`` over calibration batches and return ``{name: (lo, hi)}``.

    Parameters
    ----------
    run_batches : callable
        ``run_batches(observe)`` runs every calibration batch and calls
        ``observe(name, array)`` for each produced tensor; called once per pass.
    names : collection of str
        Tensors to observe.
    method : {"minmax", "percentile", "entropy", "mse"}
    percentile : float
        For ``percentile``.
    bits : int
        Target bits, for ``mse``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    wanted = set(names)
    stats = {name: TensorStats() for name in wanted}

    def observe_range(name, value):
        if name in wanted and isinstance(value, np.ndarray) and value.dtype.kind == "f":
            stats[name].observe_range(value)

    histogram = method != "minmax"
    # on a terminal only (transient): the passes, then the thresholds that histogram methods search
    bar = Progress(1 + (1 + len(stats) if histogram else 0), f"calibrate ({method})", transient=True)
    run_batches(observe_range)
    bar.update(1)
    if histogram:
        def observe_histogram(name, value):
            if name in wanted and isinstance(value, np.ndarray) and value.dtype.kind == "f":
                stats[name].observe_histogram(value)

        run_batches(observe_histogram)
        bar.update(1)
    ranges = {}
    for name, s in stats.items():
        if not np.isfinite(s.lo):
            continue
        lo, hi = min(s.lo, 0.0), max(s.hi, 0.0)
        if method != "minmax" and s.hist is not None and s.hist.sum():
            if method == "percentile":
                t = _percentile_threshold(s, percentile)
            elif method == "entropy":
                t = _entropy_threshold(s)
            else:
                t = _mse_threshold(s, (1 << (bits - 1)) - 1)
            lo, hi = max(lo, -t), min(hi, t)
        ranges[name] = (float(lo), float(hi))
        if histogram:
            bar.update(1)
    bar.close()
    return ranges
