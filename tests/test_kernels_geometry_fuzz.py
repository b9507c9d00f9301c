"""Memory safety and correctness of every convolution path over window geometries.

Hypothesis draws shapes, kernel sizes, asymmetric pads (up to larger than the
kernel), strides, dilations and groups, and each draw is checked against the
naive oracles in ``tests/naive`` (float64 loops over an explicitly padded
input).  A kernel that reads outside its buffers returns garbage that
differs from the oracle, or from its own second run on the same input, or
crashes the process; under ``NUMBA_BOUNDSCHECK=1`` (a step of ``.ci/run``)
any out-of-range index raises ``IndexError``.

The fp32 convolution has four algorithms; each test forces every one that
accepts the draw (the thresholds that normally pick one by speed are patched).
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from lowbit.kernels.binary import binary_conv, pack_signs, pack_weights
from lowbit.kernels.float import conv as conv_module
from lowbit.kernels.int8 import conv as conv_int8_module
from lowbit.formats.fixed_point import quantize_multiplier
from tests.naive import binary as naive_binary
from tests.naive import conv_gemm as naive
from tests.naive import int8 as naive_int8

# The path fixtures only patch module constants, which every generated input should see unchanged.
FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def geometries(draw, max_channels=6):
    """(x shape, w shape, attributes) of a 2-D Conv whose output is not empty."""
    group = draw(st.sampled_from([1, 1, 2, "depthwise"]))
    cg = draw(st.integers(1, max_channels))
    if group == "depthwise":
        group, cg = draw(st.integers(1, max_channels)), 1
    mg = draw(st.sampled_from([1, 2, 3, 4, 5, 8]))
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (3, 3), (2, 3), (5, 5), (1, 7)]))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = [draw(st.integers(0, 7)) for _ in range(4)]
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    n = draw(st.integers(1, 3))
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if h + pads[0] + pads[2] < span_h:
        h = span_h - pads[0] - pads[2]
    if w + pads[1] + pads[3] < span_w:
        w = span_w - pads[1] - pads[3]
    h, w = max(h, 1), max(w, 1)
    attrs = dict(group=group, pads=pads, strides=[sh, sw], dilations=[dh, dw])
    return (n, group * cg, h, w), (group * mg, cg, kh, kw), attrs


@pytest.fixture(params=["winograd", "direct3x3", "im2col", "direct"])
def fp32_path(request, monkeypatch):
    """Send every draw the named algorithm accepts to it."""
    path = request.param
    if path == "winograd":
        monkeypatch.setattr(conv_module, "_WINOGRAD_MIN_TILES", 1)
        monkeypatch.setattr(conv_module, "_WINOGRAD_MIN_CHANNELS", 1)
    else:
        monkeypatch.setattr(conv_module, "_WINOGRAD_MIN_CHANNELS", 1 << 30)
    if path == "direct3x3":
        monkeypatch.setattr(conv_module, "_MAX_WASTE", float("inf"))
    if path in ("im2col", "direct"):
        monkeypatch.setattr(conv_module, "_MAX_WASTE", 0.0)
        monkeypatch.setattr(conv_module, "_IM2COL_MIN_K", 0)
    if path == "im2col":
        monkeypatch.setattr(conv_module, "_SMALL_K", 0)
    if path == "direct":
        monkeypatch.setattr(conv_module, "_SMALL_K", 1 << 30)
    return path


def _close(got, ref, tol=1e-4):
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    got = got.astype(np.float64)
    same = got == ref                    # equal infinities (a dilated window of padding only: -inf) agree
    err = np.max(np.where(same, 0.0, np.abs(got - ref)), initial=0.0)
    finite = np.abs(ref[np.isfinite(ref)])
    assert err <= tol * max(1.0, np.max(finite, initial=0.0)), f"max abs err {err}"


@FUZZ
@given(geometry=geometries(), seed=st.integers(0, 2 ** 16))
def test_fp32_conv_every_path_matches_naive(fp32_path, geometry, seed):
    x_shape, w_shape, attrs = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    x_before = x.copy()
    first = conv_module.conv(x, w, b, **attrs)
    _close(first, naive.conv(x, w, b, **attrs))
    assert np.array_equal(conv_module.conv(x, w, b, **attrs), first), "a second run differs"
    assert np.array_equal(x, x_before)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 1, 8, 8), (1, 1, 3, 3), dict(pads=[3, 3, 3, 3])),                       # the reported case
    ((2, 8, 8, 8), (8, 8, 3, 3), dict(pads=[3, 3, 3, 3])),
    ((1, 16, 20, 20), (16, 16, 3, 3), dict(pads=[12, 12, 12, 12], dilations=[12, 12])),  # ASPP rates
    ((1, 16, 40, 40), (16, 16, 3, 3), dict(pads=[24, 24, 24, 24], dilations=[24, 24])),
    ((1, 8, 16, 16), (8, 8, 3, 3), dict(pads=[6, 6, 6, 6], dilations=[2, 2])),
    ((2, 4, 6, 6), (4, 1, 3, 3), dict(pads=[5, 4, 3, 2], group=4)),
])
def test_fp32_conv_large_pads_match_onnxruntime(fp32_path, x_shape, w_shape, attrs):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    group = attrs.get("group", 1)
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape),
                                               helper.make_tensor_value_info("w", TensorProto.FLOAT, w_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x, "w": w})[0]
    got = conv_module.conv(x, w, None, group=group, **{k: v for k, v in attrs.items() if k != "group"})
    _close(got, expected)


def test_fp32_conv_rejects_negative_pads():
    x = np.zeros((1, 1, 8, 8), np.float32)
    w = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="non-negative"):
        conv_module.conv(x, w, pads=[-1, 0, 0, 0])


@pytest.fixture(params=[False, True], ids=["pairs", "quads"])
def int8_word_format(request, monkeypatch):
    monkeypatch.setattr(conv_int8_module, "USE_QUADS", request.param)


@FUZZ
@given(geometry=geometries(), seed=st.integers(0, 2 ** 16), zp=st.integers(0, 255))
def test_int8_conv_matches_naive(int8_word_format, geometry, seed, zp):
    x_shape, w_shape, attrs = geometry
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, x_shape).astype(np.uint8)
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    b = rng.integers(-5000, 5000, w_shape[0]).astype(np.int32)
    mult, shift = quantize_multiplier(rng.uniform(1e-4, 4e-3, w_shape[0]))
    kw = dict(x_zero_point=zp, y_zero_point=128, qmin=0, qmax=255, y_signed=0, **attrs)
    got = conv_int8_module.conv_int8(x, w, b, mult, shift, **kw)
    assert np.array_equal(got, naive_int8.conv(x, w, b, mult, shift, **kw))
    assert np.array_equal(conv_int8_module.conv_int8(x, w, b, mult, shift, **kw), got)


@FUZZ
@given(geometry=geometries(max_channels=70), seed=st.integers(0, 2 ** 16))
def test_binary_conv_matches_naive(geometry, seed):
    (n, c, h, w), (m, cg, kh, kw), attrs = geometry
    if attrs["group"] != 1:   # binary convolutions have one group
        c = cg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c, kh, kw)).astype(np.float32)
    geometry = dict(channels=c, kernel_shape=(kh, kw), pads=attrs["pads"], strides=attrs["strides"],
                    dilations=attrs["dilations"])
    got = binary_conv(pack_signs(x), pack_weights(wt), **geometry)
    expected = naive_binary.conv(naive_binary.sign(x), naive_binary.sign(wt), attrs["pads"], attrs["strides"],
                                 attrs["dilations"])
    assert np.array_equal(got, expected)


@st.composite
def pool_geometries(draw):
    """(x shape, attributes) of a 2-D pool whose output is not empty (pads smaller than the kernel, as the
    pools require)."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = [draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw)]
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    h = max(h, (kh - 1) * dh + 1 - pads[0] - pads[2], 1)
    w = max(w, (kw - 1) * dw + 1 - pads[1] - pads[3], 1)
    attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw], pads=pads,
                 ceil_mode=draw(st.integers(0, 1)))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 70)), h, w), attrs


