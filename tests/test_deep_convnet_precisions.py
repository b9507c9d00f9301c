"""The seed network on the 10k MNIST test set: what each precision must keep.

fp16 loses nothing; int8 loses at most 0.05 points and agrees with fp32 on
≥ 99.9% of the images; onnxruntime running lowbit's QDQ export agrees with
lowbit's int8 on ≥ 99.9%; onnxruntime's own QDQ model runs on lowbit's
integer kernels with ≥ 99.9% agreement.
"""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import lowbit
from lowbit.data import mnist
from lowbit.graph.onnx_export import export_onnx

MODEL = Path(__file__).resolve().parents[1] / "models" / "deep_convnet.onnx"


@pytest.fixture(scope="module")
def data():
    x, y = mnist("test")
    return x, y, mnist("train")[0][:1000]


@pytest.fixture(scope="module")
def fp32(data):
    model = lowbit.load(MODEL)
    return model, model.run(data[0])


def accuracy(scores, y):
    return 100.0 * np.mean(scores.argmax(1) == y)


def ort_run(model_bytes, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_fp32_matches_onnxruntime(data, fp32):
    reference = ort_run(MODEL.read_bytes(), data[0])
    np.testing.assert_array_equal(fp32[1].argmax(1), reference.argmax(1))


def test_fp16_loses_nothing(data, fp32):
    x, y, _ = data
    half = lowbit.quantize(fp32[0], "fp16").run(x)
    assert accuracy(half, y) == accuracy(fp32[1], y)


def test_int8_within_five_hundredths_of_a_point_and_agreeing(data, fp32):
    x, y, calibration = data
    int8 = lowbit.quantize(fp32[0], "int8", calibration=calibration)
    scores = int8.run(x)
    assert accuracy(fp32[1], y) - accuracy(scores, y) <= 0.05
    assert np.mean(scores.argmax(1) == fp32[1].argmax(1)) >= 0.999
    exported = ort_run(export_onnx(int8.graph).SerializeToString(), x)
    assert np.mean(exported.argmax(1) == scores.argmax(1)) >= 0.999


def test_onnxruntime_qdq_model_runs_on_lowbit_int8(tmp_path, data):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    x, _, calibration = data

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calibration[i:i + 100]} for i in range(0, 1000, 100)])

        def get_next(self):
            return next(self.batches, None)

    path = tmp_path / "qdq.onnx"
    quantize_static(str(MODEL), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    model = lowbit.load(path)
    assert sum(n.precision == "int8" and n.op_type == "Conv" for n in model.graph.nodes) == 6
    theirs = ort_run(path.read_bytes(), x)
    assert np.mean(model.run(x).argmax(1) == theirs.argmax(1)) >= 0.999
