"""Models that are invalid, hostile or oddly stored are refused at load with one clear line."""
from __future__ import annotations

import os
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.errors import ModelLoadError


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _x(shape=(1, 2, 6, 6)):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


def _y():
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, None)


def _relu_model(opset=17):
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_x()], [_y()], opset=opset)


def _refused(model_or_bytes, match):
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    with pytest.raises(ModelLoadError, match=match) as info:
        lowbit.load(data)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("opset, match", [(99, "opset 99 is newer"), (22, "opset 22 is newer"), (6, "opset 6 is too old")])
def test_opsets_outside_7_to_21_are_refused(opset, match):
    _refused(_relu_model(opset), match)


def test_complex_initializer_is_refused_not_truncated():
    w = numpy_helper.from_array(np.ones((2,), np.complex64), "w")
    model = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_x((1, 2))], [_y()], [w])
    _refused(model, "initializer 'w' is complex64")


def test_a_tensor_without_producer_is_refused_at_load():
    model = _model([helper.make_node("Add", ["x", "ghost"], ["y"])], [_x()], [_y()])
    model.graph.node[0].name = "adder"
    _refused(model, "ghost")


def test_a_cycle_is_refused():
    nodes = [helper.make_node("Relu", ["b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Add", ["x", "b"], ["y"], name="out")]
    _refused(_model(nodes, [_x()], [_y()]), "not a valid ONNX model|no earlier node")


@pytest.mark.parametrize("attrs, match", [
    (dict(pads=[-1, 0, 0, 0]), r"pads=\(-1, 0, 0, 0\); expected integers >= 0"),
    (dict(strides=[0, 1]), r"strides=\(0, 1\); expected integers >= 1"),
    (dict(dilations=[1, 0]), r"dilations=\(1, 0\); expected integers >= 1"),
    (dict(group=0), r"group=\(0,\); expected integers >= 1"),
    (dict(pads=[1, 1]), "2 pads; expected 4"),
])
def test_illegal_conv_attributes_are_refused_at_load(attrs, match):
    w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)], [_x()], [_y()], [w])
    message = _refused(model, match)
    assert "'conv'" in message


def test_lrn_size_zero_and_flatten_axis_out_of_range_are_refused():
    _refused(_model([helper.make_node("LRN", ["x"], ["y"], size=0)], [_x()], [_y()]), r"size=\(0,\)")
    _refused(_model([helper.make_node("Flatten", ["x"], ["y"], axis=7)], [_x()], [_y()]),
             "axis=7 for a rank-4 input")


def test_dropout_in_training_mode_is_refused():
    ratio = numpy_helper.from_array(np.array(0.5, np.float32), "ratio")
    on = numpy_helper.from_array(np.array(True), "on")
    model = _model([helper.make_node("Dropout", ["x", "ratio", "on"], ["y"])], [_x()], [_y()], [ratio, on])
    _refused(model, "training mode")
    off = numpy_helper.from_array(np.array(False), "on")
    ok = _model([helper.make_node("Dropout", ["x", "ratio", "on"], ["y"])], [_x()], [_y()], [ratio, off])
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    assert np.array_equal(lowbit.load(ok.SerializeToString()).run(x), x)


def test_constant_of_shape_that_would_allocate_gigabytes_is_refused_quickly():
    shape = numpy_helper.from_array(np.array([3, 10 ** 9], np.int64), "shape")
    model = _model([helper.make_node("ConstantOfShape", ["shape"], ["big"]),
                    helper.make_node("Add", ["x", "big"], ["y"])], [_x((1, 1))], [_y()], [shape])
    start = time.perf_counter()
    _refused(model, "would fold to 3,000,000,000 elements")
    assert time.perf_counter() - start < 5


def test_expand_that_would_allocate_gigabytes_is_refused():
    one = numpy_helper.from_array(np.ones((1,), np.float32), "one")
    shape = numpy_helper.from_array(np.array([50000, 50000], np.int64), "shape")
    model = _model([helper.make_node("Expand", ["one", "shape"], ["big"]),
                    helper.make_node("Add", ["x", "big"], ["y"])], [_x((1, 1))], [_y()], [one, shape])
    _refused(model, "would fold to 2,500,000,000 elements")


