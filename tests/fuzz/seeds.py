"""Valid seed models for the fuzz corpus: the committed ``models/*.onnx`` and small onnx.helper graphs.

Every builder is deterministic (weights from a fixed seed), so a case built from a seed
name and a mutation is the same on every machine.  Nothing here imports lowbit: the
seeds are inputs, and onnxruntime is the reference that judges what lowbit does with
their mutations.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
FLOAT = TensorProto.FLOAT

#: Committed models used as seeds (all take (N, 1, 28, 28)).
COMMITTED = ("deep_convnet", "googlenet_small", "mlp", "resnet_small", "vgg_bn")


def _w(rng, *shape, scale=0.3):
    return (rng.normal(0.0, scale, shape)).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset=17, name="seed"):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fuzz-seed")
    model.ir_version = 8
    return model


def _x(c, h, w, name="x"):
    return helper.make_tensor_value_info(name, FLOAT, ["N", c, h, w])


def _y(name="y"):
    return helper.make_tensor_value_info(name, FLOAT, None)


def conv_basic():
    """Conv(pads 1) → Relu → MaxPool 2x2 → Conv(stride 2) → AveragePool → GlobalAveragePool → Flatten → Gemm."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(_w(rng, 4, 3, 3, 3), "w1"), numpy_helper.from_array(_w(rng, 4), "b1"),
             numpy_helper.from_array(_w(rng, 6, 4, 3, 3), "w2"), numpy_helper.from_array(_w(rng, 6), "b2"),
             numpy_helper.from_array(_w(rng, 5, 6), "wg"), numpy_helper.from_array(_w(rng, 5), "bg")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[1, 1], dilations=[1, 1], group=1),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 0, 1, 0]),
        helper.make_node("AveragePool", ["c2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[1, 1],
                         pads=[0, 0, 1, 1], count_include_pad=0),
        helper.make_node("GlobalAveragePool", ["p2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="fc", transB=1, alpha=1.0, beta=1.0),
    ]
    return _model(nodes, [_x(3, 16, 16)], [_y()], inits)


def conv_group():
    """Grouped, dilated Conv → LRN → BatchNormalization → Clip → MaxPool(ceil) → Flatten → Softmax."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(_w(rng, 4, 2, 3, 3), "w"), numpy_helper.from_array(_w(rng, 4), "b"),
             numpy_helper.from_array(np.abs(_w(rng, 4)) + 0.5, "gamma"), numpy_helper.from_array(_w(rng, 4), "beta"),
             numpy_helper.from_array(_w(rng, 4), "mean"), numpy_helper.from_array(np.abs(_w(rng, 4)) + 0.5, "var"),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6.0, np.float32), "hi")]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="gconv", kernel_shape=[3, 3], group=2,
                         dilations=[2, 2], pads=[2, 1, 2, 1]),
        helper.make_node("LRN", ["c"], ["l"], name="lrn", size=3, alpha=1e-4, beta=0.75, bias=1.0),
        helper.make_node("BatchNormalization", ["l", "gamma", "beta", "mean", "var"], ["bn"], name="bn",
                         epsilon=1e-5),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["cl"], name="clip"),
        helper.make_node("MaxPool", ["cl"], ["mp"], name="mpool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("Flatten", ["mp"], ["f"], name="flat", axis=1),
        helper.make_node("Softmax", ["f"], ["y"], name="softmax", axis=-1),
    ]
    return _model(nodes, [_x(4, 12, 12)], [_y()], inits)


def shape_plumbing():
    """Conv → Shape → Gather(0) → Unsqueeze → Concat([n, -1]) → Reshape → Gemm (exporter-style plumbing)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(_w(rng, 3, 2, 3, 3), "w"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(_w(rng, 3 * 6 * 6, 4), "wm")]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "wm"], ["y"], name="matmul"),
    ]
    return _model(nodes, [_x(2, 8, 8)], [_y()], inits)


