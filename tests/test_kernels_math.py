"""Elementwise math, comparison and logic kernels (lowbit/kernels/float/math.py, compare.py)
against the oracles in ``tests/naive/math_ops.py`` and onnxruntime single-node models."""
from __future__ import annotations

import math as pymath

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from onnx import helper

import lowbit
from lowbit.kernels.float import compare
from lowbit.kernels.float import math as fmath
from tests.naive import math_ops as naive

FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SPECIAL = np.array([0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 1e-30, -1e-30, 3.4e38, -3.4e38,
                    np.inf, -np.inf, np.nan], dtype=np.float32)


def ort_node(op, inputs, out_dtype=None, opset=17, **attrs):
    """Run one ONNX node in onnxruntime (one output, of ``out_dtype`` or the first input's dtype)."""
    names = [f"in{i}" for i in range(len(inputs))]
    out_dtype = np.dtype(out_dtype or inputs[0].dtype)
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "single",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(out_dtype), None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, inputs)))[0]


def lowbit_node(op, inputs, opset, **attrs):
    """Run one ONNX node through lowbit.load (the importer, passes and executor)."""
    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "single",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return lowbit.load(model.SerializeToString()).run(dict(zip(names, inputs)))


def activations(rng, shape=(2, 3, 5, 7), scale=3.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)


def check_f32(got, ref, rtol=1e-6, atol=1e-30):
    """float32 result within ``rtol`` of a float64 reference, NaN where it is NaN, inf where it is inf."""
    assert got.dtype == np.float32, got.dtype
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=rtol, atol=atol)


# --- float unary ops ----------------------------------------------------------------------------

UNARY = [
    ("Sqrt", fmath.sqrt, naive.sqrt),
    ("Exp", fmath.exp, naive.exp),
    ("Log", fmath.log, naive.log),
    ("Erf", fmath.erf, naive.erf),
    ("Reciprocal", fmath.reciprocal, naive.reciprocal),
    ("Neg", fmath.neg, lambda v: -float(v)),
    ("Abs", fmath.abs_, lambda v: abs(float(v))),
    ("Floor", fmath.floor, naive.floor),
    ("Ceil", fmath.ceil, naive.ceil),
    ("Round", fmath.round_, naive.round_half_even),
    ("Sign", fmath.sign, naive.sign),
]


@pytest.mark.parametrize("op, kernel, oracle", UNARY, ids=[u[0] for u in UNARY])
def test_unary_float32_against_oracle(op, kernel, oracle, rng):
    x = np.concatenate([activations(rng).reshape(-1), SPECIAL]).reshape(9, 5, 5)
    if op in ("Sqrt", "Log"):
        x = np.abs(x) * np.where(np.arange(x.size).reshape(x.shape) % 7 == 0, -1, 1).astype(np.float32)
    with np.errstate(all="ignore"):
        ref = naive.elementwise(oracle, x, dtype=np.float64)
    got = kernel(x)
    # numpy's SIMD exp/log are within a few ulp; float32 results of a float64 value round to 6e-8.
    check_f32(got, ref, rtol=1e-6 if op not in ("Exp", "Log") else 2e-6)


@pytest.mark.parametrize("op, kernel, oracle", UNARY, ids=[u[0] for u in UNARY])
def test_unary_float32_against_onnxruntime(op, kernel, oracle, rng):
    x = activations(rng, (1, 8, 12, 12))
    if op in ("Sqrt", "Log"):
        x = np.abs(x)
    got = kernel(x)
    ref = ort_node(op, [x], opset=13)
    check_f32(got, ref, rtol=2e-6, atol=1e-7)


def test_round_halves_go_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999998, 2.5000002, 1e7 + 1], dtype=np.float32)
    np.testing.assert_array_equal(fmath.round_(x), np.array([0, 2, 2, -0, -2, -2, 2, 3, 1e7 + 1], dtype=np.float32))


def test_erf_float64_path_is_accurate():
    # float64 input keeps the float64 evaluation; |x| is clamped at 6
    x = np.concatenate([np.linspace(-7, 7, 28001), np.geomspace(1e-300, 1, 301), -np.geomspace(1e-8, 1, 50),
                        [6.0 - 1e-9, 6.0, 6.0 + 1e-9, -0.0]])
    got = fmath.erf(x)
    assert got.dtype == np.float64
    ref = np.array([pymath.erf(v) for v in x])
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)) < 1e-13
    assert np.isnan(fmath.erf(np.array([np.nan]))[0])
    np.testing.assert_array_equal(fmath.erf(np.array([np.inf, -np.inf, 100.0], np.float32)), [1, -1, 1])


