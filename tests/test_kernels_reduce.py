"""Reductions, ArgMax/ArgMin, TopK and Hardmax against the plain-loop oracles in
``tests/naive/reduce.py`` and against onnxruntime single-node models."""
from __future__ import annotations

import numba
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.kernels.float import argreduce, reduce, softmax, topk
from tests.naive import reduce as naive
from tests.test_kernels_ops import assert_close, f32, run_ort

FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REDUCE = {
    "ReduceSum": reduce.reduce_sum,
    "ReduceMean": reduce.reduce_mean,
    "ReduceMax": reduce.reduce_max,
    "ReduceMin": reduce.reduce_min,
    "ReduceProd": reduce.reduce_prod,
    "ReduceL1": reduce.reduce_l1,
    "ReduceL2": reduce.reduce_l2,
    "ReduceSumSquare": reduce.reduce_sum_square,
    "ReduceLogSum": reduce.reduce_log_sum,
    "ReduceLogSumExp": reduce.reduce_log_sum_exp,
}
#: The opset from which ``axes`` is an input rather than an attribute.
AXES_INPUT_FROM = {op: 13 if op == "ReduceSum" else 18 for op in REDUCE}

AXES = [None, [1], [2, 3], [-1], [0, 2], [1, 3], [0, 1, 2, 3], [-3, -2]]


def _data(op, rng, *shape):
    x = f32(rng, *shape)
    if op == "ReduceLogSum":
        return np.abs(x) + np.float32(0.1)       # log of a positive sum
    if op == "ReduceProd":
        return (np.float32(1.0) + np.float32(0.1) * x).astype(np.float32)   # a product of O(1) values
    return x


def _ort_reduce(op, x, axes, keepdims, opset):
    if opset >= AXES_INPUT_FROM[op]:
        inputs = [x, None if axes is None else np.asarray(axes, dtype=np.int64)]
        return run_ort(op, inputs, opset=opset, keepdims=keepdims)
    extra = {} if axes is None else {"axes": list(axes)}
    return run_ort(op, [x], opset=opset, keepdims=keepdims, **extra)


def run_ort_any(op, inputs, out_dtypes, opset, **attrs):
    """One node in onnxruntime with every output returned (``run_ort`` returns only the first)."""
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    outs = [f"y{i}" for i in range(len(out_dtypes))]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph(
        [node], "single",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs) if a is not None],
        [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(np.dtype(t)), None)
         for o, t in zip(outs, out_dtypes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {n: a for n, a in zip(names, inputs) if a is not None})


# --- Reduce* --------------------------------------------------------------------------------

@pytest.mark.parametrize("op", sorted(REDUCE))
@pytest.mark.parametrize("axes", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [1, 0])
def test_reduce_vs_naive_and_onnxruntime(op, axes, keepdims, rng):
    x = _data(op, rng, 2, 3, 4, 5)
    kernel_axes = None if axes is None else np.asarray(axes, dtype=np.int64)
    got = REDUCE[op](x, kernel_axes, keepdims=keepdims)
    assert_close(got, naive.reduce(op, x, axes, keepdims), 1e-6)
    assert_close(got, _ort_reduce(op, x, axes, keepdims, 18), 2e-6)


@pytest.mark.parametrize("op", sorted(REDUCE))
def test_reduce_axes_attribute_form(op, rng):
    # Before opset 13 (ReduceSum) / 18 (the rest) axes is an attribute: the executor passes it as a keyword.
    x = _data(op, rng, 2, 3, 4, 5)
    got = REDUCE[op](x, axes=[1, -1], keepdims=0)
    assert_close(got, naive.reduce(op, x, [1, -1], 0), 1e-6)
    assert_close(got, _ort_reduce(op, x, [1, -1], 0, 13 if op != "ReduceSum" else 11), 2e-6)


@pytest.mark.parametrize("op", sorted(REDUCE))
@pytest.mark.parametrize("shape, axes", [((2, 16, 9, 11), [2, 3]), ((2, 16, 9, 11), [1]),
                                         ((1, 600, 7), [1]), ((3, 2000), [0]), ((1, 3, 2001), [-1])],
                         ids=["spatial", "channel", "wide-inner", "axis0", "long-row"])