def resize_concat():
    """Resize ×2 (nearest) and (linear) → Concat → Split → Add/Mul → Transpose."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["up_n"], name="resize_n", mode="nearest"),
        helper.make_node("Resize", ["x", "", "scales"], ["up_l"], name="resize_l", mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Concat", ["up_n", "up_l"], ["cat"], name="cat", axis=1),
        helper.make_node("Split", ["cat"], ["s0", "s1"], name="split", axis=1, num_outputs=2),
        helper.make_node("Add", ["s0", "s1"], ["a"], name="add"),
        helper.make_node("Mul", ["a", "s1"], ["m"], name="mul"),
        helper.make_node("Transpose", ["m"], ["y"], name="transpose", perm=[0, 2, 3, 1]),
    ]
    return _model(nodes, [_x(2, 5, 5)], [_y()], [scales], opset=18)


def const_shapes():
    """ConstantOfShape, Expand, Tile and Range on constants (folded at load) added to the input."""
    inits = [numpy_helper.from_array(np.array([1, 4], np.int64), "cshape"),
             numpy_helper.from_array(np.array([[0.5], [1.5]], np.float32), "col"),
             numpy_helper.from_array(np.array([2, 4], np.int64), "eshape"),
             numpy_helper.from_array(np.array([[1.0, 2.0]], np.float32), "row"),
             numpy_helper.from_array(np.array([2, 2], np.int64), "reps"),
             numpy_helper.from_array(np.array(0.0, np.float32), "start"),
             numpy_helper.from_array(np.array(4.0, np.float32), "limit"),
             numpy_helper.from_array(np.array(1.0, np.float32), "delta")]
    nodes = [
        helper.make_node("ConstantOfShape", ["cshape"], ["ones"], name="cos",
                         value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("Expand", ["col", "eshape"], ["ex"], name="expand"),
        helper.make_node("Tile", ["row", "reps"], ["ti"], name="tile"),
        helper.make_node("Range", ["start", "limit", "delta"], ["ra"], name="range"),
        helper.make_node("Add", ["x", "ones"], ["a1"], name="add1"),
        helper.make_node("Mul", ["a1", "ex"], ["a2"], name="mul"),
        helper.make_node("Add", ["a2", "ti"], ["a3"], name="add2"),
        helper.make_node("Add", ["a3", "ra"], ["y"], name="add3"),
    ]
    x = helper.make_tensor_value_info("x", FLOAT, ["N", 2, 4])
    return _model(nodes, [x], [_y()], inits)


def misc_ops():
    """Dropout (inference), Flatten, Reshape [0, -1], Sigmoid, Gemm, Pad, LeakyRelu, ReduceMean."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "rshape"),
             numpy_helper.from_array(_w(rng, 2 * 5 * 5, 3), "wm"),
             numpy_helper.from_array(np.array([1], np.int64), "raxes")]
    nodes = [
        helper.make_node("Dropout", ["x"], ["d"], name="dropout", seed=1),
        helper.make_node("Pad", ["d", "pads"], ["p"], name="pad", mode="constant"),
        helper.make_node("LeakyRelu", ["p"], ["lr"], name="leaky", alpha=0.1),
        helper.make_node("Reshape", ["lr", "rshape"], ["r"], name="reshape"),
        helper.make_node("Sigmoid", ["r"], ["s"], name="sigmoid"),
        helper.make_node("Gemm", ["s", "wm"], ["g"], name="gemm"),
        helper.make_node("ReduceMean", ["g", "raxes"], ["y"], name="rmean", keepdims=1),
    ]
    return _model(nodes, [_x(2, 3, 3)], [_y()], inits, opset=18)


def two_outputs():
    """Conv with two graph outputs (a dict from Model.run) and a Flatten + Gemm head."""
    rng = np.random.default_rng(6)
    inits = [numpy_helper.from_array(_w(rng, 2, 1, 3, 3), "w"),
             numpy_helper.from_array(_w(rng, 2 * 4 * 4, 3), "wm")]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["feat"], name="relu"),
        helper.make_node("Flatten", ["feat"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "wm"], ["logits"], name="mm"),
    ]
    return _model(nodes, [_x(1, 6, 6)], [_y("feat"), _y("logits")], inits)


def fixed_batch():
    """A model exported with a fixed batch of 2: Conv → Relu → Reshape to [2, -1]."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(_w(rng, 2, 1, 3, 3), "w"),
             numpy_helper.from_array(np.array([2, -1], np.int64), "shape")]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["y"], name="reshape"),
    ]
    x = helper.make_tensor_value_info("x", FLOAT, [2, 1, 5, 5])
    return _model(nodes, [x], [_y()], inits)


BUILT = {"conv_basic": conv_basic, "conv_group": conv_group, "shape_plumbing": shape_plumbing,
         "resize_concat": resize_concat, "const_shapes": const_shapes, "misc_ops": misc_ops,
         "two_outputs": two_outputs, "fixed_batch": fixed_batch}

ONNX_SEEDS = tuple(BUILT) + COMMITTED


@functools.lru_cache(maxsize=None)
def seed_bytes(name: str) -> bytes:
    """The serialized seed model ``name`` (a builder above or a committed model)."""
    if name in BUILT:
        return BUILT[name]().SerializeToString()
    return (MODELS / f"{name}.onnx").read_bytes()


def seed_proto(name: str) -> onnx.ModelProto:
    """A fresh (mutable) copy of the seed's ModelProto."""
    return onnx.load_model_from_string(seed_bytes(name))


def input_shape(name: str, batch: int = 2) -> tuple:
    """The seed's input shape with the batch set to ``batch`` (a fixed batch stays)."""
    proto = seed_proto(name)
    init = {i.name for i in proto.graph.initializer}
    first = next(i for i in proto.graph.input if i.name not in init)
    dims = []
    for i, d in enumerate(first.type.tensor_type.shape.dim):
        dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if i == 0 else 1))
    return tuple(dims)


def input_name(name: str) -> str:
    proto = seed_proto(name)
    init = {i.name for i in proto.graph.initializer}
    return next(i.name for i in proto.graph.input if i.name not in init)


def sample_input(name: str, seed: int, batch: int = 2) -> np.ndarray:
    """A float32 input for the seed, drawn from ``seed``."""
    return np.random.default_rng(seed).normal(0.0, 1.0, input_shape(name, batch)).astype(np.float32)