def test_erf_float32_series_is_below_float32_rounding():
    x = np.concatenate([np.linspace(0, 7, 40001), np.geomspace(1e-30, 1, 300)])
    out = np.empty_like(x)
    fmath._erf_kernel(x, out, fmath._ERF_CHEBYSHEV_F32, 1024)   # the float32 series, kept in float64
    ref = np.array([pymath.erf(v) for v in x])
    assert np.max(np.abs(out - ref) / np.maximum(ref, 1e-300)) < 2e-9
    assert fmath.erf(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_erf_on_integers_truncates():
    x = np.array([-7, -1, 0, 1, 7], dtype=np.int64)
    got = fmath.erf(x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [int(pymath.erf(v)) for v in x])


def test_unary_keeps_other_float_dtypes(rng):
    x = activations(rng, (3, 4))
    for dtype in (np.float16, np.float64):
        xd = x.astype(dtype)
        for op in (fmath.exp, fmath.sqrt, fmath.floor, fmath.erf, fmath.neg, fmath.sign):
            with np.errstate(all="ignore"):
                got = op(np.abs(xd) if op is fmath.sqrt else xd)
            assert got.dtype == dtype and got.shape == x.shape


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_abs_neg_sign_on_integers(dtype):
    info = np.iinfo(dtype)
    x = np.array([[info.min + 1, -7, -1, 0], [1, 5, 100, info.max]], dtype=dtype)
    for op, kernel, oracle in (("Abs", fmath.abs_, abs), ("Neg", fmath.neg, lambda v: -int(v)),
                               ("Sign", fmath.sign, naive.sign)):
        got = kernel(x)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, naive.elementwise(oracle, x, dtype=dtype))
        np.testing.assert_array_equal(got, ort_node(op, [x], opset=13))


def test_float_only_ops_refuse_integers():
    for kernel, op in ((fmath.sqrt, "Sqrt"), (fmath.exp, "Exp"), (fmath.floor, "Floor"), (fmath.round_, "Round")):
        with pytest.raises(ValueError, match=rf"{op}: input has dtype int64; expected a float tensor"):
            kernel(np.array([1, 2], dtype=np.int64))


def test_unary_on_non_contiguous_and_0d(rng):
    x = activations(rng, (4, 6)).T
    np.testing.assert_array_equal(fmath.floor(x), np.floor(x))
    np.testing.assert_array_equal(fmath.erf(x), fmath.erf(np.ascontiguousarray(x)))
    got = fmath.exp(np.float32(0.5))
    assert got.shape == () and got.dtype == np.float32 and abs(float(got) - pymath.exp(0.5)) < 1e-6


# --- Pow ----------------------------------------------------------------------------------------

def test_pow_float32_against_oracle_and_onnxruntime(rng):
    x = np.abs(activations(rng, (2, 3, 4, 5))) + np.float32(0.1)
    for y in (np.array(2, np.float32), np.array([0.5], np.float32), np.array(-1.5, np.float32),
              np.float32(rng.standard_normal((3, 1, 1))), np.float32(rng.standard_normal((2, 3, 4, 5)))):
        got = fmath.pow_(x, y)
        check_f32(got, naive.elementwise(naive.power, x, y, dtype=np.float64), rtol=2e-6)
        check_f32(got, ort_node("Pow", [x, np.asarray(y)], opset=15), rtol=2e-6)


def test_pow_negative_base_and_zero():
    x = np.array([-2.0, -2.0, 0.0, 0.0, -0.0], dtype=np.float32)
    y = np.array([3.0, 0.5, -1.0, 0.0, 3.0], dtype=np.float32)
    got = fmath.pow_(x, y)
    ref = np.array([naive.power(a, b) for a, b in zip(x, y)])
    np.testing.assert_array_equal(got, ref.astype(np.float32))


