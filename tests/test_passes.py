"""Graph passes: the optimised graph must compute what onnxruntime computes on the original."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import lowbit


def ort_run(model, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def conv_bn_relu_flatten_model(rng, with_bias=True):
    c_in, c_out = 3, 8
    inits = [
        numpy_helper.from_array(rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array((rng.random(c_out) + 0.5).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "mean"),
        numpy_helper.from_array((rng.random(c_out) + 0.1).astype(np.float32), "var"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(rng.standard_normal((10, c_out * 36)).astype(np.float32), "FW"),
    ]
    conv_inputs = ["x", "W"]
    if with_bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "B"))
        conv_inputs.append("B")
    nodes = [
        helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-3, name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"]),
        helper.make_node("Identity", ["flat"], ["flat2"]),
        helper.make_node("Gemm", ["flat2", "FW"], ["y"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_batchnorm_and_relu_fold_into_conv(rng):
    for with_bias in (True, False):
        proto = conv_bn_relu_flatten_model(rng, with_bias)
        model = lowbit.load(proto)
        ops = [node.op_type for node in model.graph.nodes]
        assert "BatchNormalization" not in ops and "Relu" not in ops and "Identity" not in ops
        conv = model.graph.nodes[0]
        assert conv.label == "Conv+BatchNormalization+Relu"
        x = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
        expected = ort_run(proto, x)
        np.testing.assert_allclose(model.run(x), expected, rtol=0, atol=1e-4 * max(1, np.abs(expected).max()))


def test_shape_plumbing_folds_to_a_batch_copying_reshape(rng):
    proto = conv_bn_relu_flatten_model(rng)
    model = lowbit.load(proto)
    ops = [node.op_type for node in model.graph.nodes]
    assert not {"Shape", "Gather", "Unsqueeze", "Concat"} & set(ops), ops
    reshape = next(node for node in model.graph.nodes if node.op_type == "Reshape")
    assert model.graph.constants[reshape.inputs[1]].tolist() == [0, -1]
    for batch in (1, 2, 5):
        x = rng.standard_normal((batch, 3, 6, 6)).astype(np.float32)
        expected = ort_run(proto, x)
        np.testing.assert_allclose(model.run(x), expected, rtol=0, atol=1e-4 * max(1, np.abs(expected).max()))


def test_unoptimised_graph_gives_the_same_answer(rng):
    proto = conv_bn_relu_flatten_model(rng)
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    plain = lowbit.load(proto, optimize_graph=False)
    assert "BatchNormalization" in [n.op_type for n in plain.graph.nodes]
    expected = ort_run(proto, x)
    np.testing.assert_allclose(plain.run(x), expected, rtol=0, atol=1e-4 * max(1, np.abs(expected).max()))


def test_identity_feeding_a_graph_output_is_kept_correct(rng):
    w = rng.standard_normal((4, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Identity", ["h"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(w, "W")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = lowbit.load(proto)
    assert model.output_names == ["y"]
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(model.run(x), x @ w, rtol=1e-5, atol=1e-5)


def test_batchnorm_folds_into_gemm_for_both_layouts(rng):
    for trans_b in (0, 1):
        w = rng.standard_normal((6, 5) if trans_b else (5, 6)).astype(np.float32)
        inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "C")]
        for name, value in (("g", rng.uniform(0.5, 1.5, 6)), ("b", rng.standard_normal(6)),
                            ("m", rng.standard_normal(6)), ("v", rng.uniform(0.5, 2, 6))):
            inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        nodes = [helper.make_node("Gemm", ["x", "W", "C"], ["h"], transB=trans_b, alpha=0.5, beta=2.0),
                 helper.make_node("BatchNormalization", ["h", "g", "b", "m", "v"], ["y"])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], inits)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model = lowbit.load(proto)
        assert [n.label for n in model.graph.nodes] == ["Gemm+BatchNormalization"]
        x = rng.standard_normal((4, 5)).astype(np.float32)
        np.testing.assert_allclose(model.run(x), ort_run(proto, x), rtol=1e-5, atol=1e-5)
