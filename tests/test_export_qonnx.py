"""lowbit export --format qonnx: the QONNX graph, run by the qonnx package's own executor, against lowbit's kernels."""
import numpy as np
import onnx
import pytest

import lowbit
from lowbit.cli import main
from lowbit.graph.qonnx_export import QONNX_DOMAIN, export_qonnx

MNIST = np.load("lowbit/data/mnist.npz")
X = (MNIST["x_test"][:64].astype(np.float32) / 255)[:, None]
CAL = (MNIST["x_train"][:256].astype(np.float32) / 255)[:, None]


@pytest.fixture(scope="module")
def int4_model():
    return lowbit.quantize(lowbit.load("models/deep_convnet.onnx"), "int4", calibration=CAL)


@pytest.fixture(scope="module")
def binary_model():
    return lowbit.load("models/deep_convnet_binary.lowbit")


def run_qonnx(proto, x):
    """The qonnx package's executor (QONNX ops in numpy, standard ops one by one in onnxruntime)."""
    pytest.importorskip("qonnx", reason="qonnx (the dev extra) is not installed: no QONNX executor to compare with")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for v in list(proto.graph.input) + list(proto.graph.output):
        v.type.tensor_type.shape.dim[0].dim_value = x.shape[0]
    model = ModelWrapper(proto).transform(InferShapes())
    return execute_onnx(model, {proto.graph.input[0].name: x})[proto.graph.output[0].name]


def quant_nodes(proto):
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    return [(n.op_type, float(inits[n.input[3]]) if n.op_type == "Quant" else None)
            for n in proto.graph.node if n.domain == QONNX_DOMAIN]


def test_binary_net_runs_in_qonnx_like_lowbit(binary_model):
    proto = export_qonnx(binary_model.graph)
    kinds = quant_nodes(proto)
    # 6 binary layers: one BipolarQuant per weight tensor, the first one's input and 5 sign outputs
    assert kinds.count(("BipolarQuant", None)) == 12 and not any(k == "Quant" for k, _ in kinds)
    ours, theirs = binary_model.run(X), run_qonnx(proto, X)
    # The binary layers' dots and signs are integer-exact (the signs come from the integer thresholds);
    # the fp32 first/last layers sum in onnxruntime's order, so the logits agree up to float rounding.
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4)


def test_int4_net_runs_in_qonnx_within_one_output_step(int4_model):
    proto = export_qonnx(int4_model.graph)
    widths = sorted({w for k, w in quant_nodes(proto) if k == "Quant"})
    assert widths == [4.0, 8.0, 32.0]   # 4-bit weights/activations, 8-bit edge layers, int32 biases
    ours, theirs = int4_model.run(X), run_qonnx(proto, X)
    last = next(n for n in reversed(int4_model.graph.nodes) if n.op_type == "Gemm")
    # One step of the float output is one unit of the last layer's int32 accumulator, s_x·s_w[m]: the
    # float Conv/Gemm and QONNX's round-half-even requantize where lowbit uses int32 sums and fixed-point
    # multipliers, so a level can differ only where a value lies within float rounding of a tie.
    step = np.float64(last.quant["x_scale"]) * last.quant["w_scale"].astype(np.float64)
    assert np.all(np.abs(theirs.astype(np.float64) - ours) <= step)
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))


def test_qonnx_export_refuses_float_formats():
    fp16 = lowbit.quantize(lowbit.load("models/deep_convnet.onnx"), "fp16")
    with pytest.raises(lowbit.errors.LowbitError, match="fp16"):
        export_qonnx(fp16.graph)


def test_cli_export_qonnx(tmp_path, capsys):
    out = tmp_path / "binary.qonnx.onnx"
    assert main(["export", "models/deep_convnet_binary.lowbit", "-o", str(out), "--format", "qonnx"]) == 0
    assert "QONNX" in capsys.readouterr().out
    written = onnx.load(str(out))
    assert {o.domain for o in written.opset_import} == {"", QONNX_DOMAIN}
    onnx.checker.check_model(written, full_check=True)