@pytest.mark.parametrize("base, exponent", [
    (np.float32, np.int32), (np.float32, np.int64), (np.float32, np.uint32), (np.float32, np.uint64),
    (np.float32, np.float64), (np.float64, np.float32), (np.float16, np.float32),
])
def test_pow_float_base_mixed_exponent_dtypes(base, exponent, rng):
    x = (np.abs(rng.standard_normal((3, 4))) + 0.5).astype(base)
    y = rng.integers(0, 5, size=(4,)).astype(exponent)
    got = fmath.pow_(x, y)
    assert got.dtype == base and got.shape == (3, 4)
    ref = naive.elementwise(naive.power, x, y, dtype=np.float64)
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=1e-3 if base == np.float16 else 1e-6)
    if base == np.float32 and np.dtype(exponent).kind in "if":   # onnxruntime has no unsigned exponents
        np.testing.assert_allclose(got, ort_node("Pow", [x, y], opset=15), rtol=1e-6)


@pytest.mark.parametrize("base, exponent", [
    (np.int32, np.int32), (np.int64, np.int64), (np.int64, np.int32), (np.int32, np.int64), (np.uint8, np.int64),
])
def test_pow_integer_base_integer_exponent_is_exact(base, exponent):
    x = np.array([[0, 1, 2, 3], [5, 2, 1, 7]], dtype=base)
    y = np.array([[3, 0, 10, 5], [2, 30 if base != np.uint8 else 3, 7, 3]], dtype=exponent)
    got = fmath.pow_(x, y)
    assert got.dtype == base
    exact = naive.elementwise(naive.integer_power, x, y, dtype=object)
    wrapped = np.array([v % 2**64 for v in exact.flat], dtype=np.uint64).astype(base).reshape(exact.shape)
    np.testing.assert_array_equal(got, wrapped)


def test_pow_integer_negative_exponent():
    x = np.array([2, -2, 1, -1, -1, 5], dtype=np.int64)
    y = np.array([-1, -3, -4, -3, -2, 2], dtype=np.int64)
    np.testing.assert_array_equal(fmath.pow_(x, y), [0, 0, 1, -1, 1, 25])


def test_pow_integer_base_float_exponent_truncates():
    x = np.array([1, 2, 3, 10], dtype=np.int64)
    y = np.array([4.0, 0.5, 1.5, 1.0], dtype=np.float32)
    got = fmath.pow_(x, y)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [1, 1, 5, 10])
    np.testing.assert_array_equal(got, ort_node("Pow", [x, y], opset=15))


def test_pow_shape_error_names_the_op():
    with pytest.raises(ValueError, match=r"Pow: shapes \(2, 3\), \(4,\) do not broadcast"):
        fmath.pow_(np.ones((2, 3), np.float32), np.ones(4, np.float32))


# --- Min, Max, Mean -----------------------------------------------------------------------------

SHAPE_SETS = [
    [(2, 3, 4, 5)],
    [(2, 3, 4, 5), (2, 3, 4, 5)],
    [(2, 3, 4, 5), (1, 3, 1, 1), ()],
    [(3, 1), (1, 4), (2, 1, 1)],
    [(0, 3), (1, 3)],
]


@pytest.mark.parametrize("shapes", SHAPE_SETS, ids=str)
def test_min_max_mean_against_oracle_and_onnxruntime(shapes, rng):
    inputs = [activations(rng, s) for s in shapes]
    for op, kernel, oracle in (("Min", compare.min_, naive.min_), ("Max", compare.max_, naive.max_),
                               ("Mean", compare.mean, naive.mean)):
        got = kernel(*inputs)
        check_f32(got, oracle(*inputs), rtol=1e-6)
        if all(a.size for a in inputs):
            # onnxruntime sums Mean's inputs in float32: compare to the inputs' scale
            scale = max(1.0, max(float(np.max(np.abs(a))) for a in inputs))
            check_f32(got, ort_node(op, inputs, opset=13), rtol=1e-6, atol=2e-7 * scale)


def test_min_max_propagate_nan():
    a = np.array([np.nan, 1.0, 2.0], dtype=np.float32)
    b = np.array([0.0, np.nan, 1.0], dtype=np.float32)
    for kernel, oracle in ((compare.min_, naive.min_), (compare.max_, naive.max_)):
        np.testing.assert_array_equal(kernel(a, b), oracle(a, b))
        np.testing.assert_array_equal(kernel(b, a), oracle(a, b))


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint64, np.float64, np.float16])
def test_min_max_keep_the_dtype(dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    a = np.array([[info.max, 3, 0]], dtype=dtype)
    b = np.array([[1], [info.min]], dtype=dtype)
    for kernel, oracle in ((compare.min_, naive.min_), (compare.max_, naive.max_)):
        got = kernel(a, b, a)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, oracle(a, b, a))


