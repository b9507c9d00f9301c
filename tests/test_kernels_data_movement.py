"""Data-movement kernels (``lowbit/kernels/float/tiling.py``, ``indexing.py`` and
``shape_ops.split``) against the plain-loop oracles in
``tests/naive/data_movement.py``, against onnxruntime single-node models, and
against the ONNX backend cases that are stamped with an opset newer than 21.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import lowbit
import lowbit.errors
from lowbit.kernels.float import indexing, shape_ops, tiling
from lowbit.kernels.registry import KERNELS
from tests.naive import data_movement as naive

FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float32, np.int64, np.bool_]


def sample(rng, shape, dtype=np.float32):
    if dtype == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if np.dtype(dtype).kind in "iu":
        return np.asarray(rng.integers(-50, 50, size=shape), dtype=dtype)
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def same(got, ref):
    """Equal values, shape and dtype (data movement is exact)."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
    np.testing.assert_array_equal(got, ref)


def ort_node(op, inputs, n_outputs=1, opset=18, constants=(), **attrs):
    """Run one ONNX node in onnxruntime.

    ``inputs`` are arrays (``None`` = omitted optional input); the positions in
    ``constants`` become initializers (ORT needs e.g. Split's sizes constant).
    Output types are left to ORT's inference.
    """
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outs, **attrs)
    graph_inputs, inits, feeds = [], [], {}
    for i, (name, a) in enumerate(zip(names, inputs)):
        if a is None:
            continue
        if i in constants:
            inits.append(numpy_helper.from_array(np.asarray(a), name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape))
            feeds[name] = a
    graph = helper.make_graph([node], "single", graph_inputs,
                              [helper.make_value_info(o, helper.TypeProto()) for o in outs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    result = session.run(None, feeds)
    return result if n_outputs > 1 else result[0]


# --- Expand, Tile, Range, CumSum -------------------------------------------------------------

EXPAND_CASES = [((3, 1), (2, 1, 6)), ((1, 3, 1, 1), (2, 3, 4, 5)), ((4,), (3, 1)), ((2, 3), (2, 3)),
                ((), (2, 2)), ((1, 1), ()), ((3, 1), (3, 0))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,target", EXPAND_CASES)
def test_expand_matches_oracle_and_onnxruntime(shape, target, dtype):
    x = sample(np.random.default_rng(0), shape, dtype)
    t = np.array(target, dtype=np.int64)
    got = tiling.expand(x, t)
    same(got, naive.expand(x, t))
    assert got.flags.c_contiguous and got.flags.writeable
    if 0 not in target:
        same(got, ort_node("Expand", [x, t], opset=13))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,reps", [((2, 3), (2, 1)), ((1, 3, 2, 2), (2, 1, 3, 2)), ((4,), (0,)), ((2, 1), (1, 3))])
def test_tile_matches_oracle_and_onnxruntime(shape, reps, dtype):
    x = sample(np.random.default_rng(1), shape, dtype)
    r = np.array(reps, dtype=np.int64)
    got = tiling.tile(x, r)
    same(got, naive.tile(x, r))
    same(got, ort_node("Tile", [x, r], opset=13))


INT_RANGES = [(0, 10, 3), (10, 4, -2), (5, 5, 1), (3, 1, 1), (-7, 8, 5), (-7, 8, -5)]
FLOAT_RANGES = [(1.0, 5.0, 2.0), (0.0, 1.0, 0.1), (2.5, -1.25, -0.75), (0.5, 0.5, 1.0), (-3.0, 3.0, 0.7)]
RANGE_CASES = ([(b, t) for b in INT_RANGES for t in (np.int16, np.int32, np.int64, np.float32)]
               + [(b, t) for b in FLOAT_RANGES for t in (np.float32, np.float64)])


@pytest.mark.parametrize("bounds,dtype", RANGE_CASES)
def test_range_matches_oracle_and_onnxruntime(bounds, dtype):
    args = [np.array(v, dtype=dtype) for v in bounds]
    got = tiling.range_(*args)
    ref = naive.range_(*args)
    assert got.dtype == dtype and got.shape == ref.shape
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=1e-6, atol=1e-6)
    if dtype != np.int16:
        expected = ort_node("Range", args, opset=11)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape,axis", [((7,), 0), ((3, 4), 1), ((3, 4), -2), ((2, 3, 5), 2), ((0, 3), 0), ((2, 3, 5), 1)])
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.float64])
def test_cumsum_matches_oracle_and_onnxruntime(shape, axis, exclusive, reverse, dtype):
    x = sample(np.random.default_rng(2), shape, dtype)
    ax = np.array(axis, dtype=np.int64)
    got = tiling.cumsum(x, ax, exclusive=exclusive, reverse=reverse)
    assert got.dtype == dtype and got.shape == x.shape
    ref = naive.cumsum(x, axis, exclusive, reverse)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, ref)
    if x.size:
        expected = ort_node("CumSum", [x, ax], opset=14, exclusive=exclusive, reverse=reverse)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_cumsum_accumulates_in_float64():
    x = np.full(100_000, 0.1, dtype=np.float32)
    got = tiling.cumsum(x, np.array(0))
    assert abs(float(got[-1]) - 100_000 * float(np.float32(0.1))) < 1e-2   # a float32 running sum is ~1 off


