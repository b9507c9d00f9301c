"""Binary models: lowbit's packed XNOR graph against a float ±1 reference written here."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from tests.naive import conv_gemm as naive


def sign(x):
    return np.where(x < 0, -1.0, 1.0)


def binary_weights(w):
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    alpha = np.abs(flat).mean(axis=1)
    return (sign(flat) * alpha[:, None]).reshape(w.shape)


def maxpool2(x):
    n, c, h, w = x.shape
    return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def batchnorm(x, gamma, beta, mean, var, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.fixture
def net(rng):
    """conv1 (fp32) → ReLU → conv2 → BN → pool → conv3 (stride 2) → BN → pool → flatten → fc1 → BN-free fc2 (fp32)."""
    p = {
        "W1": rng.standard_normal((8, 1, 3, 3)), "b1": rng.standard_normal(8) * 0.1,
        "W2": rng.standard_normal((70, 8, 3, 3)), "b2": rng.standard_normal(70) * 0.1,
        "W3": rng.standard_normal((16, 70, 3, 3)),
        "W4": rng.standard_normal((20, 16)), "b4": rng.standard_normal(20) * 0.1,
        "W5": rng.standard_normal((10, 20)), "b5": rng.standard_normal(10) * 0.1,
    }
    for i, c in ((2, 70), (3, 16)):
        p[f"g{i}"] = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)  # negative gammas flip thresholds
        p[f"be{i}"], p[f"m{i}"], p[f"v{i}"] = rng.standard_normal(c) * 0.3, rng.standard_normal(c) * 0.3, rng.uniform(0.5, 2, c)
    p = {k: v.astype(np.float32) for k, v in p.items()}
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]), n("Relu", ["c1"], ["r1"]),
        n("Conv", ["r1", "W2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c2", "g2", "be2", "m2", "v2"], ["bn2"]),
        n("MaxPool", ["bn2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p2", "W3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        n("BatchNormalization", ["c3", "g3", "be3", "m3", "v3"], ["bn3"]),
        n("MaxPool", ["bn3"], ["p3"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Flatten", ["p3"], ["f"]), n("Gemm", ["f", "W4", "b4"], ["fc1"], transB=1),
        n("Gemm", ["fc1", "W5", "b5"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "bin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(v, k) for k, v in p.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), p


def reference(p, x):
    h = np.maximum(naive.conv(x, p["W1"], p["b1"], pads=[1, 1, 1, 1]), 0)
    h = naive.conv(sign(h), binary_weights(p["W2"]), p["b2"], pads=[1, 1, 1, 1])
    h = maxpool2(batchnorm(h, p["g2"], p["be2"], p["m2"], p["v2"]))
    h = naive.conv(sign(h), binary_weights(p["W3"]), None, pads=[1, 1, 1, 1], strides=[2, 2])
    h = maxpool2(batchnorm(h, p["g3"], p["be3"], p["m3"], p["v3"])).reshape(len(x), -1)
    h = sign(h) @ binary_weights(p["W4"]).T + p["b4"]
    return h @ p["W5"].T.astype(np.float64) + p["b5"]


def test_binary_graph_matches_the_float_reference(net, rng, tmp_path):
    proto, p = net
    model = lowbit.quantize(lowbit.load(proto), "binary")
    binary = {n.name: n for n in model.graph.nodes if n.precision == "binary"}
    assert [n.op_type for n in binary.values()].count("Conv") == 2 and "Gemm" in [n.op_type for n in binary.values()]
    # conv2's BatchNorm + sign went into integer thresholds, its pool runs on packed bits
    assert any(n.attrs.get("output") == "sign" for n in binary.values())
    assert any(n.op_type == "MaxPool" for n in binary.values())
    x = rng.standard_normal((6, 1, 12, 12)).astype(np.float32)
    expected = reference(p, x)
    got = model.run(x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())
    path = tmp_path / "b.lowbit"
    lowbit.save(model, path)
    np.testing.assert_array_equal(lowbit.load(path).run(x), got)


def test_binary_file_holds_bits_not_floats(net, tmp_path):
    proto, p = net
    model = lowbit.quantize(lowbit.load(proto), "binary")
    binary_weights_bytes = sum(model.graph.constants[n.inputs[1]].nbytes for n in model.graph.nodes
                               if n.precision == "binary" and n.op_type in ("Conv", "Gemm"))
    float_bytes = (p["W2"].nbytes + p["W3"].nbytes + p["W4"].nbytes)
    assert binary_weights_bytes <= float_bytes / 31  # one bit per weight, padded to whole bytes
    assert not any(v.dtype == np.float32 and v.shape in (p["W2"].shape, p["W3"].shape, p["W4"].shape)
                   for v in model.graph.constants.values())
