"""fp32 kernels other than Conv/Gemm/MatMul, against the naive oracles in
``tests/naive/ops.py`` and against onnxruntime single-node models."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from onnx import TensorProto, helper

from lowbit.kernels.float import activations, elementwise, normalization, pool, softmax
from tests.naive import ops as naive

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers --------------------------------------------------------------------------------

def run_ort(op, inputs, opset=17, **attrs):
    """Run one ONNX node in onnxruntime; ``None`` inputs are omitted optional inputs."""
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
        for name, a in zip(names, inputs) if a is not None
    ]
    out_type = helper.np_dtype_to_tensor_dtype(next(a for a in inputs if a is not None).dtype)
    graph = helper.make_graph([node], "single", graph_inputs, [helper.make_tensor_value_info("y", out_type, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {name: a for name, a in zip(names, inputs) if a is not None}
    return session.run(None, feeds)[0]


def assert_close(got, ref, tol=1e-5):
    """max |got - ref| <= tol * max(1, max |ref|); same shape; float32 output."""
    ref = np.asarray(ref, dtype=np.float64)
    assert got.dtype == np.float32, got.dtype
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if ref.size == 0:
        return
    err = np.max(np.abs(got.astype(np.float64) - ref))
    assert err <= tol * max(1.0, np.max(np.abs(ref))), f"max abs err {err}"


def f32(rng, *shape, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)


# --- elementwise ----------------------------------------------------------------------------

BINARY = [
    ("Add", elementwise.add, naive.add),
    ("Sub", elementwise.sub, naive.sub),
    ("Mul", elementwise.mul, naive.mul),
    ("Div", elementwise.div, naive.div),
]
BROADCAST_SHAPES = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),   # same shape
    ((2, 3, 4, 5), (1, 3, 1, 1)),   # per-channel
    ((2, 3, 4, 5), (3, 1, 1)),      # per-channel, lower rank
    ((2, 3, 4, 5), ()),             # scalar
    ((2, 3, 4, 5), (1,)),           # 1-element
    ((4, 5), (5,)),                 # bias on the last axis
    ((2, 3, 4, 5), (2, 3, 1, 1)),   # per (n, c)
    ((2, 3, 4, 5), (2, 1, 4, 1)),   # generic
    ((2, 1, 4, 1), (1, 3, 1, 5)),   # both broadcast
    ((1, 1, 1), (4,)),              # scalar of higher rank
]


def _denominator(x):
    return np.where(np.abs(x) < 0.25, np.float32(0.5), x).astype(np.float32)


@pytest.mark.parametrize("op, kernel, oracle", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_binary_broadcasting(op, kernel, oracle, shapes, rng):
    a, b = f32(rng, *shapes[0]), f32(rng, *shapes[1])
    for x, y in ((a, b), (b, a)):
        if op == "Div":
            y = _denominator(y)
        x_before, y_before = x.copy(), y.copy()
        got = kernel(x, y)
        assert_close(got, oracle(x, y))
        assert_close(got, run_ort(op, [x, y]))
        np.testing.assert_array_equal(x, x_before)
        np.testing.assert_array_equal(y, y_before)


@FEW
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4),
       which=st.sampled_from(BINARY), seed=st.integers(0, 2**16))
def test_binary_random_broadcast(shapes, which, seed):
    _, kernel, oracle = which
    rng = np.random.default_rng(seed)
    a, b = f32(rng, *shapes.input_shapes[0]), _denominator(f32(rng, *shapes.input_shapes[1]))
    got = kernel(a, b)
    assert got.shape == shapes.result_shape
    assert_close(got, oracle(a, b))


def test_binary_non_contiguous_inputs(rng):
    a = f32(rng, 5, 4, 3, 2).transpose(3, 2, 1, 0)
    b = f32(rng, 2, 1, 4, 10)[:, :, :, ::2]
    assert_close(elementwise.mul(a, b), naive.mul(a, b))
    assert_close(elementwise.sub(b, a), naive.sub(b, a))


def test_float_division_by_zero_is_ieee():
    a = np.array([1.0, -1.0, 0.0, 2.0, np.nan], dtype=np.float32)
    b = np.array([0.0, 0.0, 0.0, -0.0, 1.0], dtype=np.float32)
    got = elementwise.div(a, b)
    np.testing.assert_array_equal(got, np.array([np.inf, -np.inf, np.nan, -np.inf, np.nan], np.float32))
    np.testing.assert_array_equal(elementwise.div(a, np.float32(0) * np.ones((), np.float32)),
                                  naive.div(a, np.zeros((), np.float32)).astype(np.float32))


@pytest.mark.parametrize("op, kernel, oracle", BINARY, ids=[b[0] for b in BINARY])
def test_binary_int64_shape_arithmetic(op, kernel, oracle):
    a = np.array([[-7, 7, -8, 9, -1, 5]], dtype=np.int64)
    b = np.array([2, -2, 3, 3, -4, 5], dtype=np.int64)
    for x, y in ((a, b), (b, a), (a, np.array(3, dtype=np.int64))):
        got = kernel(x, y)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, oracle(x, y))
        np.testing.assert_array_equal(got, run_ort(op, [x, y]))


def test_int64_scalar_result_is_an_array():
    got = elementwise.mul(np.array(6, dtype=np.int64), np.array(7, dtype=np.int64))
    assert isinstance(got, np.ndarray) and got.shape == () and got == 42


@pytest.mark.parametrize("shapes", [[(2, 3, 4)], [(2, 3, 4), (2, 3, 4)], [(2, 3, 4), (3, 1), (4,)]], ids=str)
def test_sum(shapes, rng):
    inputs = [f32(rng, *s) for s in shapes]
    got = elementwise.sum_(*inputs)
    assert_close(got, naive.sum_(*inputs))
    assert_close(got, run_ort("Sum", inputs))
    assert got is not inputs[0]


def test_broadcast_error_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        elementwise.add(np.zeros((2, 3), np.float32), np.zeros(4, np.float32))


# --- activations ----------------------------------------------------------------------------

ACTIVATIONS = [
    # (onnx op, kernel, oracle, attrs, tolerance)
    ("Relu", activations.relu, naive.relu, {}, 1e-5),
    ("LeakyRelu", activations.leaky_relu, naive.leaky_relu, {"alpha": 0.1}, 1e-5),
    ("LeakyRelu", activations.leaky_relu, naive.leaky_relu, {}, 1e-5),
    ("Sigmoid", activations.sigmoid, naive.sigmoid, {}, 1e-4),
    ("Tanh", activations.tanh, naive.tanh, {}, 1e-4),
    ("HardSigmoid", activations.hard_sigmoid, naive.hard_sigmoid, {}, 1e-5),
    ("HardSigmoid", activations.hard_sigmoid, naive.hard_sigmoid, {"alpha": 0.3, "beta": 0.4}, 1e-5),
    ("HardSwish", activations.hard_swish, naive.hard_swish, {}, 1e-5),
]


@pytest.mark.parametrize("op, kernel, oracle, attrs, tol", ACTIVATIONS,
                         ids=[f"{a[0]}{a[3] or ''}" for a in ACTIVATIONS])
def test_activation(op, kernel, oracle, attrs, tol, rng):
    x = f32(rng, 2, 3, 5, 7, scale=4.0)
    x[0, 0, 0, :4] = [-100.0, 100.0, -3.0, 3.0]   # saturation and the hard-* corners
    x_before = x.copy()
    got = kernel(x, **attrs)
    assert_close(got, oracle(x, **attrs), tol)
    assert_close(got, run_ort(op, [x], opset=17, **attrs), tol)
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("lo, hi", [(-0.5, 0.7), (None, 0.3), (-0.2, None), (None, None), (0.5, -0.5)],
                         ids=str)
def test_clip(lo, hi, rng):
    x = f32(rng, 2, 3, 4, 5)
    lo_t = None if lo is None else np.array(lo, dtype=np.float32)
    hi_t = None if hi is None else np.array([hi], dtype=np.float32).reshape(())
    got = activations.clip(x, lo_t, hi_t)
    assert_close(got, naive.clip(x, lo_t, hi_t))
    assert_close(got, run_ort("Clip", [x, lo_t, hi_t], opset=13))
    one_element = activations.clip(x, None if lo is None else np.array([lo], np.float32), hi_t)
    np.testing.assert_array_equal(one_element, got)


def test_nan_propagates_through_relu_and_clip():
    x = np.array([np.nan, -1.0, 2.0], dtype=np.float32)
    assert np.isnan(activations.relu(x)[0])
    assert np.isnan(activations.clip(x, np.array(0, np.float32), np.array(1, np.float32))[0])


def test_activations_on_int64():
    x = np.array([-3, 0, 4, 9], dtype=np.int64)
    np.testing.assert_array_equal(activations.relu(x), [0, 0, 4, 9])
    np.testing.assert_array_equal(activations.clip(x, np.array(-1), np.array(5)), [-1, 0, 4, 5])


# --- pooling --------------------------------------------------------------------------------

POOL_CASES = [
    dict(kernel_shape=(2, 2), strides=(2, 2)),
    dict(kernel_shape=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1)),
    dict(kernel_shape=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), ceil_mode=1),
    dict(kernel_shape=(2, 3), strides=(2, 1), pads=(0, 1, 1, 0), ceil_mode=1),
    dict(kernel_shape=(2, 2), strides=(2, 2), ceil_mode=1),                     # overhang past the end
    dict(kernel_shape=(3, 3), strides=(3, 3), pads=(0, 0, 2, 2), ceil_mode=1),  # window starting in pad dropped
    dict(kernel_shape=(2, 2), strides=(2, 2), dilations=(2, 2), ceil_mode=1),
    dict(kernel_shape=(3, 3), strides=(2, 1), dilations=(2, 1), pads=(2, 1, 1, 2), ceil_mode=1),
    dict(kernel_shape=(3, 2), strides=(2, 2), auto_pad="SAME_UPPER"),
    dict(kernel_shape=(3, 2), strides=(2, 2), auto_pad="SAME_LOWER"),
    dict(kernel_shape=(2, 2), strides=(1, 1), auto_pad="SAME_LOWER"),
    dict(kernel_shape=(3, 3), strides=(2, 2), auto_pad="SAME_UPPER", ceil_mode=1),
    dict(kernel_shape=(3, 3), auto_pad="VALID"),
]


def _ort_pool_skips(case, x_shape):
    """Cases where onnxruntime 1.32 departs from the spec (or rejects the model)."""
    auto_pad = case.get("auto_pad", "NOTSET")
    if auto_pad.startswith("SAME"):
        if any(d > 1 for d in case.get("dilations") or ()):
            return True   # ORT sizes SAME pads with the undilated kernel
        strides = case.get("strides") or (1,) * len(case["kernel_shape"])
        for size, k, s in zip(x_shape[2:], case["kernel_shape"], strides):
            if (-(-size // s) - 1) * s + k < size:
                return True   # ORT computes a negative pad and errors
    return False


def _check_pools(x, case, include_pad):
    got = pool.max_pool(x, **case)
    assert_close(got, naive.max_pool(x, **case))
    got_avg = pool.average_pool(x, count_include_pad=include_pad, **case)
    assert_close(got_avg, naive.average_pool(x, count_include_pad=include_pad, **case))
    if not _ort_pool_skips(case, x.shape):
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in case.items()}
        assert_close(got, run_ort("MaxPool", [x], opset=17, **attrs))
        # AveragePool takes dilations from opset 19.
        assert_close(got_avg, run_ort("AveragePool", [x], opset=19, count_include_pad=include_pad, **attrs))


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("hw", [(6, 6), (7, 5)], ids=str)
def test_pools(case, hw, rng):
    x = f32(rng, 2, 3, *hw)
    for include_pad in (0, 1):
        _check_pools(x, case, include_pad)


@FEW
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_pools_random(data, seed):
    rank = 2
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    strides = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    dilations = tuple(data.draw(st.integers(1, 2)) for _ in range(rank))
    auto_pad = data.draw(st.sampled_from(["NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]))
    pads = tuple(data.draw(st.integers(0, k - 1)) for k in kernel + kernel)
    ceil_mode = data.draw(st.integers(0, 1))
    include_pad = data.draw(st.integers(0, 1))
    hw = tuple(data.draw(st.integers(1, 8)) for _ in range(rank))
    case = dict(kernel_shape=kernel, strides=strides, dilations=dilations, auto_pad=auto_pad, ceil_mode=ceil_mode)
    if auto_pad == "NOTSET":
        case["pads"] = pads
    # Only windows that fit the (padded) input.
    for size, k, d, s, i in zip(hw, kernel, dilations, strides, range(rank)):
        out, begin, end = naive.pool_geometry(size, k, s, d, pads[i], pads[i + rank], auto_pad, ceil_mode)
        assume(out >= 1)
        # Every window must touch the input (count_include_pad=0 divides by that count).
        assume(begin < (k - 1) * d + 1 and all(
            any(0 <= o * s - begin + t * d < size for t in range(k)) for o in range(out)))
    x = f32(np.random.default_rng(seed), 2, 2, *hw)
    _check_pools(x, case, include_pad)


def test_pool_1d(rng):
    x = f32(rng, 2, 3, 9)
    case = dict(kernel_shape=(3,), strides=(2,), pads=(1, 2), ceil_mode=1)
    for include_pad in (0, 1):
        got = pool.average_pool(x, count_include_pad=include_pad, **case)
        assert_close(got, naive.average_pool(x, count_include_pad=include_pad, **case))
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in case.items()}
        assert_close(got, run_ort("AveragePool", [x], count_include_pad=include_pad, **attrs))
    got = pool.max_pool(x, **case)
    assert_close(got, naive.max_pool(x, **case))


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 3, 3), dtype=np.float32) * np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    got = pool.max_pool(x, kernel_shape=(3, 3), pads=(2, 2, 2, 2))
    assert got.max() < 0
    assert_close(got, naive.max_pool(x, kernel_shape=(3, 3), pads=(2, 2, 2, 2)))


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (2, 3, 11), (1, 4, 1, 1)], ids=str)
def test_global_pools(shape, rng):
    x = f32(rng, *shape)
    got = pool.global_average_pool(x)
    assert_close(got, naive.global_average_pool(x))
    assert_close(got, run_ort("GlobalAveragePool", [x]))
    got = pool.global_max_pool(x)
    assert_close(got, naive.global_max_pool(x))
    assert_close(got, run_ort("GlobalMaxPool", [x]))


def test_pool_errors():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="kernel_shape"):
        pool.max_pool(x)
    with pytest.raises(ValueError, match="shape"):
        pool.average_pool(np.zeros((1, 1, 2, 2, 2), np.float32), kernel_shape=(2, 2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        pool.max_pool(x, kernel_shape=(5, 5))


# --- normalization --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (2, 3, 7)], ids=str)
def test_batch_normalization(shape, rng):
    c = shape[1]
    x = f32(rng, *shape)
    scale, b, mean = f32(rng, c), f32(rng, c), f32(rng, c)
    var = rng.uniform(0.1, 2.0, c).astype(np.float32)
    got = normalization.batch_normalization(x, scale, b, mean, var, epsilon=1e-3)
    assert_close(got, naive.batch_normalization(x, scale, b, mean, var, epsilon=1e-3))
    assert_close(got, run_ort("BatchNormalization", [x, scale, b, mean, var], opset=15, epsilon=1e-3))


def test_batch_normalization_rejects_training_mode(rng):
    x, p = f32(rng, 1, 2, 3, 3), np.ones(2, np.float32)
    with pytest.raises(ValueError, match="training_mode"):
        normalization.batch_normalization(x, p, p, p, p, training_mode=1)
    with pytest.raises(ValueError, match="2 values"):
        normalization.batch_normalization(x, np.ones(3, np.float32), p, p, p)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn(size, rng):
    x = f32(rng, 2, 6, 3, 4, scale=3.0)
    attrs = dict(size=size, alpha=0.02, beta=0.75, bias=1.5)
    got = normalization.lrn(x, **attrs)
    assert_close(got, naive.lrn(x, **attrs), 1e-4)
    if size % 2:   # onnxruntime rejects even sizes; the spec's window is asymmetric then
        assert_close(got, run_ort("LRN", [x], opset=13, **attrs), 1e-4)


def test_lrn_defaults(rng):
    x = f32(rng, 1, 5, 2, 2)
    assert_close(normalization.lrn(x, size=3), run_ort("LRN", [x], opset=13, size=3), 1e-4)


@pytest.mark.parametrize("case", [
    dict(kernel_shape=(2, 2), strides=(2, 2)),
    dict(kernel_shape=(3, 2), strides=(1, 2), dilations=(2, 1)),
    dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1), strides=(2, 2)),
    dict(kernel_shape=(2, 2), strides=(2, 2), ceil_mode=1),
], ids=str)
def test_pools_on_helper_threads(case, rng, monkeypatch):
    # Above the size threshold the planes are shared out by run_threads in
    # chunks; force that path on a small input with several chunks.
    monkeypatch.setattr(pool, "_PARALLEL_MIN", 0)
    x = f32(rng, 3, 50, 7, 6)
    assert x.shape[0] * x.shape[1] > 2 * pool._CHUNK
    assert_close(pool.max_pool(x, **case), naive.max_pool(x, **case))
    assert_close(pool.average_pool(x, **case), naive.average_pool(x, **case))
    assert_close(pool.global_average_pool(x), naive.global_average_pool(x))
    assert_close(pool.global_max_pool(x), naive.global_max_pool(x))


def test_max_pool_inside_path_matches_padded_path(rng):
    # Windows inside the input take a direct path; with a zero pad on the far
    # side only (same windows, output) the padded-line path runs instead.
    x = f32(rng, 2, 3, 9, 8)
    inside = pool.max_pool(x, kernel_shape=(2, 2), strides=(2, 2))
    assert_close(inside, naive.max_pool(x, kernel_shape=(2, 2), strides=(2, 2)))
    padded = pool.max_pool(x, kernel_shape=(2, 2), strides=(2, 2), pads=(0, 0, 1, 1))
    assert_close(inside, padded[:, :, :inside.shape[2], :inside.shape[3]])


# --- softmax --------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_axes(axis, log, rng):
    x = f32(rng, 2, 3, 4, 5, scale=3.0)
    kernel, op = (softmax.log_softmax, "LogSoftmax") if log else (softmax.softmax, "Softmax")
    got = kernel(x, axis=axis)
    assert_close(got, naive.softmax(x, axis=axis, log=log), 1e-4)
    assert_close(got, run_ort(op, [x], opset=13, axis=axis), 1e-4)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_legacy_flatten(axis, log, rng):
    x = f32(rng, 2, 3, 4, scale=3.0)
    kernel, op = (softmax.log_softmax, "LogSoftmax") if log else (softmax.softmax, "Softmax")
    got = kernel(x, axis=axis, legacy_flatten=1)
    assert_close(got, naive.softmax(x, axis=axis, legacy_flatten=1, log=log), 1e-4)
    assert_close(got, run_ort(op, [x], opset=11, axis=axis), 1e-4)


def test_softmax_is_stable_for_large_logits(rng):
    x = f32(rng, 3, 10, scale=1000.0)
    got = softmax.softmax(x)
    assert np.all(np.isfinite(got))
    assert_close(got, naive.softmax(x), 1e-4)
    assert_close(softmax.log_softmax(x), naive.log_softmax(x), 1e-4)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_on_helper_threads(log, rng, monkeypatch):
    monkeypatch.setattr(softmax, "_PARALLEL_MIN", 0)
    x = f32(rng, 300, 7, scale=3.0)
    kernel = softmax.log_softmax if log else softmax.softmax
    assert_close(kernel(x, axis=1), naive.softmax(x, axis=1, log=log), 1e-4)


def test_softmax_bad_axis():
    with pytest.raises(ValueError, match="axis 3"):
        softmax.softmax(np.zeros((2, 3), np.float32), axis=3)
