"""Data augmentation: small random shifts and rotations of image batches."""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from lowbit.config import jit


@jit(multithread=True)
def _warp(x, cos_a, sin_a, tx, ty, out):
    # Inverse mapping with bilinear sampling; outside the image reads as 0.
    n, c, h, w = x.shape
    cy, cx = (h - 1) * 0.5, (w - 1) * 0.5
    for k in prange(n):
        for r in range(h):
            for q in range(w):
                # output pixel (r, q) comes from source rotated by -angle around the centre, minus the shift
                yr, xr = r - ty[k] - cy, q - tx[k] - cx
                sy = cos_a[k] * yr - sin_a[k] * xr + cy
                sx = sin_a[k] * yr + cos_a[k] * xr + cx
                y0, x0 = math.floor(sy), math.floor(sx)
                fy, fx = sy - y0, sx - x0
                for ch in range(c):
                    acc = 0.0
                    for dy in range(2):
                        yy = y0 + dy
                        if yy < 0 or yy >= h:
                            continue
                        wy = fy if dy else 1.0 - fy
                        for dx in range(2):
                            xx = x0 + dx
                            if xx < 0 or xx >= w:
                                continue
                            wx = fx if dx else 1.0 - fx
                            acc += wy * wx * x[k, ch, yy, xx]
                    out[k, ch, r, q] = acc


def warp(x, angles_deg, shifts):
    """Rotate each image about its centre and shift it (bilinear, zero fill).

    .. math:: y(p) = x\\big(R_{-\\theta}(p - t - c) + c\\big)

    Parameters
    ----------
    x : numpy.ndarray
        float ``(N, C, H, W)``.
    angles_deg : numpy.ndarray
        ``(N,)`` rotation angles in degrees.
    shifts : numpy.ndarray
        ``(N, 2)`` shifts ``(dy, dx)`` in pixels.
    """
    x = np.ascontiguousarray(x)
    a = np.deg2rad(np.asarray(angles_deg, np.float64))
    shifts = np.asarray(shifts, np.float64)
    out = np.empty_like(x)
    _warp(x, np.cos(a), np.sin(a), np.ascontiguousarray(shifts[:, 1]), np.ascontiguousarray(shifts[:, 0]), out)
    return out


def random_shift_rotate(x, rng, max_shift=2, max_rotate=0.0):
    """Random integer shifts in ``[-max_shift, max_shift]`` and angles in ``[-max_rotate, max_rotate]`` degrees.

    Parameters
    ----------
    x : numpy.ndarray
        float ``(N, C, H, W)``.
    rng : numpy.random.Generator
    """
    n = x.shape[0]
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2)) if max_shift else np.zeros((n, 2))
    angles = rng.uniform(-max_rotate, max_rotate, size=n) if max_rotate else np.zeros(n)
    return warp(x, angles, shifts)
