"""fp32 ConvTranspose against the naive oracle in ``tests/naive/conv_transpose.py`` and onnxruntime.

The cases reach both kernels of ``lowbit.kernels.float.conv_transpose``: the
channel-blocked kernel (at least 4 input channels per group; 8 per step plus
a remainder; several blocks of output channels; input rows split into
chunks) and the direct scatter (1 to 3 channels per group), with strides,
dilations, pads, output_padding, output_shape and every auto_pad.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lowbit.kernels.float import conv_transpose as ct_module
from lowbit.kernels.float.conv_transpose import conv_transpose
from tests.naive.conv_transpose import conv_transpose as naive
from tests.test_kernels_ops import run_ort

FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_close(got, ref, tol=1e-5):
    """max |got - ref| <= tol * max(1, max |ref|); same shape; float32, C-contiguous output."""
    ref = np.asarray(ref, dtype=np.float64)
    assert got.dtype == np.float32, got.dtype
    assert got.flags.c_contiguous
    assert got.shape == ref.shape, (got.shape, ref.shape)
    err = np.max(np.abs(got.astype(np.float64) - ref))
    assert err <= tol * max(1.0, np.max(np.abs(ref))), f"max abs err {err}"


def operands(rng, x_shape, c_per_group_out, kernel, group, bias=True):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((x_shape[1], c_per_group_out) + tuple(kernel)).astype(np.float32)
    b = rng.standard_normal(c_per_group_out * group).astype(np.float32) if bias else None
    return x, w, b


CASES = [
    # (x shape, M/group, kernel, attributes)
    ((1, 16, 10, 12), 8, (2, 2), dict(strides=[2, 2])),                      # DBNet-style 2x2 up
    ((2, 16, 9, 7), 8, (4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1])),     # DBNet-style 4x4 up
    ((1, 11, 5, 6), 5, (3, 3), dict(strides=[2, 3], dilations=[2, 1], pads=[2, 0, 1, 3])),
    ((2, 24, 7, 130), 3, (3, 2), dict(group=2, strides=[1, 2], pads=[0, 1, 2, 0])),   # 12 per group, row chunks
    ((2, 9, 4, 5), 2, (3, 2), dict(group=3, strides=[3, 2], output_padding=[2, 1])),
    ((1, 4, 4, 4), 3, (3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    ((1, 4, 4, 5), 3, (3, 3), dict(auto_pad="SAME_LOWER", strides=[2, 2])),
    ((1, 3, 4, 4), 2, (3, 3), dict(auto_pad="VALID", strides=[2, 1])),
    ((1, 3, 3, 4), 2, (3, 3), dict(output_shape=[8, 9], strides=[3, 2])),    # odd total padding
    ((1, 3, 3, 4), 2, (3, 3), dict(output_shape=[8, 9], strides=[3, 2], auto_pad="SAME_UPPER")),
    ((1, 3, 3, 3), 2, (3, 3), dict(output_shape=[10, 8], strides=[3, 2])),   # one past the full size
    ((1, 8, 6, 6), 1, (4, 4), dict(group=8, strides=[2, 2], pads=[1, 1, 1, 1])),   # depthwise: direct
    ((2, 4, 5, 3), 3, (2, 3), dict(group=2, strides=[1, 2], dilations=[3, 2])),     # 2 per group: direct
    ((2, 6, 11), 4, (5,), dict(strides=[3], pads=[2, 1], dilations=[2])),           # 1-D
    ((1, 2, 7), 2, (3,), dict(group=2, auto_pad="SAME_UPPER", strides=[2])),        # 1-D, direct
    ((1, 5, 3, 3), 70, (1, 1), dict()),                                             # several channel blocks
    ((1, 4, 3, 3), 3, (9, 9), dict(strides=[2, 2], pads=[4, 4, 3, 3])),             # taps > rows per item
]


@pytest.mark.parametrize("x_shape, mg, kernel, attrs", CASES)
def test_matches_naive_and_onnxruntime(x_shape, mg, kernel, attrs):
    rng = np.random.default_rng(len(x_shape) * 100 + mg)
    x, w, b = operands(rng, x_shape, mg, kernel, attrs.get("group", 1))
    got = conv_transpose(x, w, b, **attrs)
    assert_close(got, naive(x, w, b, **attrs))
    assert_close(got, run_ort("ConvTranspose", [x, w, b], **attrs))
    assert_close(conv_transpose(x, w, **attrs), naive(x, w, **attrs))


def test_kernel_shape_attribute_and_opset_10():
    rng = np.random.default_rng(3)
    x, w, b = operands(rng, (1, 4, 3, 3), 2, (3, 3), 1)
    attrs = dict(kernel_shape=[3, 3], output_padding=[1, 1], output_shape=[10, 8], strides=[3, 2])
    ref = run_ort("ConvTranspose", [x, w, b], opset=10, **attrs)
    assert_close(conv_transpose(x, w, b, **attrs), ref)
    # a leading (N, C) in output_shape is accepted and ignored
    assert_close(conv_transpose(x, w, b, **dict(attrs, output_shape=[1, 2, 10, 8])), ref)


@st.composite
def geometries(draw):
    rank = draw(st.sampled_from([1, 2]))
    group = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 10))
    mg = draw(st.integers(1, 4))
    spatial = [draw(st.integers(1, 6)) for _ in range(rank)]
    kernel = [draw(st.integers(1, 4)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 3)) for _ in range(rank)]
    output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(strides, dilations)]
    mode = draw(st.sampled_from(["pads", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", "output_shape"]))
    attrs = dict(group=group, strides=strides, dilations=dilations, output_padding=output_padding)
    full = [s * (n - 1) + a + (k - 1) * d + 1
            for n, k, s, d, a in zip(spatial, kernel, strides, dilations, output_padding)]
    if mode == "pads":
        begin = [draw(st.integers(0, f - 1)) for f in full]
        end = [draw(st.integers(0, f - 1 - p)) for f, p in zip(full, begin)]
        attrs["pads"] = begin + end
    elif mode == "output_shape":
        attrs["output_shape"] = [draw(st.integers(1, f - a + s - 1))
                                 for f, a, s in zip(full, output_padding, strides)]
        attrs["auto_pad"] = draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER"]))
    else:
        attrs["auto_pad"] = mode
    batch = draw(st.integers(1, 2))
    return (batch, group * cg, *spatial), mg, kernel, attrs, draw(st.booleans())


def _onnxruntime_differs(kernel, attrs):
    """Where onnxruntime departs from the spec: it rejects output_padding >= stride (the spec
    allows it below the dilation), and for SAME_* asking for in*s positions, more than the full
    result, it returns the full size."""
    if any(a >= s for a, s in zip(attrs["output_padding"], attrs["strides"])):
        return True
    if attrs.get("auto_pad") not in ("SAME_UPPER", "SAME_LOWER") or "output_shape" in attrs:
        return False
    return any(a + (k - 1) * d + 1 < s for k, s, d, a in
               zip(kernel, attrs["strides"], attrs["dilations"], attrs["output_padding"]))


@FEW
@given(geometries(), st.integers(0, 2**32 - 1))
def test_hypothesis_against_naive_and_onnxruntime(geometry, seed):
    x_shape, mg, kernel, attrs, bias = geometry
    rng = np.random.default_rng(seed)
    x, w, b = operands(rng, x_shape, mg, kernel, attrs["group"], bias)
    got = conv_transpose(x, w, b, **attrs)
    assert_close(got, naive(x, w, b, **attrs))
    if not _onnxruntime_differs(kernel, attrs):
        assert_close(got, run_ort("ConvTranspose", [x, w, b], **attrs))


def test_same_auto_pad_gives_input_times_stride():
    # k=2, s=3: the full result has 3*(in-1)+2 positions, one short of in*s; the spec asks
    # for in*s (the last position holds the bias).  onnxruntime returns the full size here.
    rng = np.random.default_rng(5)
    x, w, b = operands(rng, (1, 4, 3, 2), 2, (2, 2), 1)
    got = conv_transpose(x, w, b, auto_pad="SAME_UPPER", strides=[3, 3])
    assert got.shape == (1, 2, 9, 6)
    assert_close(got, naive(x, w, b, auto_pad="SAME_UPPER", strides=[3, 3]))
    np.testing.assert_array_equal(got[:, :, -1, :], np.broadcast_to(b[None, :, None], (1, 2, 6)))


@pytest.mark.parametrize("x_shape, mg, kernel, attrs", [CASES[0], CASES[1], CASES[10]])
def test_bit_identical_for_any_thread_count(monkeypatch, x_shape, mg, kernel, attrs):
    # Small parallel threshold so that several threads really share the items.
    monkeypatch.setattr(ct_module, "_PARALLEL_MIN_MACS", 0)
    rng = np.random.default_rng(11)
    x, w, b = operands(rng, (3,) + x_shape[1:], mg, kernel, attrs.get("group", 1))
    saved = numba.get_num_threads()
    results = []
    try:
        for n in sorted({1, 2, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            results.append(conv_transpose(x, w, b, **attrs))
    finally:
        numba.set_num_threads(saved)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_empty_batch():
    x = np.zeros((0, 4, 3, 3), dtype=np.float32)
    w = np.ones((4, 2, 2, 2), dtype=np.float32)
    assert conv_transpose(x, w, strides=[2, 2]).shape == (0, 2, 6, 6)


@pytest.mark.parametrize("x_shape, w_shape, attrs, message", [
    ((1, 2, 3, 3, 3), (2, 1, 2, 2, 2), {}, "3-D transposed convolutions are not supported"),
    ((1, 2, 3, 3), (2, 1, 2), {}, "weights of the same rank"),
    ((1, 4, 3, 3), (3, 1, 2, 2), {}, "does not fit input"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(group=3), "does not fit input"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(group=0), "does not fit input"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(kernel_shape=[3, 3]), "kernel_shape"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(strides=[0, 1]), "'strides'"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(strides=[2]), "'strides'"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(dilations=[1, 0]), "'dilations'"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(pads=[0, -1, 0, 0]), "'pads'"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(pads=[0, 0]), "'pads'"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(strides=[2, 2], output_padding=[2, 0]), "output_padding"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(output_padding=[-1, 0]), "output_padding"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(output_shape=[0, 4]), "output_shape"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(output_shape=[5, 4]), "larger than output_padding could make"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(pads=[2, 2, 2, 2]), "crop away the whole output"),
    ((1, 4, 3, 3), (4, 1, 2, 2), dict(auto_pad="SAME"), "unknown auto_pad"),
    ((1, 4, 0, 3), (4, 1, 2, 2), {}, "empty kernel or spatial axis"),
])
def test_rejects_bad_shapes_and_attributes(x_shape, w_shape, attrs, message):
    x = np.zeros(x_shape, dtype=np.float32)
    w = np.zeros(w_shape, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        conv_transpose(x, w, **attrs)


def test_rejects_bad_bias():
    x = np.zeros((1, 4, 3, 3), dtype=np.float32)
    w = np.zeros((4, 2, 2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="bias has shape"):
        conv_transpose(x, w, np.zeros(3, dtype=np.float32))