def test_min_with_a_single_input_copies_it(rng):
    x = activations(rng, (3, 4))
    got = compare.min_(x)
    np.testing.assert_array_equal(got, x)
    assert not np.shares_memory(got, x)


def test_variadic_errors():
    with pytest.raises(ValueError, match="Max: needs one or more inputs"):
        compare.max_()
    with pytest.raises(ValueError, match=r"Min: inputs have dtypes \['float32', 'int64'\]; expected one dtype"):
        compare.min_(np.ones(2, np.float32), np.ones(2, np.int64))
    with pytest.raises(ValueError, match=r"Mean: shapes \(2,\), \(3,\) do not broadcast"):
        compare.mean(np.ones(2, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="Mean: inputs have dtype int64; expected a float tensor"):
        compare.mean(np.ones(2, np.int64))


@FEW
@given(mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4, max_side=4), st.integers(0, 2**31))
def test_variadic_broadcasting_hypothesis(shapes, seed):
    rng = np.random.default_rng(seed)
    inputs = [activations(rng, s) for s in shapes.input_shapes]
    for kernel, oracle in ((compare.min_, naive.min_), (compare.max_, naive.max_), (compare.mean, naive.mean)):
        got = kernel(*inputs)
        assert got.shape == shapes.result_shape
        check_f32(got, oracle(*inputs), rtol=1e-6)


# --- Where --------------------------------------------------------------------------------------

@FEW
@given(mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4, max_side=4), st.integers(0, 2**31))
def test_where_broadcasts_all_three(shapes, seed):
    rng = np.random.default_rng(seed)
    c_shape, x_shape, y_shape = shapes.input_shapes
    cond = rng.random(c_shape) < 0.5
    x, y = activations(rng, x_shape), activations(rng, y_shape)
    got = compare.where(cond, x, y)
    assert got.dtype == np.float32 and got.shape == shapes.result_shape
    np.testing.assert_array_equal(got, naive.where(cond, x, y))


def test_where_against_onnxruntime_and_on_int64(rng):
    cond = rng.random((2, 1, 4)) < 0.5
    x, y = activations(rng, (3, 1)), activations(rng, (2, 3, 4))
    np.testing.assert_array_equal(compare.where(cond, x, y), ort_node("Where", [cond, x, y], np.float32, opset=16))
    xi = np.array([1, 2, 3, 4], dtype=np.int64)
    got = compare.where(np.array([True, False, True, False]), xi, np.int64(-1) * xi)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [1, -2, 3, -4])


@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4), (2, 3, 4)), ((2, 3, 4), (), (2, 3, 4)),
                                    ((), (2, 3, 4), (1,)), ((1, 1), (3, 4), (3, 4)), ((3, 4), (1,), ())], ids=str)
def test_where_select_loop_shapes(shapes, rng):
    c_shape, x_shape, y_shape = shapes
    cond = rng.random(c_shape) < 0.5
    x, y = activations(rng, x_shape), activations(rng, y_shape)
    got = compare.where(cond, x, y)
    np.testing.assert_array_equal(got, naive.where(cond, x, y))
    np.testing.assert_array_equal(compare.where(cond.T, x.T, y.T), naive.where(cond.T, x.T, y.T))


def test_where_errors():
    with pytest.raises(ValueError, match="Where: condition has dtype float32; expected bool"):
        compare.where(np.ones(2, np.float32), np.ones(2, np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"Where: shapes \(2,\), \(3,\), \(1,\) do not broadcast"):
        compare.where(np.ones(2, bool), np.ones(3, np.float32), np.ones(1, np.float32))


# --- comparisons and logic ----------------------------------------------------------------------

COMPARE = [
    ("Equal", compare.equal, lambda a, b: a == b),
    ("Less", compare.less, lambda a, b: a < b),
    ("Greater", compare.greater, lambda a, b: a > b),
    ("LessOrEqual", compare.less_or_equal, lambda a, b: a <= b),
    ("GreaterOrEqual", compare.greater_or_equal, lambda a, b: a >= b),
]


@pytest.mark.parametrize("op, kernel, oracle", COMPARE, ids=[c[0] for c in COMPARE])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int8, np.uint16])
def test_comparisons(op, kernel, oracle, dtype, rng):
    a = np.round(activations(rng, (2, 3, 4))).astype(dtype)
    b = np.round(activations(rng, (3, 1))).astype(dtype)
    if dtype == np.float32:
        a.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    got = kernel(a, b)
    assert got.dtype == np.bool_ and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, naive.elementwise(oracle, a, b, dtype=bool))
    np.testing.assert_array_equal(got, ort_node(op, [a, b], np.bool_, opset=16))


