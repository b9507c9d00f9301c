"""Weight quantizers and bit packing, checked against their defining formulas."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.formats import quantizers
from lowbit.formats.fixed_point import quantize_multiplier
from lowbit.formats.packing import pack_bits, unpack_bits


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_symmetric_error_is_at_most_half_a_step(rng, bits):
    w = rng.standard_normal((6, 3, 3, 3))
    q, scale = quantizers.symmetric(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == np.int8 and np.abs(q).max() <= qmax
    np.testing.assert_allclose(scale, np.abs(w.reshape(6, -1)).max(axis=1) / qmax)
    error = np.abs(w - q * scale[:, None, None, None])
    assert np.all(error <= scale[:, None, None, None] / 2 + 1e-12)
    # the largest weight of each channel lands exactly on ±qmax
    assert np.all(np.abs(q.reshape(6, -1)).max(axis=1) == qmax)


def test_ternary_follows_the_threshold_rule(rng):
    w = rng.standard_normal((4, 50))
    q, alpha = quantizers.ternary(w)
    for m in range(4):
        delta = 0.7 * np.mean(np.abs(w[m]))
        expected = np.where(np.abs(w[m]) > delta, np.sign(w[m]), 0)
        np.testing.assert_array_equal(q[m], expected)
        np.testing.assert_allclose(alpha[m], np.mean(np.abs(w[m])[np.abs(w[m]) > delta]))


def test_binary_sign_of_zero_is_plus_one():
    w = np.array([[0.0, -1.0, 2.0, -0.0], [0.0, 0.0, 0.0, 0.0]])
    q, alpha = quantizers.binary(w)
    np.testing.assert_array_equal(q, [[1, -1, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_allclose(alpha, [0.75, 1.0])


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 8), n=st.integers(0, 70), seed=st.integers(0, 2 ** 16))
def test_packing_round_trips_and_takes_k_bits_per_value(bits, n, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=n).astype(np.int8)
    packed = pack_bits(q, bits)
    assert packed.nbytes == -(-n * bits // 8)
    np.testing.assert_array_equal(unpack_bits(packed, bits, (n,)), q)


def test_packing_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError, match="do not fit 4 bits"):
        pack_bits(np.array([8], np.int8), 4)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-9, 1e4, allow_nan=False))
def test_fixed_point_multiplier_is_within_half_an_ulp_of_31_bits(real):
    m0, n = quantize_multiplier(real)
    assert (1 << 30) <= m0[0] < (1 << 31) or n[0] == 62
    assert abs(m0[0] / 2.0 ** n[0] - real) <= real * 2.0 ** -30
