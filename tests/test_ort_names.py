"""onnxruntime's quantize_static names as aliases: each gives bit-for-bit the model of lowbit's own spelling."""
import numpy as np
import pytest

import lowbit
from lowbit.cli import main
from lowbit.data import mnist
from lowbit.errors import InputError
from lowbit.zoo import model_path

SEED = str(model_path())


@pytest.fixture(scope="module")
def seed():
    return lowbit.load(SEED)


@pytest.fixture(scope="module")
def data():
    x_train = mnist("train")[0][:64]
    x_test = mnist("test")[0][:32]
    return x_train, x_test


def assert_same_model(a, b, x):
    """Same nodes, precisions, quantization parameters, constants and outputs (exactly)."""
    ga, gb = a.graph, b.graph
    assert [(n.name, n.op_type, n.precision, n.inputs, n.outputs) for n in ga.nodes] == \
        [(n.name, n.op_type, n.precision, n.inputs, n.outputs) for n in gb.nodes]
    for na, nb in zip(ga.nodes, gb.nodes):
        assert sorted(na.quant) == sorted(nb.quant), na.name
        for key in na.quant:
            assert np.array_equal(np.asarray(na.quant[key]), np.asarray(nb.quant[key])), (na.name, key)
    assert sorted(ga.constants) == sorted(gb.constants)
    for name in ga.constants:
        assert ga.constants[name].dtype == gb.constants[name].dtype, name
        assert np.array_equal(ga.constants[name], gb.constants[name]), name
    assert ga.metadata.get("ranges") == gb.metadata.get("ranges")
    np.testing.assert_array_equal(a.run(x), b.run(x))


@pytest.mark.parametrize("alias, spelling", [
    (dict(per_channel=True), dict()),
    (dict(activation_type="QInt8"), dict(activation_type="int8")),
    (dict(activation_type="QUInt8"), dict(activation_type="uint8")),
    (dict(weight_type="QInt8"), dict()),
    (dict(calibrate_method="MinMax"), dict(method="minmax")),
    (dict(calibrate_method="Entropy"), dict(method="entropy")),
    (dict(calibrate_method="Percentile"), dict(method="percentile")),
])
def test_alias_gives_the_lowbit_spelling_bit_for_bit(seed, data, alias, spelling):
    x_train, x_test = data
    a = lowbit.quantize(seed, "int8", calibration=x_train, **alias)
    b = lowbit.quantize(seed, "int8", calibration=x_train, **spelling)
    assert_same_model(a, b, x_test)


def test_op_types_to_quantize_leaves_every_other_op_type_in_fp32(seed, data):
    x_train, x_test = data
    others = sorted({n.op_type for n in seed.graph.nodes} - {"Conv"})
    assert "Gemm" in others
    a = lowbit.quantize(seed, "int4", calibration=x_train, op_types_to_quantize=["Conv"])
    b = lowbit.quantize(seed, "int4", calibration=x_train, nodes_to_exclude=others)
    assert_same_model(a, b, x_test)
    precisions = {n.op_type: set() for n in a.graph.nodes}
    for n in a.graph.nodes:
        precisions[n.op_type].add(n.precision)
    assert precisions["Gemm"] == {"fp32"} and "fp32" not in precisions["Conv"]


def test_onnxruntime_enums_are_read_by_name(seed, data):
    quantization = pytest.importorskip("onnxruntime.quantization")
    x_train, x_test = data
    a = lowbit.quantize(seed, "int8", calibration=x_train, activation_type=quantization.QuantType.QInt8,
                        weight_type=quantization.QuantType.QInt8,
                        calibrate_method=quantization.CalibrationMethod.Entropy)
    b = lowbit.quantize(seed, "int8", calibration=x_train, activation_type="int8", method="entropy")
    assert_same_model(a, b, x_test)


@pytest.mark.parametrize("kwargs, match", [
    (dict(per_channel=False), "per output channel only"),
    (dict(weight_type="QUInt8"), "symmetric signed"),
    (dict(activation_type="QInt16"), "expected QUInt8 or QInt8"),
    (dict(calibrate_method="Distribution"), "expected MinMax, Entropy or Percentile"),
    (dict(calibrate_method="Entropy", method="percentile"), "contradicts method='percentile'"),
    (dict(op_types_to_quantize="Conv"), "must be a list of op types"),
])
def test_values_lowbit_cannot_honour_are_refused(seed, data, kwargs, match):
    with pytest.raises(InputError, match=match):
        lowbit.quantize(seed, "int8", calibration=data[0], **kwargs)


def test_cli_accepts_the_onnxruntime_flags(tmp_path, data):
    np.savez(tmp_path / "cal.npz", x_train=data[0])
    ort = tmp_path / "ort.lowbit"
    own = tmp_path / "own.lowbit"
    assert main(["quantize", SEED, "--precision", "int8", "--calibration", str(tmp_path / "cal.npz"), "--per-channel",
                 "--weight-type", "QInt8", "--activation-type", "QInt8", "--calibrate-method", "Percentile",
                 "--op-types-to-quantize", "Conv", "-o", str(ort)]) == 0
    others = sorted({n.op_type for n in lowbit.load(SEED).graph.nodes} - {"Conv"})
    assert main(["quantize", SEED, "--precision", "int8", "--calibration", str(tmp_path / "cal.npz"),
                 "--activation-type", "int8", "--method", "percentile", "--exclude", ",".join(others),
                 "-o", str(own)]) == 0
    assert_same_model(lowbit.load(ort), lowbit.load(own), data[1])
