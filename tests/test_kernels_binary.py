"""Binary (XNOR / popcount) kernels against the naive +-1 oracles in ``tests/naive/binary.py``.

Every comparison is exact.  Conv cases cover padding (including pads wider
than the kernel), strides, dilations, odd channel counts (one to four words,
partly filled), channels exactly 64 and 128, output channels that are not a
multiple of the tile's block, and output widths that are not a multiple of
the tile's run of positions.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

from lowbit.kernels.binary import (binary_conv, binary_conv_sign, binary_gemm, binary_max_pool, pack_signs,
                                   pack_signs_2d, pack_weights, sign_thresholds, unpack_signs)
from tests.naive import binary as naive


def signed_values(rng, shape, zeros=True):
    """Normal float32 values with some exact +0.0 and -0.0 (both read as +1)."""
    x = rng.standard_normal(shape).astype(np.float32)
    if zeros:
        flat = x.reshape(-1)
        idx = rng.choice(flat.size, size=max(1, flat.size // 10), replace=False)
        flat[idx[::2]] = 0.0
        flat[idx[1::2]] = -0.0
    return x


def test_pack_sign_of_zero_nan_and_integers():
    x = np.array([[0.0, -0.0, np.nan, -np.inf, np.inf, -1e-30, 1e-30, -2.0]], dtype=np.float32)
    expected_negative = [False, False, False, True, False, True, False, True]
    word = int(pack_signs_2d(x)[0, 0])
    assert [bool(word >> c & 1) for c in range(8)] == expected_negative
    assert word >> 8 == 0
    ints = np.array([[0, -1, 3, -128, 127]], dtype=np.int8)
    assert np.array_equal(pack_signs_2d(ints), naive.pack(naive.sign(ints), 1))
    assert np.array_equal(pack_signs_2d(x.astype(np.float64)), pack_signs_2d(x))
    half = x.astype(np.float16)  # -1e-30 becomes -0.0 here: +1
    assert np.array_equal(pack_signs_2d(half), naive.pack(naive.sign(half), 1))


@pytest.mark.parametrize("channels", [1, 3, 63, 64, 65, 100, 128, 130])
def test_pack_unpack_round_trip(rng, channels):
    x = signed_values(rng, (2, channels, 3, 4))
    before = x.copy()
    packed = pack_signs(x)
    assert packed.dtype == np.uint64 and packed.shape == (2, 3, 4, (channels + 63) // 64)
    assert np.array_equal(packed, naive.pack(naive.sign(x), 1))
    assert np.array_equal(x, before)
    back = unpack_signs(packed, channels)
    assert back.dtype == np.float32
    assert np.array_equal(back, naive.sign(x).astype(np.float32))
    assert np.array_equal(pack_signs(back), packed)
    rows = x[:, :, 0, 0]
    assert np.array_equal(pack_signs_2d(rows), naive.pack(naive.sign(rows), 1))
    assert np.array_equal(unpack_signs(pack_signs_2d(rows), channels), naive.sign(rows))


def test_pack_weights_layouts(rng):
    w = signed_values(rng, (5, 70, 3, 2))
    assert np.array_equal(pack_weights(w), naive.pack(naive.sign(w), 1))
    assert pack_weights(w).shape == (5, 3, 2, 2)
    w2 = signed_values(rng, (7, 65))
    assert np.array_equal(pack_weights(w2), naive.pack(naive.sign(w2), 1))


CONV_CASES = [
    # N, C, H, W, M, kernel, pads [t, l, b, r], strides, dilations
    (2, 3, 5, 6, 5, (3, 3), (1, 1, 1, 1), (1, 1), (1, 1)),
    (2, 64, 8, 8, 64, (3, 3), (1, 1, 1, 1), (1, 1), (1, 1)),
    (1, 65, 7, 10, 70, (3, 3), (1, 1, 1, 1), (2, 2), (1, 1)),
    (1, 100, 9, 11, 9, (3, 2), (2, 0, 1, 3), (1, 2), (2, 1)),
    (2, 128, 6, 9, 17, (1, 1), (0, 0, 0, 0), (1, 1), (1, 1)),
    (1, 128, 10, 12, 13, (5, 5), (2, 2, 2, 2), (2, 1), (1, 2)),
    (1, 200, 6, 20, 24, (3, 3), (0, 1, 2, 1), (1, 1), (1, 1)),
    (1, 3, 4, 5, 2, (3, 3), (4, 3, 3, 5), (2, 3), (1, 2)),  # pads wider than the kernel
    (3, 1, 9, 17, 1, (2, 3), (1, 0, 0, 1), (3, 2), (3, 2)),
    (1, 64, 3, 3, 8, (3, 3), (0, 0, 0, 0), (1, 1), (1, 1)),  # one output position
]


def conv_inputs(rng, n, c, h, w, m, kernel):
    x = signed_values(rng, (n, c, h, w))
    wt = signed_values(rng, (m, c) + kernel)
    return x, wt, pack_signs(x), pack_weights(wt)


@pytest.mark.parametrize("case", CONV_CASES)
def test_binary_conv(rng, case):
    n, c, h, w, m, kernel, pads, strides, dilations = case
    x, wt, xp, wp = conv_inputs(rng, n, c, h, w, m, kernel)
    xp_before, wp_before = xp.copy(), wp.copy()
    y = binary_conv(xp, wp, channels=c, kernel_shape=kernel, pads=pads, strides=strides, dilations=dilations)
    expected = naive.conv(naive.sign(x), naive.sign(wt), pads, strides, dilations)
    assert y.dtype == np.int32 and y.flags.c_contiguous
    assert np.array_equal(y, expected)
    assert np.array_equal(xp, xp_before) and np.array_equal(wp, wp_before)


@pytest.mark.parametrize("case", CONV_CASES)
def test_binary_conv_sign(rng, case):
    n, c, h, w, m, kernel, pads, strides, dilations = case
    x, wt, xp, wp = conv_inputs(rng, n, c, h, w, m, kernel)
    dot = naive.conv(naive.sign(x), naive.sign(wt), pads, strides, dilations)
    # Thresholds on and around values the dots take, and beyond their range; random flips.
    thresholds = dot[0, :, 0, 0] + rng.integers(-2, 3, size=m)
    thresholds[::3] = rng.integers(-2 * c * 9, 2 * c * 9, size=thresholds[::3].shape)
    flip = rng.integers(0, 2, size=m).astype(bool)
    y = binary_conv_sign(xp, wp, thresholds.astype(np.int32), flip, channels=c, kernel_shape=kernel,
                         pads=pads, strides=strides, dilations=dilations)
    expected = naive.pack(naive.threshold_sign(dot, thresholds, flip), 1)
    assert y.dtype == np.uint64 and y.shape == expected.shape
    assert np.array_equal(y, expected)
    # flip given as 0/1 integers reads the same
    y_int = binary_conv_sign(xp, wp, thresholds, flip.astype(np.uint8), channels=c, kernel_shape=kernel,
                             pads=pads, strides=strides, dilations=dilations)
    assert np.array_equal(y_int, expected)


def test_binary_conv_random_geometries():
    rng = np.random.default_rng(7)
    done = 0
    while done < 25:
        n, c, m = int(rng.integers(1, 3)), int(rng.integers(1, 150)), int(rng.integers(1, 20))
        h, w = (int(v) for v in rng.integers(1, 13, size=2))
        kernel = tuple(int(v) for v in rng.integers(1, 5, size=2))
        pads = tuple(int(v) for v in rng.integers(0, 4, size=4))
        strides = tuple(int(v) for v in rng.integers(1, 4, size=2))
        dilations = tuple(int(v) for v in rng.integers(1, 4, size=2))
        span = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
        if h + pads[0] + pads[2] < span[0] or w + pads[1] + pads[3] < span[1]:
            continue
        x, wt, xp, wp = conv_inputs(rng, n, c, h, w, m, kernel)
        geometry = dict(channels=c, kernel_shape=kernel, pads=pads, strides=strides, dilations=dilations)
        dot = naive.conv(naive.sign(x), naive.sign(wt), pads, strides, dilations)
        assert np.array_equal(binary_conv(xp, wp, **geometry), dot), (n, c, h, w, m, geometry)
        thresholds = rng.integers(-5, 6, size=m)
        flip = rng.integers(0, 2, size=m).astype(bool)
        y = binary_conv_sign(xp, wp, thresholds, flip, **geometry)
        assert np.array_equal(y, naive.pack(naive.threshold_sign(dot, thresholds, flip), 1))
        done += 1


def test_binary_conv_ignores_unused_high_bits(rng):
    x, wt, xp, wp = conv_inputs(rng, 2, 65, 5, 5, 10, (3, 3))
    expected = binary_conv(xp, wp, channels=65, kernel_shape=(3, 3), pads=(1, 1, 1, 1))
    dirty = np.uint64(0xFFFF_0000_0000_0000)
    y = binary_conv(xp | np.array([0, dirty], dtype=np.uint64), wp | np.array([0, dirty << np.uint64(3)],
                    dtype=np.uint64), channels=65, kernel_shape=(3, 3), pads=(1, 1, 1, 1))
    assert np.array_equal(y, expected)


def test_binary_conv_single_thread_matches(rng):
    x, wt, xp, wp = conv_inputs(rng, 3, 70, 6, 9, 20, (3, 3))
    expected = naive.conv(naive.sign(x), naive.sign(wt), (1, 1, 1, 1))
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        y = binary_conv(xp, wp, channels=70, kernel_shape=(3, 3), pads=(1, 1, 1, 1))
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(y, expected)


@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (7, 63, 10), (9, 64, 64), (20, 65, 65), (17, 200, 3),
                                     (8, 128, 130)])
def test_binary_gemm(rng, n, k, m):
    a = signed_values(rng, (n, k))
    w = signed_values(rng, (m, k))
    y = binary_gemm(pack_signs_2d(a), pack_weights(w), k=k)
    assert y.dtype == np.int32 and y.shape == (n, m)
    assert np.array_equal(y, naive.gemm(naive.sign(a), naive.sign(w)))


POOL_CASES = [
    # C, H, W, kernel, pads, strides, dilations, ceil_mode
    (3, 6, 6, (2, 2), (0, 0, 0, 0), (2, 2), (1, 1), 0),
    (65, 7, 9, (3, 3), (1, 1, 1, 1), (2, 2), (1, 1), 0),
    (128, 5, 7, (3, 2), (1, 0, 1, 1), (1, 2), (1, 1), 1),
    (100, 9, 8, (2, 3), (0, 1, 0, 1), (3, 2), (2, 2), 1),
    (64, 4, 4, (2, 2), (1, 1, 1, 1), (1, 1), (3, 3), 0),  # some windows have no in-bounds tap
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_binary_max_pool(rng, case):
    c, h, w, kernel, pads, strides, dilations, ceil_mode = case
    # Mostly -1 so that +1 does not win every window.
    x = np.where(rng.random((2, c, h, w)) < 0.8, -1.0, 1.0).astype(np.float32)
    xp = pack_signs(x)
    before = xp.copy()
    y = binary_max_pool(xp, channels=c, kernel_shape=kernel, pads=pads, strides=strides,
                        dilations=dilations, ceil_mode=ceil_mode)
    expected = naive.pack(naive.max_pool(naive.sign(x), kernel, pads, strides, dilations, ceil_mode), 1)
    assert np.array_equal(y, expected)
    assert np.array_equal(xp, before)
    if pads == (0, 0, 0, 0) or c % 64 == 0:
        y_no_c = binary_max_pool(xp, kernel_shape=kernel, pads=pads, strides=strides, dilations=dilations,
                                 ceil_mode=ceil_mode)
        assert np.array_equal(y_no_c, expected)


def test_sign_thresholds_reproduce_the_float_rule(rng):
    k = 50
    dots = np.arange(-k - 3, k + 4)
    scale = np.concatenate([rng.standard_normal(20), [0.0, 0.0, 1.0, -1.0, 0.5, -0.25, 3.0, 1e-9]])
    shift = np.concatenate([rng.standard_normal(20) * 20, [-1.0, 1.0, -5.0, 5.0, 0.0, -2.0, -21.0, 0.0]])
    thresholds, flip = sign_thresholds(scale, shift)
    assert thresholds.dtype == np.int32 and flip.dtype == bool
    y = scale[:, None].astype(np.float64) * dots[None, :] + shift[:, None]
    want_negative = y < 0  # sign(0) = +1: y = 0 at dot 5 (scale 1, shift -5) reads +1
    got_negative = (dots[None, :] < thresholds[:, None].astype(np.int64)) != flip[:, None]
    assert np.array_equal(got_negative, want_negative)


def test_errors_name_what_is_wrong(rng):
    x, wt, xp, wp = conv_inputs(rng, 1, 65, 4, 4, 3, (3, 3))
    with pytest.raises(ValueError, match="channels=64 needs 1 words"):
        binary_conv(xp, wp, channels=64, kernel_shape=(3, 3))
    with pytest.raises(ValueError, match="kernel_shape"):
        binary_conv(xp, wp, channels=65, kernel_shape=(2, 3))
    with pytest.raises(ValueError, match="packed uint64"):
        binary_conv(xp.astype(np.int64), wp, channels=65, kernel_shape=(3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        binary_conv(xp, wp, channels=65, kernel_shape=(3, 3), dilations=(3, 3))
    with pytest.raises(ValueError, match="thresholds must be 3 integers"):
        binary_conv_sign(xp, wp, np.zeros(3, np.float32), np.zeros(3, bool), channels=65, kernel_shape=(3, 3))
    with pytest.raises(ValueError, match="flip must be 3 booleans"):
        binary_conv_sign(xp, wp, np.zeros(3, np.int32), np.full(3, 2), channels=65, kernel_shape=(3, 3))
    with pytest.raises(ValueError, match="k=64 needs 1 words"):
        binary_gemm(np.zeros((2, 2), np.uint64), np.zeros((3, 2), np.uint64), k=64)
