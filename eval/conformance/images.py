"""Image-like test inputs for the conformance corpus (numpy only, no torch).

No real images can be fetched, and uniform noise drives CNN activations into
ranges that natural images never reach.  These inputs are smooth instead: a sum
of random colour fields at a few spatial scales (bilinear upsampling of coarse
noise), a colour gradient, a few soft-edged blobs and a little pixel noise, in
[0, 1], then normalised with the ImageNet mean and standard deviation (or the
``mean``/``std`` a model was trained with).
"""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _upsample(coarse: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of ``(C, h0, w0)`` to ``(C, h, w)`` (align_corners=True)."""
    c, h0, w0 = coarse.shape
    ys = np.linspace(0.0, h0 - 1, h)
    xs = np.linspace(0.0, w0 - 1, w)
    y0 = np.clip(np.floor(ys).astype(int), 0, h0 - 2)
    x0 = np.clip(np.floor(xs).astype(int), 0, w0 - 2)
    fy = (ys - y0)[None, :, None]
    fx = (xs - x0)[None, None, :]
    a = coarse[:, y0][:, :, x0]
    b = coarse[:, y0][:, :, x0 + 1]
    c_ = coarse[:, y0 + 1][:, :, x0]
    d = coarse[:, y0 + 1][:, :, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c_ * (1 - fx) + d * fx) * fy


def smooth_images(n: int, shape=(3, 224, 224), seed: int = 0, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """``n`` smooth random images of ``shape = (C, H, W)``, normalised, float32 NCHW.

    Parameters
    ----------
    n : int
        Number of images.
    shape : tuple of int
        ``(C, H, W)`` of one image.
    seed : int
        Seed of the generator; the same seed gives the same images.
    mean, std : sequence of float or None
        Per-channel normalisation ``(x - mean) / std`` applied to the [0, 1]
        image (repeated or cut to ``C`` channels); ``None`` leaves [0, 1].

    Returns
    -------
    ndarray, float32, shape ``(n, C, H, W)``
    """
    c, h, w = shape
    rng = np.random.default_rng(seed)
    out = np.empty((n, c, h, w), dtype=np.float32)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    for i in range(n):
        img = np.zeros((c, h, w))
        for cells, weight in ((2, 0.5), (5, 0.3), (12, 0.15)):
            img += weight * _upsample(rng.random((c, cells + 1, cells + 1)), h, w)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        img += 0.3 * rng.uniform(-1, 1, (c, 1, 1)) * ramp
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.random(2)
            radius = rng.uniform(0.05, 0.3)
            blob = 1.0 / (1.0 + np.exp((np.hypot(yy - cy, xx - cx) - radius) * 40.0))
            img += rng.uniform(-0.5, 0.5, (c, 1, 1)) * blob
        img += 0.02 * rng.standard_normal((c, h, w))
        lo, hi = img.min(), img.max()
        img = (img - lo) / max(hi - lo, 1e-6)
        if mean is not None:
            m = np.resize(np.asarray(mean, dtype=np.float64), c)[:, None, None]
            s = np.resize(np.asarray(std, dtype=np.float64), c)[:, None, None]
            img = (img - m) / s
        out[i] = img
    return out