def test_reduce_hot_shapes(op, shape, axes, rng):
    # Global pooling and channel reductions (and lines longer than one task's chunk of 512).
    x = _data(op, rng, *shape)
    got = REDUCE[op](x, np.asarray(axes))
    ref = naive.reduce(op, x, axes) if x.size <= 20_000 else None
    if ref is not None:
        assert_close(got, ref, 1e-6)
    assert_close(got, _ort_reduce(op, x, axes, 1, 18), 2e-6)


@pytest.mark.parametrize("op", sorted(REDUCE))
def test_reduce_empty_set(op):
    # Reduced axis of length 0: 0 for sums, 1 for the product, -inf/+inf for max/min, -inf for the logs, NaN mean.
    x = np.zeros((2, 0, 3), dtype=np.float32)
    got = REDUCE[op](x, np.array([1]), keepdims=1)
    ref = naive.reduce(op, x, [1], 1)
    assert got.shape == (2, 1, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref.astype(np.float32))


@pytest.mark.parametrize("op", sorted(REDUCE))
def test_reduce_empty_axes(op, rng):
    x = _data(op, rng, 2, 3, 4)
    everything = REDUCE[op](x, np.array([], dtype=np.int64), keepdims=0)
    assert everything.shape == ()
    assert_close(everything, naive.reduce(op, x, None, 0), 1e-6)
    assert REDUCE[op](x, None, noop_with_empty_axes=1) is x
    assert REDUCE[op](x, np.array([], dtype=np.int64), noop_with_empty_axes=1) is x
    np.testing.assert_array_equal(REDUCE[op](x, np.array([0]), noop_with_empty_axes=1),
                                  REDUCE[op](x, np.array([0])))


def test_reduce_rank0(rng):
    x = np.array(-2.5, dtype=np.float32)
    for op, kernel in REDUCE.items():
        if op in ("ReduceLogSum",):
            continue
        assert_close(kernel(x), naive.reduce(op, x), 1e-6)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_reduce_integer_inputs(op, dtype, rng):
    # Shape plumbing (e.g. ReduceProd of a Shape output) reduces int64 tensors, exactly and in their dtype.
    x = rng.integers(-5, 6, size=(3, 4, 2)).astype(dtype)
    for axes in (None, [0], [1, 2]):
        got = REDUCE[op](x, None if axes is None else np.array(axes), keepdims=0)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, naive.reduce(op, x, axes, 0))
        np.testing.assert_array_equal(got, _ort_reduce(op, x, axes, 0, 18))


def test_reduce_integer_empty_set_and_bool():
    x = np.zeros((0, 3), dtype=np.int64)
    np.testing.assert_array_equal(reduce.reduce_max(x, np.array([0]), keepdims=0), [np.iinfo(np.int64).min] * 3)
    np.testing.assert_array_equal(reduce.reduce_min(x, np.array([0]), keepdims=0), [np.iinfo(np.int64).max] * 3)
    b = np.array([[True, False], [False, False]])
    np.testing.assert_array_equal(reduce.reduce_max(b, np.array([1]), keepdims=0), [True, False])
    np.testing.assert_array_equal(reduce.reduce_min(b, np.array([0]), keepdims=0), [False, False])
    assert reduce.reduce_max(np.zeros((0,), dtype=bool), keepdims=0).item() is False
    with pytest.raises(ValueError, match="ReduceSum: unsupported input dtype bool"):
        reduce.reduce_sum(b)


def test_reduce_nan_propagates(rng):
    x = f32(rng, 2, 3, 600)
    x[1, 2, 5] = np.nan
    for op in ("ReduceMax", "ReduceMin", "ReduceSum", "ReduceLogSumExp"):
        for axes in ([2], [1]):
            got = REDUCE[op](x, np.array(axes), keepdims=0)
            ref = naive.reduce(op, x, axes, 0)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))


def test_reduce_log_sum_exp_large_values(rng):
    x = f32(rng, 3, 700, scale=1000.0)
    for axes in ([1], [0]):
        got = reduce.reduce_log_sum_exp(x, np.array(axes))
        assert np.all(np.isfinite(got))
        assert_close(got, naive.reduce("ReduceLogSumExp", x, axes), 1e-6)


