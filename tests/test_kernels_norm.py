"""LayerNormalization, InstanceNormalization, GroupNormalization, Gelu and MatMul, against the naive
oracles in ``tests/naive/norm.py`` and against onnxruntime."""
from __future__ import annotations

import numba
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.kernels.float import gelu, gemm, layer_norm, normalization_more
from tests.naive import norm as naive
from tests.test_kernels_ops import FEW, assert_close, f32, run_ort


# --- LayerNormalization ---------------------------------------------------------------------

LAYER_CASES = [
    ((2, 5, 8), -1),        # (N, T, C) over C
    ((2, 5, 8), 1),
    ((2, 3, 4, 5), 1),      # NCHW over C, H, W
    ((2, 3, 4, 5), -3),
    ((2, 3, 4, 5), 0),      # everything
    ((7,), 0),
    ((3, 1), -1),           # one element per row: y = bias
]


@pytest.mark.parametrize("shape,axis", LAYER_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_matches_naive(rng, shape, axis, with_bias):
    x = f32(rng, *shape, scale=3.0) + np.float32(1.5)
    norm_shape = shape[axis % len(shape):]
    scale, bias = f32(rng, *norm_shape), f32(rng, *norm_shape) if with_bias else None
    y, mean, inv = layer_norm.layer_normalization(x, scale, bias, axis=axis, epsilon=1e-3)
    ry, rmean, rinv = naive.layer_norm(x, scale, bias, axis=axis, epsilon=1e-3)
    assert_close(y, ry)
    assert_close(mean, rmean)
    assert_close(inv, rinv)


@pytest.mark.parametrize("shape,axis", LAYER_CASES[:5])
def test_layer_norm_matches_onnxruntime(rng, shape, axis):
    x = f32(rng, *shape)
    norm_shape = shape[axis % len(shape):]
    scale, bias = f32(rng, *norm_shape), f32(rng, *norm_shape)
    y, _, _ = layer_norm.layer_normalization(x, scale, bias, axis=axis)
    assert_close(y, run_ort("LayerNormalization", [x, scale, bias], opset=17, axis=axis), tol=1e-5)


def test_layer_norm_broadcast_scale_and_long_rows(rng):
    # Rows longer than one block take the multi-block path; scale (1, C) broadcasts to (C,).
    x = f32(rng, 2, 3 * layer_norm.BLOCK + 5, scale=2.0) + np.float32(100.0)
    scale = f32(rng, 1, x.shape[1])
    y, mean, inv = layer_norm.layer_normalization(x, scale, None)
    x64 = x.astype(np.float64)
    ref_mean = x64.mean(axis=1, keepdims=True)
    ref_inv = 1.0 / np.sqrt(((x64 - ref_mean) ** 2).mean(axis=1, keepdims=True) + 1e-5)
    assert_close(y, (x64 - ref_mean) * ref_inv * scale.astype(np.float64))
    assert_close(mean, ref_mean, tol=1e-6)
    assert_close(inv, ref_inv)


def test_layer_norm_same_bits_for_any_thread_count(rng):
    x = f32(rng, 3, 2 * layer_norm.BLOCK + 17)
    scale, bias = f32(rng, x.shape[1]), f32(rng, x.shape[1])
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = layer_norm.layer_normalization(x, scale, bias)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = layer_norm.layer_normalization(x, scale, bias)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, many):
        assert np.array_equal(a, b)


def test_layer_norm_stash_type_and_float16(rng):
    x = f32(rng, 2, 6).astype(np.float16)
    y, mean, inv = layer_norm.layer_normalization(x, np.ones(6, np.float16), None, stash_type=11)
    assert y.dtype == np.float16 and mean.dtype == np.float64 and inv.dtype == np.float64
    ry, rmean, _ = naive.layer_norm(x, np.ones(6), None)
    np.testing.assert_allclose(y.astype(np.float64), ry, atol=2e-3)
    np.testing.assert_allclose(mean, rmean, atol=1e-12)


