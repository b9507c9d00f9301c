"""Winograd F(2x2, 3x3) internals: the weight transform against the textbook
matrices, accuracy against a float64 direct sum, and independence of the
result from how images are grouped into blocks (``conv`` itself is checked
against the naive oracle and onnxruntime in ``test_kernels_conv_gemm.py``).
"""
from __future__ import annotations

import numpy as np
import pytest

from lowbit.kernels.float import conv as conv_module
from lowbit.kernels.float import winograd
from tests.naive import conv_gemm as naive

INF = np.float32(np.inf)


def run(x, w, b, pad, threads=1):
    n, _, h, wid = x.shape
    y = np.empty((n, w.shape[0], h + 2 * pad - 2, wid + 2 * pad - 2), np.float32)
    winograd.conv3x3(x, w, b, y, pad, pad, -INF, INF, threads)
    return y


def test_weight_transform_is_g_g_gt(rng):
    # G of F(2, 3) (Lavin & Gray 2016), written out here independently.
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    w = rng.standard_normal((5, 9, 3, 3)).astype(np.float32)
    u = winograd.transform_weights(w)
    assert u.shape == (16, 8, 16)  # output channels padded to 4, input channels to 8
    for m in range(5):
        for c in range(9):
            expect = g @ w[m, c].astype(np.float64) @ g.T
            np.testing.assert_allclose(u[:, m, c].reshape(4, 4), expect, rtol=1e-6, atol=1e-7)
    assert not u[:, 5:].any() and not u[:, :, 9:].any()


def test_output_transform_identity_of_the_algorithm(rng):
    # A^T [(G g G^T) * (B^T d B)] A equals the 2x2 valid correlation of a 4x4 patch.
    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
    at = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
    d = rng.standard_normal((4, 4))
    w = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    u = winograd.transform_weights(w)[:, 0, 0].reshape(4, 4).astype(np.float64)
    y = at @ (u * (bt @ d @ bt.T)) @ at.T
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * w[0, 0]) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, direct, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("c, m, size", [(16, 16, 28), (32, 32, 14), (64, 64, 8)])
def test_error_against_float64_is_a_few_ulps(rng, c, m, size):
    x = rng.standard_normal((2, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((m, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    ref = naive.conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), pads=[1, 1, 1, 1])
    err = np.abs(run(x, w, b, 1) - ref).max()
    # Unit-scale outputs; a float32 direct sum is off by ~1e-7 here.
    assert err < 2e-6 * np.abs(ref).max(), err


def test_result_does_not_depend_on_blocking_threads_or_batch(rng, monkeypatch):
    x = rng.standard_normal((13, 17, 6, 6)).astype(np.float32)
    w = rng.standard_normal((20, 17, 3, 3)).astype(np.float32)
    b = np.zeros(20, np.float32)
    first = run(x, w, b, 1)
    for tiles in (9, 45, 256):  # blocks of 1, 5 and all 13 images
        monkeypatch.setattr(winograd, "_TILES", tiles)
        for threads in (1, 2):
            assert np.array_equal(run(x, w, b, 1, threads), first)
            assert np.array_equal(run(x[3:8], w, b, 1, threads), first[3:8])


def test_images_per_block():
    assert winograd.images_per_block(100, 16, 14, 14) == 2     # 196 tiles an image: 2 reach 256 tiles
    assert winograd.images_per_block(100, 64, 4, 4) == 15      # V (16 * 65 * tiles floats) caps at 1 MiB
    assert winograd.images_per_block(3, 16, 4, 4) == 3         # no more than the batch
    assert winograd.images_per_block(100, 256, 7, 7) == 1      # 49 tiles: too few for Winograd in conv()


@pytest.mark.parametrize("x_shape, w_shape, expect", [
    ((4, 16, 16, 16), (16, 16, 3, 3), True),     # 64 tiles an image, 4 images a block
    ((2, 16, 8, 8), (16, 16, 3, 3), False),      # 32 tiles in all
    ((1, 256, 6, 6), (16, 256, 3, 3), False),    # 9 tiles
    ((4, 8, 16, 16), (16, 8, 3, 3), False),      # fewer than 16 input channels
])
def test_routing(rng, monkeypatch, x_shape, w_shape, expect):
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(9 * w_shape[1])).astype(np.float32)
    conv_module.conv(x, w, pads=[1, 1, 1, 1])
    assert bool(calls) == expect
