"""lowbit export --format qdq: INT4/UINT4 QDQ at opset 21 for 4-bit tensors, 8-bit QDQ of the k-bit values below."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import lowbit
from lowbit.cli import main
from lowbit.graph.onnx_export import ExportError, check_onnxruntime, export_onnx

MNIST = np.load("lowbit/data/mnist.npz")
X = (MNIST["x_test"][:64].astype(np.float32) / 255)[:, None]
CAL = (MNIST["x_train"][:256].astype(np.float32) / 255)[:, None]
INT4, UINT4 = onnx.TensorProto.INT4, onnx.TensorProto.UINT4


@pytest.fixture(scope="module")
def fp32():
    return lowbit.load("models/deep_convnet.onnx")


def ort_run(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def one_step(model):
    """One unit of the last layer's int32 accumulator (its float output's resolution), per column."""
    last = next(n for n in reversed(model.graph.nodes) if n.op_type == "Gemm")
    return np.float64(last.quant["x_scale"]) * last.quant["w_scale"].astype(np.float64)


@pytest.mark.parametrize("activation_bits", [None, 8])
def test_int4_qdq_runs_in_onnxruntime(fp32, activation_bits):
    q = lowbit.quantize(fp32, "int4", calibration=CAL, **({"activation_bits": activation_bits} if activation_bits else {}))
    proto = export_onnx(q.graph, low_bits=True)
    assert proto.opset_import[0].version == 21
    types = {t.data_type for t in proto.graph.initializer}
    assert INT4 in types                                   # the int4 weights and their zero points
    assert (UINT4 in types) == (activation_bits is None)   # 4-bit activations through UINT4
    assert check_onnxruntime(proto)
    ours, theirs = q.run(X), ort_run(proto, X)
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))
    assert np.all(np.abs(theirs.astype(np.float64) - ours) <= bound(q, eight_bit=activation_bits == 8))


def bound(model, eight_bit):
    """4-bit activations: the float path lands on lowbit's levels (measured: no level differs on these 64
    images), so the outputs agree within one accumulator unit.  8-bit activations: onnxruntime's float
    Conv + QuantizeLinear (ties to even) can land one level away from lowbit's int32 + fixed-point
    requantization; bound: one level of each input of the last layer times its weights, plus one unit."""
    if not eight_bit:
        return one_step(model)
    last = next(n for n in reversed(model.graph.nodes) if n.op_type == "Gemm")
    w = model.graph.constants[last.inputs[1]]
    return one_step(model) * (np.abs(w.astype(np.float64)).sum(axis=1) + 1)


@pytest.mark.parametrize("precision", ["int3", "int2", "ternary"])
def test_lower_widths_are_8_bit_qdq_of_the_k_bit_values(fp32, precision):
    q = lowbit.quantize(fp32, precision, calibration=CAL)
    proto = export_onnx(q.graph, low_bits=True)
    inits = {t.name: t for t in proto.graph.initializer}
    assert not {t.data_type for t in inits.values()} & {INT4, UINT4}
    qmax = {"int3": 3, "int2": 1, "ternary": 1}[precision]
    conv2 = onnx.numpy_helper.to_array(inits["conv2::w_q"])
    assert conv2.dtype == np.int8 and np.abs(conv2).max() == qmax
    ours, theirs = q.run(X), ort_run(proto, X)
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))
    assert np.all(np.abs(theirs.astype(np.float64) - ours) <= bound(q, eight_bit=precision == "ternary"))


def test_default_format_still_refuses_sub_8_bit_and_qdq_refuses_binary(fp32):
    q = lowbit.quantize(fp32, "int4", calibration=CAL)
    with pytest.raises(ExportError, match="--format qdq"):
        export_onnx(q.graph)
    with pytest.raises(ExportError, match="--format qonnx"):
        export_onnx(lowbit.load("models/deep_convnet_binary.lowbit").graph, low_bits=True)


def test_cli_export_qdq(tmp_path, fp32, capsys):
    path = tmp_path / "int4.lowbit"
    lowbit.save(lowbit.quantize(fp32, "int4", calibration=CAL), path)
    out = tmp_path / "int4.onnx"
    assert main(["export", str(path), "-o", str(out), "--format", "qdq"]) == 0
    assert "opset 21" in capsys.readouterr().out
    assert main(["export", str(path), "-o", str(tmp_path / "refused.onnx")]) == 2
    assert not (tmp_path / "refused.onnx").exists()
