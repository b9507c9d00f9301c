"""fp32 Conv, Gemm and MatMul kernels against the naive oracles in
``tests/naive/conv_gemm.py`` and against onnxruntime single-node models.

The conv cases are chosen to reach every code path of
``lowbit.kernels.float.conv``: Winograd F(2x2, 3x3) (3x3, stride 1, >= 16
channels), the direct 3x3 kernel (stride 1, images
stacked, padded rows/columns shared), the generic direct kernel (tiny
per-group reductions: depthwise, one input channel) and im2col + GEMM
(everything else), each with batch 1 (work split inside an image) and > 1.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from lowbit.kernels.float import conv as conv_module
from lowbit.kernels.float.conv import conv
from lowbit.config import jit
from lowbit.kernels.float import gemm as gemm_module
from lowbit.kernels.float.gemm import claim, gemm, matmul, run_threads
from tests.naive import conv_gemm as naive

FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_ort(op, inputs, **attrs):
    """Run one ONNX node (opset 17) in onnxruntime; ``None`` inputs are omitted optional inputs."""
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    while names and names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, ["y"], **attrs)
    graph_inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, a.shape)
                    for name, a in zip(names, inputs) if name]
    graph = helper.make_graph([node], "single", graph_inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: a for name, a in zip(names, inputs) if name})[0]


def assert_close(got, ref, tol=1e-4):
    """max |got - ref| <= tol * max(1, max |ref|); same shape; float32, C-contiguous output."""
    ref = np.asarray(ref, dtype=np.float64)
    assert got.dtype == np.float32, got.dtype
    assert got.flags.c_contiguous
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if ref.size == 0:
        return
    err = np.max(np.abs(got.astype(np.float64) - ref))
    assert err <= tol * max(1.0, np.max(np.abs(ref))), f"max abs err {err}"


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- Conv -----------------------------------------------------------------------------------

# (x shape, w shape, bias?, attributes); comments name the path taken.
CONV_CASES = [
    # Winograd: channel counts off the 8/4 blocking, pads 0/1/2, asymmetric pads, SAME,
    # several blocks of images
    ((2, 16, 8, 8), (16, 16, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((3, 17, 6, 10), (19, 17, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((2, 16, 14, 14), (32, 16, 3, 3), False, dict(pads=[2, 2, 2, 2])),
    ((1, 16, 10, 8), (16, 16, 3, 3), True, dict(pads=[0, 1, 2, 1])),
    ((2, 20, 10, 6), (16, 20, 3, 3), True, dict()),
    ((2, 16, 6, 8), (24, 16, 3, 3), True, dict(auto_pad="SAME_UPPER")),
    ((70, 16, 4, 4), (16, 16, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((2, 16, 7, 9), (16, 16, 3, 3), True, dict(pads=[1, 1, 1, 1])),  # odd output sizes
    ((1, 16, 5, 3), (17, 16, 3, 3), True, dict()),                     # 3x1 output
    # direct 3x3: pad 1, pad 2, no pad, asymmetric pads, vertical dilation, odd sizes
    ((2, 3, 7, 9), (8, 3, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((1, 3, 7, 9), (8, 3, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((3, 4, 6, 5), (4, 4, 3, 3), False, dict(pads=[2, 2, 2, 2])),
    ((2, 2, 6, 7), (4, 2, 3, 3), True, dict()),
    ((2, 3, 5, 6), (5, 3, 3, 3), True, dict(pads=[0, 1, 2, 1])),
    ((2, 3, 9, 6), (4, 3, 3, 3), True, dict(pads=[2, 1, 2, 1], dilations=[2, 1])),
    ((1, 1, 11, 10), (6, 1, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((2, 6, 5, 5), (8, 3, 3, 3), True, dict(pads=[1, 1, 1, 1], group=2)),
    ((1, 2, 45, 37), (4, 2, 3, 3), True, dict(pads=[1, 2, 0, 1])),  # several passes per image
    # im2col + GEMM: 3x3 on a small image with a long reduction, strides, 2-D dilations,
    # other kernel sizes, 2-3 output channels per group
    ((2, 16, 5, 5), (8, 16, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((2, 3, 9, 8), (5, 3, 3, 3), True, dict(pads=[1, 1, 1, 1], strides=[2, 2])),
    ((1, 3, 9, 8), (5, 3, 3, 3), True, dict(pads=[1, 1, 1, 1], strides=[2, 2])),
    ((2, 4, 9, 9), (3, 4, 3, 3), True, dict(pads=[2, 2, 2, 2], dilations=[2, 2])),
    ((2, 3, 8, 7), (6, 3, 5, 5), False, dict(pads=[2, 1, 2, 3])),
    ((2, 5, 6, 6), (7, 5, 1, 1), True, dict()),  # (a reduction of 5: generic direct)
    ((2, 4, 7, 6), (4, 4, 2, 3), True, dict(strides=[1, 2])),
    ((2, 6, 6, 6), (6, 2, 3, 3), True, dict(pads=[1, 1, 1, 1], group=3)),
    ((2, 3, 6, 6), (2, 3, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    # direct 3x3, one output channel per group (depthwise)
    ((2, 4, 7, 7), (4, 1, 3, 3), True, dict(pads=[1, 1, 1, 1], group=4)),
    ((1, 3, 6, 5), (3, 1, 3, 3), False, dict(pads=[0, 1, 2, 1], group=3)),
    # generic direct kernel: strided depthwise, two outputs per group, one input channel
    ((2, 3, 7, 6), (6, 1, 3, 3), True, dict(pads=[1, 1, 1, 1], group=3)),
    ((1, 4, 8, 7), (8, 1, 3, 3), True, dict(pads=[1, 0, 1, 2], group=4, strides=[2, 2])),
    ((2, 1, 9, 9), (4, 1, 2, 2), True, dict(strides=[2, 1])),
    # auto_pad
    ((2, 3, 7, 8), (4, 3, 3, 3), True, dict(auto_pad="SAME_UPPER")),
    ((2, 3, 7, 8), (4, 3, 2, 2), True, dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    ((2, 3, 7, 8), (4, 3, 2, 2), True, dict(auto_pad="SAME_LOWER", strides=[2, 2])),
    ((2, 3, 7, 8), (4, 3, 4, 3), False, dict(auto_pad="SAME_LOWER")),
    ((2, 3, 7, 8), (4, 3, 3, 3), True, dict(auto_pad="VALID", strides=[2, 1])),
    # 1-D
    ((2, 3, 11), (4, 3, 3), True, dict(pads=[1, 2], strides=[2])),
]


@pytest.fixture
def small_winograd(monkeypatch):
    """Send these small cases to Winograd too (it normally wants >= 128 tiles per block of images)."""
    monkeypatch.setattr(conv_module, "_WINOGRAD_MIN_TILES", 1)


@pytest.mark.parametrize("x_shape, w_shape, with_bias, attrs", CONV_CASES)
def test_conv_matches_naive_and_onnxruntime(rng, small_winograd, x_shape, w_shape, with_bias, attrs):
    x, w = randn(rng, *x_shape), randn(rng, *w_shape)
    b = randn(rng, w_shape[0]) if with_bias else None
    got = conv(x, w, b, kernel_shape=w_shape[2:], **attrs)
    assert_close(got, naive.conv(x, w, b, **attrs))
    assert_close(got, run_ort("Conv", [x, w, b], kernel_shape=list(w_shape[2:]), **attrs))


@pytest.mark.parametrize("clip", [(0.0, math.inf), (-0.5, 0.75), (-math.inf, 0.25)])
@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((2, 16, 6, 6), (16, 16, 3, 3), dict(pads=[1, 1, 1, 1])),               # Winograd
    ((2, 3, 6, 6), (4, 3, 3, 3), dict(pads=[1, 1, 1, 1])),                 # direct 3x3
    ((2, 3, 6, 6), (4, 3, 3, 3), dict(pads=[1, 1, 1, 1], strides=[2, 2])),  # im2col
    ((2, 3, 6, 6), (3, 1, 3, 3), dict(pads=[1, 1, 1, 1], group=3)),        # direct 3x3, depthwise
    ((2, 3, 6, 6), (3, 1, 2, 2), dict(pads=[1, 1, 1, 1], group=3)),        # generic direct
])
def test_conv_fused_clamp(rng, small_winograd, x_shape, w_shape, attrs, clip):
    x, w, b = randn(rng, *x_shape), randn(rng, *w_shape), randn(rng, w_shape[0])
    got = conv(x, w, b, clip_min=clip[0], clip_max=clip[1], **attrs)
    assert_close(got, naive.conv(x, w, b, clip_min=clip[0], clip_max=clip[1], **attrs))


@FEW
@given(n=st.integers(1, 3), c=st.integers(1, 5), m=st.integers(1, 9), h=st.integers(3, 9),
       wid=st.integers(3, 9), k=st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 5)]),
       stride=st.integers(1, 2), pad=st.integers(0, 2), seed=st.integers(0, 2 ** 16))
def test_conv_random_shapes_match_naive(n, c, m, h, wid, k, stride, pad, seed):
    r = np.random.default_rng(seed)
    if h + 2 * pad < k[0] or wid + 2 * pad < k[1]:
        return
    x, w, b = randn(r, n, c, h, wid), randn(r, m, c, *k), randn(r, m)
    attrs = dict(pads=[pad] * 4, strides=[stride] * 2)
    assert_close(conv(x, w, b, **attrs), naive.conv(x, w, b, **attrs))


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((37, 16, 12, 12), (16, 16, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((1, 8, 12, 12), (16, 8, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((3, 8, 12, 12), (16, 8, 3, 3), dict(pads=[1, 1, 1, 1], strides=[2, 2])),
    ((3, 8, 12, 12), (8, 1, 3, 3), dict(pads=[1, 1, 1, 1], group=8)),
    ((3, 8, 12, 12), (8, 1, 3, 3), dict(pads=[1, 1, 1, 1], group=8, strides=[2, 2])),
])
def test_conv_is_deterministic_across_thread_counts(rng, small_winograd, x_shape, w_shape, attrs):
    x, w, b = randn(rng, *x_shape), randn(rng, *w_shape), randn(rng, w_shape[0])
    x_before, w_before = x.copy(), w.copy()
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = conv(x, w, b, **attrs)
    finally:
        numba.set_num_threads(threads)
    many = conv(x, w, b, **attrs)
    assert np.array_equal(one.view(np.uint32), many.view(np.uint32))
    assert np.array_equal(x, x_before) and np.array_equal(w, w_before)


def test_conv_rejects_bad_shapes(rng):
    x, w = randn(rng, 1, 4, 5, 5), randn(rng, 6, 2, 3, 3)
    with pytest.raises(ValueError, match="group"):
        conv(x, w, group=3)
    with pytest.raises(ValueError, match="kernel_shape"):
        conv(x, w, group=2, kernel_shape=[2, 2])
    with pytest.raises(ValueError, match="bias"):
        conv(x, w, randn(rng, 5), group=2)
    with pytest.raises(ValueError, match="2-D"):
        conv(randn(rng, 1, 2, 3, 3, 3), randn(rng, 2, 2, 1, 1, 1))
    with pytest.raises(ValueError, match="empty"):
        conv(randn(rng, 1, 2, 2, 2), randn(rng, 2, 2, 3, 3))


# --- Gemm -----------------------------------------------------------------------------------

@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (0.5, -2.0), (1.5, 0.0)])
@pytest.mark.parametrize("c_shape", [None, (), (11,), (1, 11), (5, 1), (5, 11)])
def test_gemm_matches_naive_and_onnxruntime(rng, trans_a, trans_b, alpha, beta, c_shape):
    m, k, n = 5, 7, 11
    a = randn(rng, *((k, m) if trans_a else (m, k)))
    b = randn(rng, *((n, k) if trans_b else (k, n)))
    c = None if c_shape is None else randn(rng, *c_shape)
    attrs = dict(alpha=alpha, beta=beta, transA=trans_a, transB=trans_b)
    got = gemm(a, b, c, **attrs)
    assert_close(got, naive.gemm(a, b, c, **attrs))
    assert_close(got, run_ort("Gemm", [a, b, c], **attrs))


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (4, 3, 3), (37, 70, 23), (64, 200, 10)])
def test_gemm_sizes_and_fused_clamp(rng, m, k, n):
    a, b, c = randn(rng, m, k), randn(rng, n, k), randn(rng, n)
    a_before = a.copy()
    got = gemm(a, b, c, transB=1, clip_min=0.0)
    assert_close(got, naive.gemm(a, b, c, transB=1, clip_min=0.0))
    assert_close(gemm(a, b, c, transB=1, clip_min=-1.0, clip_max=1.0),
                 naive.gemm(a, b, c, transB=1, clip_min=-1.0, clip_max=1.0))
    assert np.array_equal(a, a_before)


def test_gemm_on_helper_threads_is_exact(rng, monkeypatch):
    a, b, c = randn(rng, 70, 33), randn(rng, 200, 33), randn(rng, 200)
    serial = gemm(a, b, c, transB=1)
    assert_close(serial, naive.gemm(a, b, c, transB=1))
    monkeypatch.setattr(gemm_module, "_PARALLEL_MIN_MACS", 0)
    threaded = gemm(a, b, c, transB=1)
    assert np.array_equal(serial.view(np.uint32), threaded.view(np.uint32))


@jit
def _count_items(hits, counter):
    while True:
        item = claim(counter)
        if item >= hits.size:
            break
        hits[item] += 1


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_run_threads_does_every_item_once(threads):
    for items in (0, 1, 7, 1000):
        hits = np.zeros(items, dtype=np.int64)
        run_threads(_count_items, (hits, np.zeros(1, dtype=np.int64)), threads)
        assert np.all(hits == 1)


def test_gemm_rejects_bad_shapes(rng):
    with pytest.raises(ValueError, match="inner"):
        gemm(randn(rng, 3, 4), randn(rng, 5, 6))
    with pytest.raises(ValueError, match="broadcast"):
        gemm(randn(rng, 3, 4), randn(rng, 4, 6), randn(rng, 4))


# --- MatMul ---------------------------------------------------------------------------------

@pytest.mark.parametrize("a_shape, b_shape", [
    ((5, 7), (7, 3)),
    ((7,), (7, 3)),
    ((5, 7), (7,)),
    ((7,), (7,)),
    ((2, 3, 4, 5), (5, 6)),
    ((3, 4, 5), (2, 1, 5, 6)),
    ((1, 4, 5), (3, 5, 2)),
    ((4,), (2, 4, 3)),
    ((2, 3, 5), (5,)),
])
def test_matmul_matches_naive_and_onnxruntime(rng, a_shape, b_shape):
    a, b = randn(rng, *a_shape), randn(rng, *b_shape)
    got = matmul(a, b)
    assert_close(got, naive.matmul(a, b))
    assert_close(got, run_ort("MatMul", [a, b]))


def test_matmul_rejects_bad_shapes(rng):
    with pytest.raises(ValueError, match="inner"):
        matmul(randn(rng, 3, 4), randn(rng, 5, 6))
    with pytest.raises(ValueError, match="batch"):
        matmul(randn(rng, 2, 3, 4), randn(rng, 3, 4, 5))