def test_comparison_errors():
    with pytest.raises(ValueError, match=r"Less: inputs have dtypes \['float32', 'int64'\]"):
        compare.less(np.ones(2, np.float32), np.ones(2, np.int64))
    with pytest.raises(ValueError, match=r"Equal: shapes \(2,\), \(3,\) do not broadcast"):
        compare.equal(np.ones(2, np.float32), np.ones(3, np.float32))


LOGIC = [
    ("And", compare.and_, lambda a, b: bool(a) and bool(b)),
    ("Or", compare.or_, lambda a, b: bool(a) or bool(b)),
    ("Xor", compare.xor, lambda a, b: bool(a) != bool(b)),
]


@pytest.mark.parametrize("op, kernel, oracle", LOGIC, ids=[c[0] for c in LOGIC])
def test_logic(op, kernel, oracle, rng):
    a = rng.random((2, 3, 4)) < 0.5
    b = rng.random((4,)) < 0.5
    got = kernel(a, b)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, naive.elementwise(oracle, a, b, dtype=bool))
    np.testing.assert_array_equal(got, ort_node(op, [a, b], opset=16))


def test_not_and_bool_only(rng):
    a = rng.random((3, 4)) < 0.5
    np.testing.assert_array_equal(compare.not_(a), naive.elementwise(lambda v: not v, a, dtype=bool))
    with pytest.raises(ValueError, match=r"Not: inputs have dtypes \['float32'\]; expected bool"):
        compare.not_(np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"And: inputs have dtypes \['bool', 'int64'\]; expected bool"):
        compare.and_(a, np.ones(4, np.int64))


# --- through lowbit.load at several opsets -----------------------------------------------------

OPSET_FORMS = [  # op, first opset >= 7 with this form, n inputs
    ("Pow", 7, 2), ("Pow", 12, 2), ("Pow", 15, 2), ("Sqrt", 7, 1), ("Sqrt", 13, 1), ("Exp", 13, 1),
    ("Log", 7, 1), ("Erf", 9, 1), ("Erf", 13, 1), ("Reciprocal", 13, 1), ("Neg", 7, 1), ("Abs", 13, 1),
    ("Floor", 7, 1), ("Ceil", 13, 1), ("Round", 11, 1), ("Sign", 9, 1), ("Sign", 13, 1),
    ("Min", 8, 3), ("Min", 13, 3), ("Max", 12, 2), ("Mean", 8, 2), ("Mean", 13, 3),
]


@pytest.mark.parametrize("op, opset, n", OPSET_FORMS, ids=[f"{o}-{v}" for o, v, _ in OPSET_FORMS])
def test_ops_load_and_run_at_their_opsets(op, opset, n, rng):
    shapes = [(2, 3, 4, 5), (1, 3, 1, 1), (5,)][:n]
    inputs = [np.abs(activations(rng, s)) + np.float32(0.5) for s in shapes]
    got = lowbit_node(op, inputs, opset)
    check_f32(got, ort_node(op, inputs, opset=max(opset, 7)), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("op, opset", [("Equal", 7), ("Equal", 11), ("Less", 9), ("Greater", 13),
                                       ("LessOrEqual", 12), ("GreaterOrEqual", 16)])
def test_comparisons_load_and_run_at_their_opsets(op, opset, rng):
    dtype = np.int64 if op == "Equal" and opset < 11 else np.float32
    a = np.round(activations(rng, (2, 3, 4))).astype(dtype)
    b = np.round(activations(rng, (4,))).astype(dtype)
    got = lowbit_node(op, [a, b], opset)
    np.testing.assert_array_equal(got, ort_node(op, [a, b], np.bool_, opset=opset))


def test_where_and_logic_load_and_run(rng):
    cond = rng.random((2, 3, 4)) < 0.5
    x, y = activations(rng, (3, 4)), activations(rng, (1,))
    np.testing.assert_array_equal(lowbit_node("Where", [cond, x, y], 9), naive.where(cond, x, y))
    other = rng.random((4,)) < 0.5
    np.testing.assert_array_equal(lowbit_node("Xor", [cond, other], 7), cond ^ other)
    np.testing.assert_array_equal(lowbit_node("Not", [cond], 7), ~cond)
