"""Elu, Selu, Celu, Softplus, Softsign, Mish, PRelu and ThresholdedRelu (lowbit/kernels/float/activations.py)
against the oracles in ``tests/naive/math_ops.py``, onnxruntime single-node models and, for the opsets
past 21 that only added types, the ONNX backend cases re-stamped to opset 21."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnx.defs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import lowbit
from lowbit.kernels.float import activations as act
from tests.naive import math_ops as naive
from tests.test_kernels_math import check_f32, lowbit_node, ort_node

FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EDGES = np.array([0.0, -0.0, 1e-8, -1e-8, 1e-3, -1e-3, 0.9999999, 1.0, 1.0000001, 19.9, 20.0, 20.1,
                  40.0, -40.0, 88.0, -88.0, -100.0, 1e4, -1e4], dtype=np.float32)

# op, kernel, oracle, attributes to try (ONNX defaults first)
ACTS = [
    ("Elu", act.elu, naive.elu, [{}, {"alpha": 0.3}, {"alpha": 2.5}]),
    ("Selu", act.selu, naive.selu, [{}, {"alpha": 2.0, "gamma": 3.0}]),
    ("Celu", act.celu, naive.celu, [{}, {"alpha": 0.5}, {"alpha": 3.0}]),
    ("Softplus", act.softplus, naive.softplus, [{}]),
    ("Softsign", act.softsign, naive.softsign, [{}]),
    ("Mish", act.mish, naive.mish, [{}]),
    ("ThresholdedRelu", act.thresholded_relu, naive.thresholded_relu, [{}, {"alpha": 0.5}, {"alpha": -1.0}]),
]
CASES = [(op, k, o, a) for op, k, o, attrs in ACTS for a in attrs]
IDS = [f"{op}-{a}" for op, _, _, a in CASES]


def inputs(rng, shape=(2, 4, 6, 6)):
    x = np.asarray(rng.standard_normal(shape) * 4, dtype=np.float32)
    flat = x.reshape(-1)
    n = min(flat.size, EDGES.size)
    flat[:n] = EDGES[:n]
    return x


@pytest.mark.parametrize("op, kernel, oracle, attrs", CASES, ids=IDS)
def test_against_oracle(op, kernel, oracle, attrs, rng):
    x = inputs(rng)
    got = kernel(x, **attrs)
    ref = naive.elementwise(lambda v: oracle(v, **attrs), x, dtype=np.float64)
    check_f32(got, ref, rtol=2e-6, atol=1e-37)


@pytest.mark.parametrize("op, kernel, oracle, attrs", CASES, ids=IDS)
def test_against_onnxruntime(op, kernel, oracle, attrs, rng):
    x = inputs(rng, (1, 8, 16, 16))
    got = kernel(x, **attrs)
    ref = ort_node(op, [x], opset=18, **attrs)
    # onnxruntime computes exp(x) - 1 (not expm1), whose float32 cancellation near 0 is scaled by the
    # negative branch's factor: compare at that scale
    scale = attrs.get("alpha", 1.0) * attrs.get("gamma", 1.0) if op in ("Elu", "Selu", "Celu") else 1.0
    check_f32(got, ref, rtol=2e-6, atol=2e-7 * max(1.0, abs(scale)))


@pytest.mark.parametrize("op, kernel, oracle, attrs", CASES, ids=IDS)
def test_nan_and_inf(op, kernel, oracle, attrs):
    x = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    got = kernel(x, **attrs)
    with np.errstate(all="ignore"):
        ref = np.array([oracle(float(v), **attrs) if not (op == "Mish" and v == -np.inf) else np.nan for v in x])
    if op == "ThresholdedRelu":
        ref[0] = 0.0  # NaN > alpha is false: the spec's "otherwise 0"
    if op == "Softplus":
        ref[1] = np.inf
    np.testing.assert_array_equal(got, ref.astype(np.float32))


@pytest.mark.parametrize("op, kernel, oracle, attrs", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes(op, kernel, oracle, attrs, dtype, rng):
    x = inputs(rng, (3, 7)).astype(dtype)
    with np.errstate(all="ignore"):
        got = kernel(x, **attrs)
        ref = naive.elementwise(lambda v: oracle(v, **attrs), x, dtype=np.float64)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(dtype).astype(np.float64),
                               rtol=1e-3 if dtype == np.float16 else 1e-12, atol=1e-30)


@pytest.mark.parametrize("op, kernel, oracle, attrs", CASES[:: 2], ids=IDS[:: 2])
def test_shapes_layout_and_0d(op, kernel, oracle, attrs, rng):
    x = inputs(rng, (4, 6)).T                       # not contiguous
    np.testing.assert_array_equal(kernel(x, **attrs), kernel(np.ascontiguousarray(x), **attrs))
    assert kernel(np.zeros((0, 3), np.float32), **attrs).shape == (0, 3)
    scalar = kernel(np.float32(-0.7), **attrs)
    assert scalar.shape == () and scalar.dtype == np.float32
    check_f32(scalar, oracle(-0.7, **attrs), rtol=2e-6)
    x = inputs(rng, (3, 3))
    before = x.copy()
    kernel(x, **attrs)
    np.testing.assert_array_equal(x, before)         # the input is never written


def test_integer_input_is_refused():
    for kernel, op in ((act.elu, "Elu"), (act.mish, "Mish"), (act.softplus, "Softplus")):
        with pytest.raises(ValueError, match=rf"{op}: input has dtype int64; expected a float tensor"):
            kernel(np.array([1, -2], dtype=np.int64))
    with pytest.raises(ValueError, match="Celu: alpha must be nonzero"):
        act.celu(np.ones(2, np.float32), alpha=0.0)


# --- PRelu --------------------------------------------------------------------------------------

SLOPES = [
    ((2, 3, 4, 5), (3, 1, 1)),       # per channel, as PyTorch exports it
    ((2, 3, 4, 5), (1, 3, 1, 1)),
    ((2, 3, 4, 5), ()),              # one slope
    ((2, 3, 4, 5), (1,)),
    ((2, 3, 4, 5), (5,)),            # last axis (numpy alignment)
    ((2, 3, 4, 5), (4, 5)),
    ((2, 3, 4, 5), (3, 1, 5)),       # generic
    ((2, 3, 4, 5), (2, 3, 4, 5)),    # full
    ((3, 4, 5), (5,)),
]


@pytest.mark.parametrize("x_shape, slope_shape", SLOPES, ids=str)
def test_prelu_against_oracle_and_onnxruntime(x_shape, slope_shape, rng):
    x = np.asarray(rng.standard_normal(x_shape), dtype=np.float32)
    slope = np.asarray(rng.standard_normal(slope_shape), dtype=np.float32)
    got = act.prelu(x, slope)
    assert got.shape == x_shape
    check_f32(got, naive.prelu(x, slope), rtol=1e-6)
    check_f32(got, ort_node("PRelu", [x, slope], opset=16), rtol=1e-6)


@FEW
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data(), st.integers(0, 2**31))
def test_prelu_unidirectional_hypothesis(x_shape, data, seed):
    rank = data.draw(st.integers(0, len(x_shape)))
    tail = x_shape[len(x_shape) - rank:]
    slope_shape = tuple(d if data.draw(st.booleans()) else 1 for d in tail)
    rng = np.random.default_rng(seed)
    x = np.asarray(rng.standard_normal(x_shape), dtype=np.float32)
    slope = np.asarray(rng.standard_normal(slope_shape), dtype=np.float32)
    check_f32(act.prelu(x, slope), naive.prelu(x, slope), rtol=1e-6)


def test_prelu_other_dtypes_and_errors(rng):
    xi = np.array([[-3, 2], [5, -1]], dtype=np.int64)
    np.testing.assert_array_equal(act.prelu(xi, np.array([2, 3], np.int64)), [[-6, 2], [5, -3]])
    x64 = rng.standard_normal((2, 3))
    got = act.prelu(x64, np.float64(0.25))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, naive.prelu(x64, np.float64(0.25)), rtol=1e-15)
    with pytest.raises(ValueError, match=r"PRelu: slope shape \(2, 3\) does not broadcast to input shape \(3,\)"):
        act.prelu(np.ones(3, np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"PRelu: slope shape \(4,\) does not broadcast"):
        act.prelu(np.ones((2, 3), np.float32), np.ones(4, np.float32))


# --- through lowbit.load ----------------------------------------------------------------------

OPSET_FORMS = [("Elu", 7), ("Selu", 7), ("Celu", 12), ("Softplus", 7), ("Softsign", 7), ("Mish", 18),
               ("ThresholdedRelu", 10), ("PRelu", 7), ("PRelu", 9), ("PRelu", 16)]


@pytest.mark.parametrize("op, opset", OPSET_FORMS, ids=[f"{o}-{v}" for o, v in OPSET_FORMS])
def test_load_and_run_at_their_opsets(op, opset, rng):
    x = inputs(rng, (2, 3, 4, 4))
    ins = [x] + ([np.asarray(rng.random((3, 1, 1)), np.float32)] if op == "PRelu" else [])
    got = lowbit_node(op, ins, opset)
    check_f32(got, ort_node(op, ins, opset=opset), rtol=2e-6, atol=2e-7)


# --- backend cases of the ops whose versions after 21 only widened types ---------------------

TYPE_ONLY_AFTER_21 = ["Elu", "Selu", "Celu", "Softplus", "Softsign", "Mish", "ThresholdedRelu"]


def _schema_io(schema):
    return (sorted((name, a.default_value.SerializeToString()) for name, a in schema.attributes.items()),
            [i.name for i in schema.inputs], [o.name for o in schema.outputs])


@pytest.mark.parametrize("op", TYPE_ONLY_AFTER_21)
def test_later_versions_only_widen_types(op):
    assert _schema_io(onnx.defs.get_schema(op)) == _schema_io(onnx.defs.get_schema(op, 21))


def _backend_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return [c for c in cases if c.model.graph.node
            and {n.op_type for n in c.model.graph.node} <= set(TYPE_ONLY_AFTER_21)]


BACKEND = _backend_cases()


@pytest.mark.parametrize("case", BACKEND, ids=[c.name for c in BACKEND])
def test_backend_case_restamped_to_21(case):
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = min(entry.version, 21)
    m = lowbit.load(model.SerializeToString())
    names = [vi.name for vi in model.graph.input]
    for data_in, data_out in case.data_sets:
        feeds = {n: numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v)
                 for n, v in zip(names, data_in)}
        expected = np.asarray(data_out[0])
        got = np.asarray(m.run(feeds))
        assert got.dtype == expected.dtype and got.shape == expected.shape
        tol = 1e-2 if expected.dtype.itemsize == 2 else 1e-5
        np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=tol, atol=tol)
