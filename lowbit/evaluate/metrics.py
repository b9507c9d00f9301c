"""Accuracy measures over model outputs."""
from __future__ import annotations

import numpy as np


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest score is the label."""
    return float(np.mean(scores.argmax(axis=1) == labels))


def topk(scores: np.ndarray, labels: np.ndarray, k: int = 5) -> float | None:
    """Fraction of samples whose label is among the ``k`` highest scores (None if there are ≤ k classes)."""
    if scores.shape[1] <= k:
        return None
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(best == labels[:, None], axis=1)))


def agreement(scores: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of samples whose argmax equals the reference model's argmax."""
    return float(np.mean(scores.argmax(axis=1) == reference.argmax(axis=1)))


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10·log10(Σ ref² / Σ (ref − approx)²)`` in dB (inf when exact)."""
    ref = reference.astype(np.float64)
    noise = np.sum((ref - approximation.astype(np.float64)) ** 2)
    signal = np.sum(ref ** 2)
    if noise == 0:
        return float("inf")
    return float(10.0 * np.log10(max(signal, 1e-300) / noise))