def test_reduce_sum_accuracy_on_a_long_row():
    # A float32 running sum of 1e6 values of 0.1 drifts by ~1e-3 relative; the float64 accumulator does not.
    x = np.full((1, 1_000_000), 0.1, dtype=np.float32)
    got = reduce.reduce_sum(x, np.array([1]), keepdims=0)
    exact = 1_000_000 * float(np.float32(0.1))
    assert abs(float(got[0]) - exact) <= 1e-7 * exact


def test_reduce_is_deterministic_across_thread_counts(rng):
    x = f32(rng, 2, 40, 30, 33)
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append([REDUCE[op](x, np.array(axes)) for op in ("ReduceSum", "ReduceL2", "ReduceLogSumExp")
                            for axes in ([2, 3], [1], [0, 2])])
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(results[0], results[-1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kernel, expected", [(reduce.reduce_sum, "ReduceSum"), (reduce.reduce_max, "ReduceMax")])
def test_reduce_rejects_bad_axes(kernel, expected, rng):
    x = f32(rng, 2, 3)
    with pytest.raises(ValueError, match=f"{expected}: axis 2 out of range for input of rank 2"):
        kernel(x, np.array([2]))
    with pytest.raises(ValueError, match=f"{expected}: axes must be integers"):
        kernel(x, np.array([0.5]))


@FEW
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data(),
       op=st.sampled_from(sorted(REDUCE)), keepdims=st.sampled_from([0, 1]))
def test_reduce_hypothesis(shape, data, op, keepdims):
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), max_size=len(shape), unique=True))
    x = _data(op, np.random.default_rng(len(shape) * 7 + len(axes)), *shape)
    got = REDUCE[op](x, np.asarray(axes, dtype=np.int64), keepdims=keepdims)
    assert_close(got, naive.reduce(op, x, axes, keepdims), 1e-6)


@pytest.mark.parametrize("op, opset", [("ReduceSum", 11), ("ReduceSum", 13), ("ReduceMax", 13), ("ReduceMax", 18),
                                       ("ReduceMean", 13), ("ReduceMean", 18), ("ReduceL2", 11)])
def test_reduce_models_load_in_every_axes_form(op, opset, rng):
    # Through the importer: the attribute form (kept as written) and the input form (an initializer).
    x = _data(op, rng, 2, 3, 4, 5)
    initializers, inputs, attrs = [], ["x"], {"keepdims": 0}
    if opset >= AXES_INPUT_FROM[op]:
        initializers.append(numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "axes"))
        inputs.append("axes")
    else:
        attrs["axes"] = [1, -1]
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"], **attrs)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    got = lowbit.load(model.SerializeToString()).run(x)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert_close(got, session.run(None, {"x": x})[0], 2e-6)
    assert_close(got, naive.reduce(op, x, [1, -1], 0), 1e-6)


# --- ArgMax / ArgMin ------------------------------------------------------------------------