@FEW
@given(rank=st.integers(1, 4), data=st.data())
def test_layer_norm_hypothesis(rank, data):
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    axis = data.draw(st.integers(-rank, rank - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = f32(rng, *shape)
    norm_shape = shape[axis % rank:]
    scale, bias = f32(rng, *norm_shape), f32(rng, *norm_shape)
    eps = data.draw(st.sampled_from([1e-5, 1e-2, 0.5]))
    got = layer_norm.layer_normalization(x, scale, bias, axis=axis, epsilon=eps)
    for g, r in zip(got, naive.layer_norm(x, scale, bias, axis=axis, epsilon=eps)):
        assert_close(g, r, tol=1e-4)


@pytest.mark.parametrize("kwargs,message", [
    (dict(axis=3), "axis 3 is out of range"),
    (dict(axis=-4), "axis -4 is out of range"),
    (dict(stash_type=16), "stash_type 16"),
])
def test_layer_norm_rejects_bad_attributes(rng, kwargs, message):
    with pytest.raises(ValueError, match=message):
        layer_norm.layer_normalization(f32(rng, 2, 3, 4), np.ones(4, np.float32), **kwargs)


def test_layer_norm_rejects_scale_of_wrong_shape(rng):
    with pytest.raises(ValueError, match=r"LayerNormalization: Scale of shape \(5,\) does not broadcast to \(4,\)"):
        layer_norm.layer_normalization(f32(rng, 2, 4), np.ones(5, np.float32))


# --- InstanceNormalization / GroupNormalization ---------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 4, 7), (1, 2, 130, 130)])
def test_instance_norm_matches_naive_and_onnxruntime(rng, shape):
    x = f32(rng, *shape, scale=2.0) - np.float32(0.5)
    scale, bias = f32(rng, shape[1]), f32(rng, shape[1])
    y = normalization_more.instance_normalization(x, scale, bias, epsilon=1e-4)
    if x.size < 2000:
        assert_close(y, naive.instance_norm(x, scale, bias, epsilon=1e-4))
    assert_close(y, run_ort("InstanceNormalization", [x, scale, bias], opset=17, epsilon=1e-4), tol=1e-4)


GROUP_CASES = [((2, 6, 4, 5), 3), ((2, 6, 4, 5), 1), ((2, 6, 4, 5), 6), ((1, 8, 9), 4), ((3, 4), 2),
               ((1, 4, 90, 100), 2)]   # groups of 18,000 values: more than one block


@pytest.mark.parametrize("shape,groups", GROUP_CASES)
def test_group_norm_matches_naive_and_onnxruntime(rng, shape, groups):
    x = f32(rng, *shape, scale=2.0) + np.float32(3.0)
    scale, bias = f32(rng, shape[1]), f32(rng, shape[1])
    y = normalization_more.group_normalization(x, scale, bias, num_groups=groups, epsilon=1e-3)
    if x.size < 2000:
        assert_close(y, naive.group_norm(x, scale, bias, groups, epsilon=1e-3))
    assert_close(y, run_ort("GroupNormalization", [x, scale, bias], opset=21, num_groups=groups, epsilon=1e-3),
                 tol=1e-4)


@pytest.mark.parametrize("shape,groups", GROUP_CASES[:4])
def test_group_norm_per_group_form_matches_naive_and_onnxruntime(rng, shape, groups):
    x = f32(rng, *shape)
    scale, bias = f32(rng, groups), f32(rng, groups)
    y = normalization_more.group_normalization(x, scale, bias, num_groups=groups, per_group=1)
    assert_close(y, naive.group_norm(x, scale, bias, groups, per_group=True))
    assert_close(y, run_ort("GroupNormalization", [x, scale, bias], opset=18, num_groups=groups), tol=1e-4)


def _group_norm_model(opset, scale, bias, constant_params):
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 3, 3])
    inputs, inits = [x_info], []
    for name, value in (("scale", scale), ("bias", bias)):
        if constant_params:
            inits.append(numpy_helper.from_array(value, name))
        else:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], num_groups=2, epsilon=1e-4)
    graph = helper.make_graph([node], "gn", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3, 3])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("constant_params", [True, False])
def test_group_norm_opset21_model_loads_and_matches_onnxruntime(rng, constant_params):
    x, scale, bias = f32(rng, 2, 4, 3, 3), f32(rng, 4), f32(rng, 4)
    model = _group_norm_model(21, scale, bias, constant_params)
    feeds = {"x": x} if constant_params else {"x": x, "scale": scale, "bias": bias}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = lowbit.load(model.SerializeToString()).run(feeds)
    assert_close(got, session.run(None, feeds)[0], tol=1e-4)
    assert_close(got, naive.group_norm(x, scale, bias, 2, epsilon=1e-4), tol=1e-4)


@pytest.mark.parametrize("opset", [18, 20, 21])
def test_group_norm_canonical_form_matches_onnxruntime_at_each_opset(rng, opset):
    # onnx.checker (run by lowbit.load) refuses the deprecated opset-18 op, so the importer's
    # rewrite is applied here directly, then run with the kernel, against onnxruntime.
    from lowbit.graph.onnx_import import _Canonicalizer

    size = 4 if opset == 21 else 2
    x, scale, bias = f32(rng, 2, 4, 3, 3), f32(rng, size), f32(rng, size)
    attrs, inputs = {"num_groups": 2, "epsilon": 1e-4}, ["x", "scale", "bias"]
    _Canonicalizer(opset, {})("GroupNormalization", "gn", inputs, attrs)
    assert inputs == ["x", "scale", "bias"] and attrs.get("per_group", 0) == (opset < 21)
    got = normalization_more.group_normalization(x, scale, bias, **attrs)
    model = _group_norm_model(opset, scale, bias, constant_params=False)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert_close(got, session.run(None, {"x": x, "scale": scale, "bias": bias})[0], tol=1e-4)


