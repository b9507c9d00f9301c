"""Agreement with fp32 and SQNR for any output shape, accumulated over batches (no labels needed).

For class scores ``(N, K)``:

* top-1 agreement: the fraction of samples whose argmax equals fp32's argmax;
* top-5 agreement: the fraction of samples whose fp32 argmax is among the
  five highest scores (``None`` with ≤ 5 classes).

For any other output with a channel axis (segmentation maps ``(N, C, H, W)``,
detection heads ``(N, A, K)``): agreement is per position, the fraction of
positions (every index except axis 1) whose argmax over axis 1 equals fp32's;
there is no top-5.  An axis 1 of length 1, or an output of rank 1, has no
argmax to compare (``None``).

SQNR over every element seen, in dB:

.. math:: \\mathrm{SQNR} = 10 \\log_{10} \\frac{\\sum y^2}{\\sum (y - \\hat y)^2}

(``inf`` when the outputs are identical.)
"""
from __future__ import annotations

import math

import numpy as np


def output_kind(shape) -> str:
    """``"scores"`` for ``(N, K)`` with K > 1, ``"map"`` for rank ≥ 3 with a channel axis > 1, else ``"values"``."""
    if len(shape) == 2 and shape[1] > 1:
        return "scores"
    if len(shape) >= 3 and shape[1] > 1:
        return "map"
    return "values"


def _db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if not math.isfinite(noise):
        return math.nan
    return 10.0 * math.log10(max(signal, 1e-300) / noise)


class Comparison:
    """Agreement and SQNR of one model's outputs against the reference's, over batches.

    Call :meth:`update` with each batch's reference (fp32) and model outputs,
    then read :meth:`result`.
    """

    def __init__(self):
        self.kind = None
        self.samples = self.positions = self.top1 = self.top5 = 0
        self.signal = self.noise = 0.0
        self.classes = 0

    def update(self, reference: np.ndarray, output: np.ndarray) -> None:
        reference, output = np.asarray(reference), np.asarray(output)
        if reference.shape != output.shape:
            raise ValueError(f"output shape {output.shape} differs from the reference's {reference.shape}")
        kind = output_kind(reference.shape)
        if self.kind is None:
            self.kind = kind
            self.classes = reference.shape[1] if reference.ndim >= 2 else 0
        ref = reference.astype(np.float64)
        self.signal += float(np.sum(ref * ref))
        self.noise += float(np.sum((ref - output.astype(np.float64)) ** 2))
        self.samples += reference.shape[0]
        if kind == "values":
            return
        ref_best = reference.argmax(axis=1)
        self.top1 += int(np.count_nonzero(output.argmax(axis=1) == ref_best))
        self.positions += ref_best.size
        if kind == "scores" and self.classes > 5:
            best5 = np.argpartition(-output, 4, axis=1)[:, :5]
            self.top5 += int(np.count_nonzero(np.any(best5 == ref_best[:, None], axis=1)))

    def result(self) -> dict:
        """``{"agreement", "agreement_top5", "sqnr_db"}`` (``None`` where not defined)."""
        agreement = self.top1 / self.positions if self.positions else None
        top5 = self.top5 / self.samples if self.kind == "scores" and self.classes > 5 and self.samples else None
        return {"agreement": agreement, "agreement_top5": top5,
                "sqnr_db": _db(self.signal, self.noise) if self.samples else None}


class LabelScore:
    """Top-1 and top-5 accuracy of class scores over batches."""

    def __init__(self):
        self.samples = self.top1 = self.top5 = 0
        self.classes = 0

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        self.classes = scores.shape[1]
        self.samples += len(labels)
        self.top1 += int(np.count_nonzero(scores.argmax(axis=1) == labels))
        if self.classes > 5:
            best5 = np.argpartition(-scores, 4, axis=1)[:, :5]
            self.top5 += int(np.count_nonzero(np.any(best5 == labels[:, None], axis=1)))

    def result(self) -> dict:
        """``{"accuracy", "top5"}`` as fractions (top5 ``None`` with ≤ 5 classes)."""
        if not self.samples:
            return {"accuracy": None, "top5": None}
        return {"accuracy": self.top1 / self.samples, "top5": self.top5 / self.samples if self.classes > 5 else None}


class LayerSQNR:
    """SQNR per tensor name, accumulated over batches: ``update({name: ref}, {name: out})``."""

    def __init__(self):
        self.sums = {}

    def update(self, reference: dict, output: dict) -> None:
        for name, ref in reference.items():
            out = output.get(name)
            signal, noise = self.sums.get(name, (0.0, 0.0))
            if out is None or np.shape(out) != np.shape(ref) or np.asarray(out).dtype.kind != "f":
                self.sums[name] = (signal, math.nan)  # not comparable (e.g. packed binary activations)
                continue
            ref64 = np.asarray(ref, np.float64)
            self.sums[name] = (signal + float(np.sum(ref64 * ref64)),
                               noise + float(np.sum((ref64 - np.asarray(out, np.float64)) ** 2)))

    def result(self) -> dict:
        """``{name: dB}``; tensors that could not be compared (another dtype or shape) are left out."""
        return {name: _db(signal, noise) for name, (signal, noise) in self.sums.items() if not math.isnan(noise)}


def compare(reference: np.ndarray, output: np.ndarray) -> dict:
    """:class:`Comparison` over one pair of arrays."""
    c = Comparison()
    c.update(reference, output)
    return c.result()