@pytest.mark.parametrize("largest", [True, False], ids=["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("keepdims", [1, 0])
@pytest.mark.parametrize("select_last_index", [0, 1])
def test_arg_reduce(largest, axis, keepdims, select_last_index, rng):
    # Rounded values so that ties occur.
    x = np.round(f32(rng, 3, 4, 600) * 2).astype(np.float32)
    kernel, op = (argreduce.argmax, "ArgMax") if largest else (argreduce.argmin, "ArgMin")
    got = kernel(x, axis=axis, keepdims=keepdims, select_last_index=select_last_index)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, naive.arg_reduce(x, axis, keepdims, select_last_index, largest))
    np.testing.assert_array_equal(got, run_ort_any(op, [x], [np.int64], opset=13, axis=axis, keepdims=keepdims,
                                                   select_last_index=select_last_index)[0])


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_arg_reduce_integers(dtype, rng):
    x = rng.integers(0, 4, size=(5, 7)).astype(dtype)
    for last in (0, 1):
        np.testing.assert_array_equal(argreduce.argmax(x, axis=1, select_last_index=last),
                                      naive.arg_reduce(x, 1, 1, last, True))
        np.testing.assert_array_equal(argreduce.argmin(x, axis=0, select_last_index=last),
                                      naive.arg_reduce(x, 0, 1, last, False))


def test_arg_reduce_nan_and_errors(rng):
    x = np.array([[1.0, np.nan, 3.0, np.nan]], dtype=np.float32)
    assert argreduce.argmax(x, axis=1, keepdims=0)[0] == 1       # as numpy: the first NaN
    assert argreduce.argmin(x, axis=1, keepdims=0, select_last_index=1)[0] == 3
    with pytest.raises(ValueError, match="ArgMax: axis 2 out of range"):
        argreduce.argmax(x, axis=2)
    with pytest.raises(ValueError, match="ArgMin: axis 1 of input shape \\(2, 0\\) is empty"):
        argreduce.argmin(np.zeros((2, 0), dtype=np.float32), axis=1)


# --- TopK -----------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("k", [1, 3])
def test_top_k(axis, largest, k, rng):
    x = np.round(f32(rng, 4, 5, 6) * 2).astype(np.float32)      # ties
    values, indices = topk.top_k(x, np.array([k], dtype=np.int64), axis=axis, largest=largest)
    ref_values, ref_indices = naive.top_k(x, k, axis, largest)
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(indices, ref_indices)
    ort_values, ort_indices = run_ort_any("TopK", [x, np.array([k], dtype=np.int64)], [x.dtype, np.int64], opset=11,
                                          axis=axis, largest=largest)
    np.testing.assert_array_equal(values, ort_values)
    np.testing.assert_array_equal(indices, ort_indices)


def test_top_k_attribute_form_and_integers(rng):
    x = f32(rng, 3, 8)
    values, indices = topk.top_k(x, k=2, axis=1)               # opset 1: k is an attribute
    ort_values, ort_indices = run_ort_any("TopK", [x], [x.dtype, np.int64], opset=1, k=2, axis=1)
    np.testing.assert_array_equal(values, ort_values)
    np.testing.assert_array_equal(indices, ort_indices)
    for dtype in (np.int64, np.uint64, np.int32):
        xi = rng.integers(0, 5, size=(3, 9)).astype(dtype)
        for largest in (1, 0):
            got = topk.top_k(xi, np.array([4]), largest=largest)
            assert got[0].dtype == dtype and got[1].dtype == np.int64
            ref = naive.top_k(xi, 4, -1, largest)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
    edge = np.array([[np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0]], dtype=np.int64)
    np.testing.assert_array_equal(topk.top_k(edge, np.array([3]))[1], [[1, 2, 0]])


def test_top_k_errors_and_k0(rng):
    x = f32(rng, 2, 3)
    values, indices = topk.top_k(x, np.array([0]))
    assert values.shape == (2, 0) and indices.shape == (2, 0)
    with pytest.raises(ValueError, match="TopK: k=4 out of range for axis 1 of length 3"):
        topk.top_k(x, np.array([4]))
    with pytest.raises(ValueError, match="TopK: no k given"):
        topk.top_k(x)


# --- Hardmax --------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_hardmax(axis, rng):
    x = np.round(f32(rng, 3, 4, 5)).astype(np.float32)          # ties: the first maximum wins
    got = softmax.hardmax(x, axis=axis)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, naive.hardmax(x, axis))
    np.testing.assert_array_equal(got, run_ort("Hardmax", [x], opset=13, axis=axis))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_hardmax_legacy_flatten(axis, rng):
    x = np.round(f32(rng, 2, 3, 4)).astype(np.float32)
    got = softmax.hardmax(x, axis=axis, legacy_flatten=1)
    np.testing.assert_array_equal(got, naive.hardmax(x, axis, legacy_flatten=1))
    np.testing.assert_array_equal(got, run_ort("Hardmax", [x], opset=11, axis=axis))


def test_hardmax_opset11_model_loads_with_2d_semantics(rng):
    x = f32(rng, 2, 3, 4)
    graph = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"])], "g",   # default axis=1 before 13
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    got = lowbit.load(model.SerializeToString()).run(x)
    np.testing.assert_array_equal(got, run_ort("Hardmax", [x], opset=11))
    np.testing.assert_array_equal(got, naive.hardmax(x, 1, legacy_flatten=1))