# --- DepthToSpace, SpaceToDepth --------------------------------------------------------------

@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("shape,block", [((1, 8, 2, 3), 2), ((2, 18, 3, 2), 3), ((1, 4, 1, 1), 2), ((2, 3, 2, 2), 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_depth_to_space_matches_oracle_and_onnxruntime(shape, block, mode, dtype):
    x = sample(np.random.default_rng(3), shape, dtype)
    got = tiling.depth_to_space(x, blocksize=block, mode=mode)
    same(got, naive.depth_to_space(x, block, mode))
    if dtype == np.float32:     # onnxruntime implements DepthToSpace for float types only
        same(got, ort_node("DepthToSpace", [x], opset=13, blocksize=block, mode=mode))
    same(tiling.space_to_depth(got, blocksize=block, mode=mode), x)       # the inverse, in both modes


@pytest.mark.parametrize("shape,block", [((1, 2, 4, 6), 2), ((2, 3, 6, 3), 3), ((1, 1, 2, 2), 2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_space_to_depth_matches_oracle_and_onnxruntime(shape, block, dtype):
    x = sample(np.random.default_rng(4), shape, dtype)
    got = tiling.space_to_depth(x, blocksize=block)
    same(got, naive.space_to_depth(x, block))
    if dtype == np.float32:     # onnxruntime implements SpaceToDepth for float types only
        same(got, ort_node("SpaceToDepth", [x], opset=13, blocksize=block))
    same(tiling.space_to_depth(x, blocksize=block, mode="CRD"), naive.space_to_depth(x, block, "CRD"))


def test_depth_to_space_on_an_activation_is_a_contiguous_copy():
    x = np.random.default_rng(5).standard_normal((1, 64, 40, 40)).astype(np.float32)
    y = tiling.depth_to_space(x, blocksize=2)
    assert y.shape == (1, 16, 80, 80) and y.flags.c_contiguous
    same(y, ort_node("DepthToSpace", [x], opset=13, blocksize=2))


# --- Split -----------------------------------------------------------------------------------

def _split_model(opset, n_outputs, shape, split=None, as_input=False, **attrs):
    ins, inits = ["x"], []
    if split is not None:
        if as_input:
            ins.append("s")
            inits.append(numpy_helper.from_array(np.array(split, dtype=np.int64), "s"))
        else:
            attrs["split"] = list(split)
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node("Split", ins, outs, **attrs)
    graph = helper.make_graph([node], "split", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


SPLIT_FORMS = [  # (opset, outputs, shape, split, split as input, attrs)
    (7, 2, (6, 4), None, False, {}),
    (7, 3, (2, 6), [1, 2, 3], False, {"axis": 1}),
    (11, 3, (6, 4), None, False, {"axis": -2}),
    (11, 2, (3, 4), [1, 3], False, {"axis": -1}),
    (13, 2, (6, 4), None, False, {}),
    (13, 3, (6, 4), [1, 0, 5], True, {}),
    (13, 1, (6, 4), None, False, {"axis": 1}),
    (18, 3, (7, 2), None, False, {"num_outputs": 3}),
    (18, 4, (2, 10), None, False, {"num_outputs": 4, "axis": 1}),
    (18, 2, (6, 4), [2, 4], True, {}),
    (21, 3, (6, 4), None, False, {"num_outputs": 3, "axis": -2}),
]


@pytest.mark.parametrize("opset,n,shape,split,as_input,attrs", SPLIT_FORMS)
def test_split_every_opset_form_through_the_importer(opset, n, shape, split, as_input, attrs):
    model = _split_model(opset, n, shape, split, as_input, **attrs)
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})
    got = lowbit.load(model.SerializeToString()).run({"x": x})
    got = got if isinstance(got, dict) else {"y0": got}
    oracle = naive.split(x, split, attrs.get("axis", 0), n if split is None else None)
    for i in range(n):
        same(got[f"y{i}"], expected[i])
        same(got[f"y{i}"], oracle[i])


@pytest.mark.parametrize("length,parts", [(7, 3), (10, 4), (6, 4), (2, 3), (5, 5)])
def test_split_num_outputs_uneven_last_chunk(length, parts):
    x = np.arange(length, dtype=np.int64)
    got = shape_ops.split(x, axis=0, num_outputs=parts)
    ref = naive.split(x, None, 0, parts)
    assert len(got) == parts
    for g, r in zip(got, ref):
        same(g, r)
    for g, r in zip(got, ort_node("Split", [x], n_outputs=parts, opset=18, axis=0, num_outputs=parts)):
        same(g, r)


def test_split_refuses_what_cannot_be_split():
    with pytest.raises(ValueError, match="negative|cannot"):
        shape_ops.split(np.arange(5.0), num_outputs=4)     # 2, 2, 2 would leave -1
    with pytest.raises(ValueError, match="add up"):
        shape_ops.split(np.arange(5.0), np.array([2, 2]))
    with pytest.raises(ValueError, match="non-negative"):
        shape_ops.split(np.arange(5.0), np.array([6, -1]))
    with pytest.raises(ValueError, match="axis"):
        shape_ops.split(np.zeros((2, 3)), np.array([1, 1]), axis=2)
    with pytest.raises(ValueError, match="num_outputs"):
        shape_ops.split(np.zeros(4))


# --- GatherElements, ScatterElements --------------------------------------------------------

@st.composite
def element_case(draw):
    rank = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    axis = draw(st.integers(-rank, rank - 1))
    ishape = tuple(draw(st.integers(0 if d != axis % rank else 0, s if d != axis % rank else 5))
                   for d, s in enumerate(shape))
    seed = draw(st.integers(0, 2 ** 16))
    return shape, ishape, axis, seed


@FEW
@given(element_case(), st.sampled_from(DTYPES))
def test_gather_elements_matches_oracle(case, dtype):
    shape, ishape, axis, seed = case
    rng = np.random.default_rng(seed)
    data = sample(rng, shape, dtype)
    n = shape[axis]
    indices = rng.integers(-n, n, size=ishape).astype(np.int64)
    same(indexing.gather_elements(data, indices, axis=axis), naive.gather_elements(data, indices, axis))


@FEW
@given(element_case(), st.sampled_from(["none", "add", "mul", "max", "min"]))
def test_scatter_elements_matches_oracle(case, reduction):
    shape, ishape, axis, seed = case
    rng = np.random.default_rng(seed)
    data = sample(rng, shape, np.float32)
    n = shape[axis]
    if reduction == "none":
        # Duplicate targets have no defined order: along the axis, each index is distinct
        # (the first ishape[axis] entries of a random permutation of range(n), half made negative).
        ishape = tuple(min(s, n) if d == axis % len(shape) else s for d, s in enumerate(ishape))
        full = tuple(n if d == axis % len(shape) else s for d, s in enumerate(ishape))
        perm = np.argsort(rng.random(full), axis=axis)
        indices = np.take(perm, np.arange(ishape[axis]), axis=axis)
        indices = np.where(rng.random(ishape) < 0.5, indices - n, indices).astype(np.int64)
    else:
        indices = rng.integers(-n, n, size=ishape).astype(np.int64)
    updates = sample(rng, ishape, np.float32)
    got = indexing.scatter_elements(data, indices, updates, axis=axis, reduction=reduction)
    ref = naive.scatter_elements(data.astype(np.float64), indices, updates.astype(np.float64), axis, reduction)
    assert got.dtype == np.float32 and got.shape == data.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_matches_onnxruntime(reduction, dtype):
    rng = np.random.default_rng(7)
    data = sample(rng, (4, 5, 3), dtype)
    indices = np.array([[[0, 3, -1], [2, 1, 0]], [[-4, 2, 1], [3, 3, 3]]], dtype=np.int64)   # axis 1, size 5
    if reduction == "none":   # no duplicate targets
        indices = np.array([[[0, 3, -1], [2, 1, 0]], [[-4, 2, 1], [3, 0, 2]]], dtype=np.int64)
    updates = sample(rng, indices.shape, dtype)
    got = indexing.scatter_elements(data, indices, updates, axis=1, reduction=reduction)
    same(got, ort_node("ScatterElements", [data, indices, updates], opset=18, axis=1, reduction=reduction))
    same(indexing.gather_elements(got, indices, axis=1),
         ort_node("GatherElements", [got, indices], opset=13, axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float64, np.int32])
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, 2, -1])
def test_element_ops_loop_path_matches_oracle_and_onnxruntime(axis, reduction, dtype):
    # Indices spanning data's other dims take the Numba loop (the cases above take numpy's path).
    rng = np.random.default_rng(13)
    shape = (3, 2, 6, 5)
    data = sample(rng, shape, dtype)
    n = shape[axis]
    m = min(4, n)
    ishape = tuple(m if d == axis % 4 else s for d, s in enumerate(shape))
    if reduction == "none":    # distinct targets along the axis
        perm = np.argsort(rng.random(tuple(n if d == axis % 4 else s for d, s in enumerate(shape))), axis=axis)
        indices = np.take(perm, np.arange(m), axis=axis)
    else:
        indices = rng.integers(0, n, size=ishape)
    indices = np.where(rng.random(ishape) < 0.5, indices - n, indices).astype(np.int64)
    updates = sample(rng, ishape, dtype)
    got = indexing.gather_elements(data, indices, axis=axis)
    same(got, naive.gather_elements(data, indices, axis))
    same(got, ort_node("GatherElements", [data, indices], opset=13, axis=axis))
    got = indexing.scatter_elements(data, indices, updates, axis=axis, reduction=reduction)
    same(got, naive.scatter_elements(data, indices, updates, axis, reduction))
    same(got, ort_node("ScatterElements", [data, indices, updates], opset=18, axis=axis, reduction=reduction))


def test_element_ops_refuse_out_of_range_indices():
    data = np.zeros((3, 4), dtype=np.float32)
    for bad in (3, -4):
        idx = np.array([[0, bad]], dtype=np.int64)
        with pytest.raises(ValueError, match=f"GatherElements: index {bad} .*size 3"):
            indexing.gather_elements(data, idx, axis=0)
        with pytest.raises(ValueError, match=f"ScatterElements: index {bad}"):
            indexing.scatter_elements(data, idx, np.ones((1, 2), np.float32), axis=0)
    with pytest.raises(ValueError, match="exceeds data shape"):
        indexing.gather_elements(data, np.zeros((3, 5), dtype=np.int64), axis=0)
    with pytest.raises(ValueError, match="reduction"):
        indexing.scatter_elements(data, np.zeros((1, 1), np.int64), np.ones((1, 1), np.float32), reduction="mean")
    with pytest.raises(ValueError, match="integers"):
        indexing.gather_elements(data, np.zeros((1, 1), np.float32))


# --- GatherND, ScatterND ---------------------------------------------------------------------

@st.composite
def nd_case(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    b = draw(st.integers(0, rank - 1))
    k = draw(st.integers(0, rank - b))
    middle = tuple(draw(st.integers(0, 3)) for _ in range(draw(st.integers(0, 2))))
    return shape, b, k, middle, draw(st.integers(0, 2 ** 16))


@FEW
@given(nd_case(), st.sampled_from(DTYPES))
def test_gather_nd_matches_oracle(case, dtype):
    shape, b, k, middle, seed = case
    rng = np.random.default_rng(seed)
    data = sample(rng, shape, dtype)
    ishape = shape[:b] + middle + (k,)
    dims = np.array(shape[b:b + k], dtype=np.int64)
    indices = (rng.integers(-(2 ** 20), 2 ** 20, size=ishape) % np.maximum(2 * dims, 1) - dims).astype(np.int64)
    same(indexing.gather_nd(data, indices, batch_dims=b), naive.gather_nd(data, indices, b))


@FEW
@given(nd_case(), st.sampled_from(["none", "add", "mul", "max", "min"]))
def test_scatter_nd_matches_oracle(case, reduction):
    shape, _, k, middle, seed = case
    rng = np.random.default_rng(seed)
    data = sample(rng, shape, np.float32)
    dims = np.array(shape[:k], dtype=np.int64)
    count = int(np.prod(middle, dtype=np.int64))
    if reduction == "none":   # distinct targets (duplicates have no defined order)
        total = int(np.prod(dims))
        count = min(count, total)
        flat = rng.permutation(total)[:count]
        indices = np.stack(np.unravel_index(flat, tuple(dims)), axis=-1).reshape(count, k) if k else \
            np.zeros((min(count, 1), 0), np.int64)
        indices = indices - dims * (rng.random(indices.shape) < 0.5)      # some negative
    else:
        indices = (rng.integers(0, 2 ** 20, size=middle + (k,)) % np.maximum(dims, 1)).astype(np.int64)
    indices = indices.astype(np.int64)
    updates = sample(rng, indices.shape[:-1] + shape[k:], np.float32)
    got = indexing.scatter_nd(data, indices, updates, reduction=reduction)
    ref = naive.scatter_nd(data.astype(np.float64), indices, updates.astype(np.float64), reduction)
    assert got.dtype == np.float32 and got.shape == data.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_dims", [0, 1])
def test_gather_nd_matches_onnxruntime(batch_dims):
    rng = np.random.default_rng(8)
    data = sample(rng, (2, 3, 4, 5), np.float32)
    if batch_dims:
        indices = np.array([[[1, -1], [0, 2]], [[2, 3], [-3, 0]]], dtype=np.int64)      # (2, 2, 2)
    else:
        indices = np.array([[[1, 2, 3]], [[0, -1, 0]]], dtype=np.int64)                # (2, 1, 3)
    same(indexing.gather_nd(data, indices, batch_dims=batch_dims),
         ort_node("GatherND", [data, indices], opset=13, batch_dims=batch_dims))


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_matches_onnxruntime(reduction):
    rng = np.random.default_rng(9)
    data = sample(rng, (4, 3, 2), np.float32)
    indices = np.array([[1], [3], [1]] if reduction != "none" else [[1], [3], [0]], dtype=np.int64)
    updates = sample(rng, (3, 3, 2), np.float32)
    same(indexing.scatter_nd(data, indices, updates, reduction=reduction),
         ort_node("ScatterND", [data, indices, updates], opset=18, reduction=reduction))
    elem = np.array([[0, 1, 1], [3, 2, 0]], dtype=np.int64)
    upd = np.array([10.0, 20.0], dtype=np.float32)
    same(indexing.scatter_nd(data, elem, upd, reduction=reduction),
         ort_node("ScatterND", [data, elem, upd], opset=18, reduction=reduction))


def test_nd_ops_refuse_out_of_range_indices():
    data = np.zeros((3, 4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"GatherND: index 4 at position \(1, 1\)"):
        indexing.gather_nd(data, np.array([[0, 1], [2, 4]], dtype=np.int64))
    with pytest.raises(ValueError, match="GatherND: index -4"):
        indexing.gather_nd(data, np.array([[-4]], dtype=np.int64))
    with pytest.raises(ValueError, match="ScatterND: index 3"):
        indexing.scatter_nd(data, np.array([[3]], dtype=np.int64), np.zeros((1, 4, 2), np.float32))
    with pytest.raises(ValueError, match="updates"):
        indexing.scatter_nd(data, np.array([[1]], dtype=np.int64), np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="batch"):
        indexing.gather_nd(data, np.zeros((2, 1), np.int64), batch_dims=1)


# --- OneHot, NonZero -------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, 0, 1, -2])
@pytest.mark.parametrize("idx_dtype,val_dtype", [(np.int64, np.float32), (np.float32, np.float32),
                                                 (np.int32, np.int64), (np.int64, np.bool_)])
def test_one_hot_matches_oracle_and_onnxruntime(axis, idx_dtype, val_dtype):
    depth = 5
    indices = np.array([[0, 4, -1], [-5, 7, -6], [2, 3, 1]], dtype=idx_dtype)
    if idx_dtype == np.float32:
        indices = indices + np.float32(0.4)
    values = np.array([0, 1] if val_dtype == np.bool_ else [-2, 3], dtype=val_dtype)
    d = np.array([depth], dtype=np.int64)
    got = indexing.one_hot(indices, d, values, axis=axis)
    same(got, naive.one_hot(indices, d, values, axis))
    if (idx_dtype, val_dtype) == (np.int64, np.float32):    # a type combination onnxruntime implements
        same(got, ort_node("OneHot", [indices, d, values], opset=11, axis=axis))
        same(got, ort_node("OneHot", [indices.astype(np.float32), d.astype(np.float32), values], opset=11,
                           axis=axis))


def test_one_hot_float_depth_and_non_finite_indices():
    indices = np.array([np.nan, np.inf, -np.inf, 2.9, -0.5], dtype=np.float32)
    got = indexing.one_hot(indices, np.array(3.7, np.float32), np.array([0.0, 1.0], np.float32))
    same(got, naive.one_hot(indices, np.array(3.7), np.array([0.0, 1.0], np.float32)))
    assert got[:3].sum() == 0 and got[3, 2] == 1 and got[4, 0] == 1


@pytest.mark.parametrize("shape", [(0,), (7,), (3, 4), (2, 3, 4), (1, 1, 1, 5)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_zero_matches_oracle_and_onnxruntime(shape, dtype):
    rng = np.random.default_rng(10)
    x = sample(rng, shape, dtype)
    if dtype != np.bool_:
        x = np.where(rng.random(shape) < 0.5, 0, x).astype(dtype)
    got = indexing.non_zero(x)
    same(got, naive.non_zero(x))
    same(got, ort_node("NonZero", [x], opset=13))


def test_non_zero_nan_and_scalar():
    same(indexing.non_zero(np.array([0.0, np.nan, -0.0, 1.0], np.float32)), np.array([[1, 3]], np.int64))
    # ONNX shape inference says (rank, count) = (0, count) for a scalar (onnxruntime returns (1, count)).
    same(indexing.non_zero(np.array(2.0, np.float32)), naive.non_zero(np.array(2.0, np.float32)))
    assert indexing.non_zero(np.array(0, np.int64)).shape == (0, 0)


# --- refusing unbounded outputs, and folding at load -----------------------------------------

def test_huge_outputs_are_refused_before_allocating():
    with pytest.raises(ValueError, match=r"Expand: output shape .* more than the 2147483648"):
        tiling.expand(np.zeros((1, 1), np.float32), np.array([2 ** 16, 2 ** 16], np.int64))
    with pytest.raises(ValueError, match="Tile: output shape"):
        tiling.tile(np.zeros((2, 2), np.float32), np.array([2 ** 20, 2 ** 20], np.int64))
    with pytest.raises(ValueError, match="Range: output shape"):
        tiling.range_(np.array(0, np.int64), np.array(2 ** 62, np.int64), np.array(1, np.int64))
    with pytest.raises(ValueError, match="Range: output shape"):
        tiling.range_(np.array(0.0, np.float32), np.array(3e38, np.float32), np.array(1e-3, np.float32))
    with pytest.raises(ValueError, match="OneHot: output shape"):
        indexing.one_hot(np.zeros(3, np.int64), np.array(2 ** 40), np.array([0.0, 1.0], np.float32))
    with pytest.raises(ValueError, match="negative"):
        tiling.expand(np.zeros(2, np.float32), np.array([-1, 2], np.int64))
    with pytest.raises(ValueError, match="delta"):
        tiling.range_(np.array(0), np.array(4), np.array(0))
    with pytest.raises(ValueError, match="does not broadcast"):
        tiling.expand(np.zeros((3, 2), np.float32), np.array([4, 2], np.int64))


def _const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def test_constant_range_expand_tile_fold_at_load():
    # y = x + Tile(Expand(Range(0, 6, 1) as float, [2, 6]), [1, 2])  -> every constant folds
    nodes = [
        _const("s", np.array(0.0, np.float32)), _const("l", np.array(6.0, np.float32)),
        _const("d", np.array(1.5, np.float32)), _const("shape", np.array([3, 1], np.int64)),
        _const("reps", np.array([1, 2], np.int64)),
        helper.make_node("Range", ["s", "l", "d"], ["r"]),
        helper.make_node("Expand", ["r", "shape"], ["e"]),
        helper.make_node("Tile", ["e", "reps"], ["t"]),
        helper.make_node("Add", ["x", "t"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m = lowbit.load(model.SerializeToString())
    assert [n.op_type for n in m.graph.nodes] == ["Add"]
    x = np.random.default_rng(11).standard_normal((3, 8)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(m.run(x), expected)


def test_folding_a_huge_constant_range_is_refused():
    nodes = [_const("s", np.array(0, np.int64)), _const("l", np.array(2 ** 40, np.int64)),
             _const("d", np.array(1, np.int64)), helper.make_node("Range", ["s", "l", "d"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "rf"], ["y"])]
    graph = helper.make_graph(nodes, "huge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    # Refused before the fold allocates: by the folding pass's own limit, or else by the kernel's.
    with pytest.raises((ValueError, lowbit.errors.LowbitError), match="Range"):
        lowbit.load(model.SerializeToString())


def test_int64_shape_plumbing_through_a_graph():
    # Shape -> Gather -> Range -> Expand: an int64 chain computed from the input's shape.
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             _const("zero", np.array(0, np.int64)), _const("one", np.array(1, np.int64)),
             _const("i1", np.array(1, np.int64)),
             helper.make_node("Gather", ["shp", "i1"], ["w"], axis=0),
             helper.make_node("Range", ["zero", "w", "one"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Expand", ["rf", "shp"], ["e"]),
             helper.make_node("Mul", ["x", "e"], ["y"])]
    graph = helper.make_graph(nodes, "plumb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(12).standard_normal((4, 5)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(lowbit.load(model.SerializeToString()).run(x), expected)


# --- backend cases stamped with opsets above 21 ----------------------------------------------

def _newer_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    ops = {"DepthToSpace", "SpaceToDepth", "OneHot", "Range"}
    return [c for c in cases if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in ops
            and c.model.opset_import[0].version > 21]


NEWER = _newer_cases()


@pytest.mark.parametrize("case", NEWER, ids=[c.name for c in NEWER])
def test_kernel_reproduces_backend_case_of_a_newer_opset(case):
    """lowbit refuses these files at load (opset > 21); the kernels still compute the op as the ONNX
    reference does: DepthToSpace-28 and OneHot-28 differ from -13/-11 only in type lists, Range-27 adds
    float16/bfloat16, SpaceToDepth-28 adds ``mode``."""
    from onnx.helper import get_attribute_value

    node = case.model.graph.node[0]
    kernel = KERNELS[(node.op_type, "fp32")]
    attrs = {a.name: get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    attrs.pop("stash_type", None)       # float16/bfloat16 Range: lowbit computes in float64 either way
    assert case.data_sets
    for inputs, outputs in case.data_sets:
        arrays = [numpy_helper.to_array(v) if isinstance(v, TensorProto) else np.asarray(v) for v in inputs]
        expected = [numpy_helper.to_array(v) if isinstance(v, TensorProto) else np.asarray(v) for v in outputs][0]
        got = kernel(*arrays, **attrs)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got.astype(np.float64), expected.astype(np.float64))