def test_group_norm_same_bits_for_any_thread_count(rng):
    x = f32(rng, 1, 4, 130, 130)
    scale, bias = f32(rng, 4), f32(rng, 4)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = normalization_more.group_normalization(x, scale, bias, num_groups=2)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = normalization_more.group_normalization(x, scale, bias, num_groups=2)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, many)


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_groups=4), "num_groups must be a positive divisor of the 6 channels"),
    (dict(num_groups=None), "num_groups must be a positive divisor"),
    (dict(num_groups=3, per_group=1), r"must have 3 values \(num_groups\)"),
    (dict(num_groups=2), r"must have 6 values \(C\)"),
])
def test_group_norm_rejects_bad_attributes(rng, kwargs, message):
    with pytest.raises(ValueError, match=message):
        normalization_more.group_normalization(f32(rng, 1, 6, 2, 2), np.ones(2, np.float32),
                                               np.ones(2, np.float32), **kwargs)


def test_instance_norm_rejects_input_without_spatial_axes(rng):
    with pytest.raises(ValueError, match=r"InstanceNormalization: expected an \(N, C, D1, ...\) input"):
        normalization_more.instance_normalization(f32(rng, 2, 4), np.ones(4), np.ones(4))


# --- Gelu -----------------------------------------------------------------------------------

@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_naive_and_onnxruntime(rng, approximate):
    x = np.concatenate([f32(rng, 200, scale=4.0),
                        np.array([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e20, -1e20, np.inf, -np.inf], np.float32)])
    x = x.reshape(2, -1)
    y = gelu.gelu(x, approximate=approximate)
    ref = naive.gelu(x[np.isfinite(x)].reshape(1, -1), approximate)
    assert_close(y[np.isfinite(x)].reshape(1, -1), ref, tol=1e-6)
    # The formula's inf * 0 at -inf is NaN, as in onnxruntime and the ONNX reference.
    assert y[x == np.inf].tolist() == [np.inf] and np.isnan(y[x == -np.inf]).all()
    finite = np.abs(x) < 1e10
    assert_close(y[finite], run_ort("Gelu", [x], opset=20, approximate=approximate)[finite], tol=1e-6)


def test_gelu_nan_and_float64(rng):
    assert np.isnan(gelu.gelu(np.array([np.nan], np.float32))).all()
    x = rng.standard_normal(50)
    y = gelu.gelu(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, naive.gelu(x), rtol=1e-9, atol=1e-300)   # the fitted erfc: < 1e-9 relative


def test_gelu_rejects_unknown_approximation(rng):
    with pytest.raises(ValueError, match="Gelu: approximate must be 'none' or 'tanh', got 'fast'"):
        gelu.gelu(f32(rng, 3), approximate="fast")


# --- MatMul ---------------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((4,), (4,)),                       # 1-D · 1-D: a scalar
    ((4,), (2, 4, 3)),                  # 1-D left, batched right
    ((2, 3, 5, 4), (4,)),               # batched left, 1-D right
    ((5, 4), (4, 3)),                   # the 2-D fast path
    ((2, 3, 7, 4), (2, 3, 4, 7)),       # attention scores (B, H, T, D) @ (B, H, D, T)
    ((2, 1, 3, 4), (5, 4, 2)),          # batch axes broadcast both ways
    ((3, 4), (2, 4, 5)),                # 2-D left, batched right
    ((2, 6, 4), (1, 4, 5)),             # right operand with a unit batch axis (shared)
    ((0, 3, 4), (4, 2)),                # empty batch
    ((3, 0), (0, 2)),                   # empty inner axis: zeros
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_matches_naive(rng, sa, sb):
    a, b = f32(rng, *sa), f32(rng, *sb)
    y = gemm.matmul(a, b)
    assert y.flags.c_contiguous
    assert_close(y, naive.matmul(a, b))


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES[:8])
def test_matmul_matches_onnxruntime(rng, sa, sb):
    a, b = f32(rng, *sa), f32(rng, *sb)
    assert_close(gemm.matmul(a, b), run_ort("MatMul", [a, b], opset=13))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.uint64, np.float64])
def test_matmul_keeps_integer_and_double_dtypes(rng, dtype):
    a = rng.integers(0, 50, size=(2, 3, 4)).astype(dtype)
    b = rng.integers(0, 50, size=(4, 5)).astype(dtype)
    y = gemm.matmul(a, b)
    assert y.dtype == dtype
    assert np.array_equal(y, naive.matmul(a, b).astype(dtype))
    assert np.array_equal(y, run_ort("MatMul", [a, b], opset=13))


def test_matmul_int32_wraps_like_c(rng):
    a = np.full((1, 2), 2 ** 30, dtype=np.int32)
    b = np.full((2, 1), 2, dtype=np.int32)
    assert gemm.matmul(a, b).tolist() == [[0]]   # 2 * 2**31 wraps to 0


@pytest.mark.parametrize("sa,sb,message", [
    ((3, 4), (5, 2), "inner dimensions differ"),
    ((2, 3, 4), (3, 4, 2), "batch axes do not broadcast"),
    ((), (3,), "at least 1-D"),
])
def test_matmul_rejects_bad_shapes(rng, sa, sb, message):
    with pytest.raises(ValueError, match=message):
        gemm.matmul(f32(rng, *sa), f32(rng, *sb))


def test_matmul_rejects_mixed_dtypes(rng):
    with pytest.raises(ValueError, match="MatMul operands must have one dtype, got int32 and float32"):
        gemm.matmul(np.ones((2, 2), np.int32), f32(rng, 2, 2))
