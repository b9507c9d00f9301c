"""Loading QONNX models (Quant/BipolarQuant nodes, as Brevitas writes them) onto lowbit's integer and binary kernels."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.errors import ModelLoadError
from lowbit.graph.qonnx_export import export_qonnx

DOMAIN = "qonnx.custom_op.general"
MNIST = np.load("lowbit/data/mnist.npz")
X = (MNIST["x_test"][:32].astype(np.float32) / 255)[:, None]
CAL = (MNIST["x_train"][:256].astype(np.float32) / 255)[:, None]
RNG = np.random.default_rng(7)
W1 = RNG.normal(0, 0.4, (4, 2, 3, 3)).astype(np.float32)
B1 = RNG.normal(0, 0.1, (4,)).astype(np.float32)
W2 = RNG.normal(0, 0.3, (3, 4 * 5 * 5)).astype(np.float32)
S_IN, S_ACT = np.float32(1 / 255), np.float32(0.25)
S_W1 = (np.abs(W1).reshape(4, -1).max(1) / 7).astype(np.float32).reshape(4, 1, 1, 1)
S_W2 = (np.abs(W2).max(1) / 7).astype(np.float32).reshape(3, 1)


def brevitas_style() -> onnx.ModelProto:
    """input → Quant(8b unsigned) → Conv(Quant 4b weights, float bias) → Relu → Quant(4b unsigned) → Flatten → Gemm(Quant 4b weights)."""
    c = lambda name, v: numpy_helper.from_array(np.asarray(v, np.float32), name)
    quant = lambda x, out, s, z, b, signed, narrow: helper.make_node(
        "Quant", [x, s, z, b], [out], name=f"{out}_quant", domain=DOMAIN, signed=signed, narrow=narrow,
        rounding_mode="ROUND")
    nodes = [quant("x", "xq", "s_in", "zero", "b8", 0, 0),
             quant("W1", "W1q", "s_w1", "zero", "b4", 1, 1),
             helper.make_node("Conv", ["xq", "W1q", "B1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             quant("r1", "r1q", "s_act", "zero", "b4", 0, 0),
             helper.make_node("Flatten", ["r1q"], ["f"], name="flatten"),
             quant("W2", "W2q", "s_w2", "zero", "b4", 1, 1),
             helper.make_node("Gemm", ["f", "W2q"], ["y"], name="fc", transB=1)]
    inits = [c("W1", W1), c("B1", B1), c("W2", W2), c("s_in", S_IN), c("s_act", S_ACT), c("s_w1", S_W1),
             c("s_w2", S_W2), c("zero", 0.0), c("b8", 8.0), c("b4", 4.0)]
    graph = helper.make_graph(nodes, "brevitas_style", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 8
    return model


def oracle(x):
    """Float64 numpy from the QONNX definitions (plain loops for the conv)."""
    q = lambda v, s, lo, hi: np.clip(np.rint(v / s), lo, hi) * s
    xq = q(x.astype(np.float64), S_IN, 0, 255)
    w1 = q(W1.astype(np.float64), S_W1, -7, 7)
    pad = np.pad(xq, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((x.shape[0], 4, 5, 5))
    for i in range(5):
        for j in range(5):
            conv[:, :, i, j] = np.einsum("nchw,mchw->nm", pad[:, :, i:i + 3, j:j + 3], w1)
    pre = np.maximum(conv + B1.reshape(1, 4, 1, 1), 0)
    r = q(pre, S_ACT, 0, 15)
    w2 = q(W2.astype(np.float64), S_W2, -7, 7)
    return r.reshape(x.shape[0], -1) @ w2.T, pre / S_ACT


def test_brevitas_style_model_runs_on_the_int4_kernels():
    model = lowbit.load(brevitas_style())
    precisions = {n.name: n.precision for n in model.graph.nodes if n.op_type in ("Conv", "Gemm")}
    assert precisions == {"conv": "int4", "fc": "int4"}
    x = np.random.default_rng(1).uniform(0, 1, (16, 2, 5, 5)).astype(np.float32)
    expected, unrounded = oracle(x)
    ours = model.run(x)
    # lowbit's int32 + fixed-point requantization gives the oracle's 4-bit levels unless a value lies within
    # float rounding of a tie; this draw has none (its margin is checked), so the output agrees to float32
    # rounding of the last layer's accumulator
    assert np.min(np.abs(unrounded % 1 - 0.5)) > 1e-4
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_brevitas_style_model_agrees_with_the_qonnx_executor():
    pytest.importorskip("qonnx", reason="qonnx (the dev extra) is not installed: no QONNX executor to compare with")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    x = np.random.default_rng(2).uniform(0, 1, (4, 2, 5, 5)).astype(np.float32)
    proto = brevitas_style()
    for v in list(proto.graph.input) + list(proto.graph.output):
        v.type.tensor_type.shape.dim[0].dim_value = 4
    theirs = execute_onnx(ModelWrapper(proto).transform(InferShapes()), {"x": x})["y"]
    np.testing.assert_allclose(lowbit.load(brevitas_style()).run(x), theirs, rtol=1e-5, atol=1e-5)


def test_int4_export_round_trips():
    q = lowbit.quantize(lowbit.load("models/deep_convnet.onnx"), "int4", calibration=CAL)
    back = lowbit.load(export_qonnx(q.graph).SerializeToString())
    assert [n.precision for n in back.graph.nodes if n.op_type in ("Conv", "Gemm")] == \
        [n.precision for n in q.graph.nodes if n.op_type in ("Conv", "Gemm")]
    # the same integers and scales: float rounding of the float-output last layer only
    np.testing.assert_allclose(back.run(X), q.run(X), rtol=0, atol=1e-4)


def test_binary_export_round_trips_exactly():
    b = lowbit.load("models/deep_convnet_binary.lowbit")
    back = lowbit.load(export_qonnx(b.graph).SerializeToString())
    assert [n.precision for n in back.graph.nodes if n.op_type in ("Conv", "Gemm")] == \
        ["fp32"] + ["binary"] * 6 + ["fp32"]
    np.testing.assert_array_equal(back.run(X), b.run(X))


def test_constructs_without_kernels_are_listed_in_one_line():
    model = brevitas_style()
    g = model.graph
    g.node.append(helper.make_node("Trunc", ["y", "s_act", "zero", "b8", "b4"], ["t"], name="trunc", domain=DOMAIN))
    g.node.append(helper.make_node("MultiThreshold", ["t", "W2"], ["m"], name="mt", domain=DOMAIN))
    next(a for a in g.node[0].attribute if a.name == "rounding_mode").s = b"FLOOR"
    with pytest.raises(ModelLoadError) as err:
        lowbit.load(model)
    message = str(err.value)
    assert "\n" not in message
    for part in ("Trunc node 'trunc'", "MultiThreshold node 'mt'", "rounding_mode FLOOR"):
        assert part in message
