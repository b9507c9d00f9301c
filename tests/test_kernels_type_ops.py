"""CastLike and Size kernels, against the naive oracles in ``tests/naive/type_ops.py`` and onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes
from onnx import helper

from lowbit.kernels.float import type_ops
from tests.naive import type_ops as naive

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.int8, np.uint8, np.bool_]


def ort_node(op, inputs, out_dtype, opset=21, **attrs):
    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "single",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype)), None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, inputs)))[0]


def _values(shape, src, dst, seed):
    """Values every involved type holds: in [-100, 100], >= 0 where either side is unsigned or bool."""
    kinds = np.dtype(src).kind + np.dtype(dst).kind
    raw = np.random.default_rng(seed).uniform(0 if set(kinds) & set("ub") else -100, 100, shape)
    if np.dtype(src).kind == "b":
        return np.asarray(raw > 50)
    if np.dtype(src).kind in "iu":
        raw = np.trunc(raw)
    return np.asarray(raw, dtype=src)


@FEW
@given(shape=array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
       src=st.sampled_from(DTYPES), dst=st.sampled_from(DTYPES), seed=st.integers(0, 2 ** 16))
def test_cast_like_matches_oracle_and_onnxruntime(shape, src, dst, seed):
    x = _values(shape, src, dst, seed)
    target = np.zeros((2,), dtype=dst)
    got = type_ops.cast_like(x, target)
    assert got.dtype == np.dtype(dst) and got.shape == x.shape
    np.testing.assert_array_equal(got, naive.cast_like(x, target))
    np.testing.assert_array_equal(got, ort_node("CastLike", [x, target], dst))


def test_cast_like_saturates_float8_by_default():
    import ml_dtypes

    x = np.array([1000.0, -1000.0, np.inf, 0.5], np.float32)
    target = np.zeros(1, ml_dtypes.float8_e4m3fn)
    np.testing.assert_array_equal(type_ops.cast_like(x, target).astype(np.float32), [448, -448, 448, 0.5])
    assert np.isnan(type_ops.cast_like(x, target, saturate=0).astype(np.float32)[0])


@FEW
@given(shape=array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5), dtype=st.sampled_from(DTYPES))
def test_size_matches_oracle_and_onnxruntime(shape, dtype):
    x = np.zeros(shape, dtype=dtype)
    got = type_ops.size(x)
    assert got.dtype == np.int64 and got.shape == ()
    assert int(got) == naive.size(x)
    np.testing.assert_array_equal(got, ort_node("Size", [x], np.int64))


def test_cast_like_refuses_a_target_without_onnx_type():
    with pytest.raises(ValueError, match="CastLike: target_type has dtype"):
        type_ops.cast_like(np.zeros(2, np.float32), np.zeros(2, "datetime64[s]"))