def test_folding_a_node_that_cannot_run_is_a_load_error():
    data = numpy_helper.from_array(np.ones((2, 3), np.float32), "data")
    shape = numpy_helper.from_array(np.array([4, 4], np.int64), "shape")
    model = _model([helper.make_node("Reshape", ["data", "shape"], ["r"], name="reshape"),
                    helper.make_node("Add", ["x", "r"], ["y"])], [_x((4, 4))], [_y()], [data, shape])
    _refused(model, "node 'reshape' \\(Reshape\\) cannot run on its constant inputs")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelLoadError, match="regular model file"):
        lowbit.load(str(fifo))


def _save_external(model, folder, location="weights.bin"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    copy = onnx.ModelProto()
    copy.CopyFrom(model)    # save_model rewrites the proto it is given to point at the file
    onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return path


def _conv_model():
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((3, 2, 3, 3)).astype(np.float32), "w")
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [_x()], [_y()], [w])


def test_external_data_resolves_against_the_model_folder_not_the_cwd(tmp_path, monkeypatch):
    model = _conv_model()
    path = _save_external(model, tmp_path / "model_dir")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A decoy beside the working directory must not be read.
    (elsewhere / "weights.bin").write_bytes(np.zeros(54, np.float32).tobytes())
    monkeypatch.chdir(elsewhere)
    x = np.random.default_rng(2).standard_normal((1, 2, 6, 6)).astype(np.float32)
    expected = lowbit.load(model.SerializeToString()).run(x)
    assert np.array_equal(lowbit.load(str(path)).run(x), expected)


def _with_location(path, location, length=None):
    model = onnx.load_model(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
        if entry.key == "length" and length is not None:
            entry.value = str(length)
    onnx.save_model(model, str(path))


@pytest.mark.parametrize("location, match", [
    ("../weights.bin", "relative path inside the model's folder"),
    ("/etc/passwd", "relative path inside the model's folder"),
    ("missing.bin", "external data file not found"),
])
def test_unsafe_or_missing_external_locations_are_refused(tmp_path, location, match):
    path = _save_external(_conv_model(), tmp_path / "m")
    _with_location(path, location)
    with pytest.raises(ModelLoadError, match=match):
        lowbit.load(str(path))


def test_a_symlink_leading_out_of_the_folder_is_refused(tmp_path):
    path = _save_external(_conv_model(), tmp_path / "m")
    outside = tmp_path / "outside.bin"
    os.replace(tmp_path / "m" / "weights.bin", outside)
    os.symlink(outside, tmp_path / "m" / "weights.bin")
    with pytest.raises(ModelLoadError, match="leads outside the model's folder"):
        lowbit.load(str(path))


def test_external_data_of_the_wrong_length_is_refused(tmp_path):
    path = _save_external(_conv_model(), tmp_path / "m")
    _with_location(path, "weights.bin", length=8)
    with pytest.raises(ModelLoadError, match="needs 216 bytes; its external data holds 8"):
        lowbit.load(str(path))


def test_external_data_from_bytes_is_refused_with_a_hint(tmp_path):
    path = _save_external(_conv_model(), tmp_path / "m")
    with pytest.raises(ModelLoadError, match="load the model from its .onnx path"):
        lowbit.load(path.read_bytes())


def test_deprecated_ops_still_load():
    # GroupNormalization-18 (scale and bias per group) is deprecated by the checker, not removed.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])
    scale = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "scale")
    bias = numpy_helper.from_array(np.array([0.5, -0.5], np.float32), "bias")
    model = _model([helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], num_groups=2)],
                   [x], [_y()], [scale, bias], opset=18)
    data = np.random.default_rng(0).standard_normal((1, 4, 3, 3)).astype(np.float32)
    groups = data.reshape(1, 2, -1).astype(np.float64)
    normed = (groups - groups.mean(-1, keepdims=True)) / np.sqrt(groups.var(-1, keepdims=True) + 1e-5)
    expected = normed * np.array([1.0, 2.0]).reshape(1, 2, 1) + np.array([0.5, -0.5]).reshape(1, 2, 1)
    got = lowbit.load(model.SerializeToString()).run(data)
    np.testing.assert_allclose(got.reshape(1, 2, -1), expected, rtol=1e-5, atol=1e-5)