@FUZZ
@given(geometry=pool_geometries(), seed=st.integers(0, 2 ** 16))
def test_pools_match_naive(geometry, seed):
    from lowbit.kernels.binary import binary_max_pool
    from lowbit.kernels.float import pool
    from lowbit.kernels.int8 import pool as pool_int8
    from tests.naive import ops as naive_ops

    shape, attrs = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    reference = naive_ops.max_pool(x, **attrs)
    _close(pool.max_pool(x, **attrs), reference)
    # A window entirely in the padding has no taps to average: leave those geometries to the spec's
    # count_include_pad=1 form, which divides by the full window.
    _close(pool.average_pool(x, count_include_pad=1, **attrs),
           naive_ops.average_pool(x, count_include_pad=1, **attrs))
    if np.isneginf(reference).any():
        return  # a dilated window of padding only: the integer pools define no value for it
    xq = rng.integers(0, 256, shape).astype(np.uint8)
    assert np.array_equal(pool_int8.max_pool_int8(xq, **attrs), naive_int8.max_pool(xq, **attrs))
    expected = naive_binary.max_pool(naive_binary.sign(x), **{k: attrs[k] for k in ("kernel_shape", "pads", "strides",
                                                                                     "dilations", "ceil_mode")})
    got = binary_max_pool(pack_signs(x), channels=shape[1], **attrs)
    assert np.array_equal(got, naive_binary.pack(expected, 1))


@pytest.mark.parametrize("pads", [[2, 0, 0, 0], [0, 0, 0, 3], [2, 2, 2, 2]])
def test_pools_refuse_pads_as_wide_as_the_window(pads):
    from lowbit.kernels.float import pool
    from lowbit.kernels.int8 import pool as pool_int8

    x = np.zeros((1, 1, 6, 6), np.float32)
    with pytest.raises(ValueError, match="smaller than kernel_shape"):
        pool.max_pool(x, kernel_shape=[2, 2], pads=pads)
    with pytest.raises(ValueError, match="smaller than kernel_shape"):
        pool.average_pool(x, kernel_shape=[2, 2], pads=pads)
    with pytest.raises(ValueError, match="smaller than kernel_shape"):
        pool_int8.max_pool_int8(x.astype(np.uint8), kernel_shape=[2, 2], pads=pads)
