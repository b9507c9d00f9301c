"""A .lowbit file is checked before it is trusted: members, sizes, schema, quantization parameters."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import lowbit
from lowbit.errors import ModelLoadError, ModelSaveError
from lowbit.io import container

ROOT_MODEL = "models/deep_convnet.onnx"


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
    data = np.load("lowbit/data/mnist.npz")
    x = (data["x_train"][:32].astype(np.float32) / 255)[:, None]
    path = tmp_path_factory.mktemp("int8") / "model.lowbit"
    lowbit.save(lowbit.quantize(lowbit.load(ROOT_MODEL), "int8", calibration=x), path)
    return path


@pytest.fixture(scope="module")
def fp8_file(tmp_path_factory):
    data = np.load("lowbit/data/mnist.npz")
    x = (data["x_train"][:32].astype(np.float32) / 255)[:, None]
    path = tmp_path_factory.mktemp("fp8") / "model.lowbit"
    lowbit.save(lowbit.quantize(lowbit.load(ROOT_MODEL), "fp8-e4m3", calibration=x), path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("graph.json")), zf.read("tensors.npz")


def _write(path, graph_json, npz, *, json_info=None, npz_info=None, extra=()):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(json_info or zipfile.ZipInfo("graph.json"), graph_json, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(npz_info or zipfile.ZipInfo("tensors.npz"), npz, compress_type=zipfile.ZIP_DEFLATED)
        for name, data in extra:
            zf.writestr(name, data)


def _mutated(src, dst, mutate):
    doc, npz = _members(src)
    mutate(doc)
    _write(dst, json.dumps(doc), npz)
    return dst


def _refused(path, match):
    with pytest.raises(ModelLoadError, match=match) as info:
        lowbit.load(str(path))
    assert "\n" not in str(info.value)


def test_round_trip_is_byte_deterministic_and_pickle_free(int8_file, tmp_path):
    again = tmp_path / "again.lowbit"
    lowbit.save(lowbit.load(str(int8_file)), again)
    assert again.read_bytes() == int8_file.read_bytes()
    _, npz = _members(int8_file)
    with np.load(io.BytesIO(npz), allow_pickle=False) as arrays:
        assert all(arrays[k].dtype != object for k in arrays.files)


def _node_where(doc, op_type):
    return next(n for n in doc["nodes"] if n["op_type"] == op_type)


@pytest.mark.parametrize("value", [float("nan"), -0.5, 0.0, None, "big"])
def test_bad_quantize_scales_are_refused(int8_file, tmp_path, value):
    def mutate(doc):
        _node_where(doc, "QuantizeLinear")["attrs"]["dict"]["scale"] = (
            {"float": "nan"} if isinstance(value, float) and value != value else value)
    _refused(_mutated(int8_file, tmp_path / "m.lowbit", mutate), "expected finite scales > 0")


def test_clamp_range_and_zero_points_are_checked(int8_file, tmp_path):
    def inverted(doc):
        attrs = _node_where(doc, "Conv")["attrs"]["dict"]
        attrs["qmin"], attrs["qmax"] = 200, 100
    _refused(_mutated(int8_file, tmp_path / "a.lowbit", inverted), "qmin <= qmax")

    def zero_point(doc):
        _node_where(doc, "QuantizeLinear")["attrs"]["dict"]["zero_point"] = 4000
    _refused(_mutated(int8_file, tmp_path / "b.lowbit", zero_point), "zero_point=4000")


def test_a_float8_constant_without_its_scale_is_refused(fp8_file, tmp_path):
    def mutate(doc):
        first = next(iter(doc["encodings"]["dict"].values()))
        del first["dict"]["scale"]
    _refused(_mutated(fp8_file, tmp_path / "m.lowbit", mutate), "expected a finite scale > 0")


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("nodes"), "field 'nodes': expected present"),
    (lambda d: d.__setitem__("nodes", {"x": 1}), "nodes: expected a list"),
    (lambda d: d["nodes"][0].__setitem__("inputs", "input"), r"nodes\[0\].inputs: expected a list of strings"),
    (lambda d: d["nodes"][0].__setitem__("op_type", 7), r"nodes\[0\].op_type: expected a string"),
    (lambda d: d["inputs"][0].__setitem__("dtype", "O"), r"inputs\[0\].dtype"),
    (lambda d: d["inputs"][0].__setitem__("shape", [-3, 1]), r"inputs\[0\].shape"),
    (lambda d: d.__setitem__("version", 99), "version 99"),
    (lambda d: d["nodes"][0]["attrs"]["dict"].__setitem__("pads", {"tensor": 3}), r'\{"tensor": \.\.\.\} holding'),
    (lambda d: d["nodes"][0]["attrs"]["dict"].__setitem__("pads", {"float": "big"}), r'\{"float": \.\.\.\} holding'),
])
def test_schema_violations_are_refused(int8_file, tmp_path, mutate, match):
    _refused(_mutated(int8_file, tmp_path / "m.lowbit", mutate), match)


def test_unknown_precision_op_and_missing_tensor_are_load_errors(int8_file, tmp_path):
    _refused(_mutated(int8_file, tmp_path / "a.lowbit", lambda d: d["nodes"][1].__setitem__("precision", "int9")),
             "unknown precision 'int9'")
    _refused(_mutated(int8_file, tmp_path / "b.lowbit", lambda d: d["nodes"][1].__setitem__("op_type", "Warp")),
             "no kernel for Warp")
    _refused(_mutated(int8_file, tmp_path / "c.lowbit", lambda d: d["nodes"][1]["inputs"].__setitem__(0, "ghost")),
             "reads 'ghost', which no earlier node")
    _refused(_mutated(int8_file, tmp_path / "d.lowbit",
                      lambda d: d["constants"].__setitem__(next(iter(d["constants"])), "nowhere")),
             "lacks the arrays")


def test_deeply_nested_json_is_refused(int8_file, tmp_path):
    _, npz = _members(int8_file)
    path = tmp_path / "deep.lowbit"
    _write(path, "[" * 200000 + "]" * 200000, npz)
    _refused(path, "graph.json")


def test_members_over_their_caps_are_refused(int8_file, tmp_path, monkeypatch):
    doc, npz = _members(int8_file)
    monkeypatch.setattr(container, "MAX_GRAPH_JSON_BYTES", 1000)
    path = tmp_path / "padded.lowbit"
    _write(path, json.dumps(doc) + " " * 5000, npz)
    _refused(path, "graph.json declares")
    monkeypatch.setattr(container, "MAX_GRAPH_JSON_BYTES", 64 << 20)
    monkeypatch.setattr(container, "MAX_TENSOR_BYTES", len(npz) - 1)
    _refused(int8_file, "tensors.npz declares")


def test_encrypted_and_unknown_compression_members_are_refused(int8_file, tmp_path):
    doc, npz = _members(int8_file)
    _write(tmp_path / "enc.lowbit", json.dumps(doc), npz)
    raw = bytearray((tmp_path / "enc.lowbit").read_bytes())
    # Set the "encrypted" flag of graph.json (the first member) in its local and central headers.
    raw[6] |= 0x1
    central = raw.index(b"PK\x01\x02")
    raw[central + 8] |= 0x1
    (tmp_path / "enc.lowbit").write_bytes(bytes(raw))
    _refused(tmp_path / "enc.lowbit", "encrypted")
    with zipfile.ZipFile(tmp_path / "bz.lowbit", "w") as zf:
        zf.writestr("graph.json", json.dumps(doc), compress_type=zipfile.ZIP_BZIP2)
        zf.writestr("tensors.npz", npz)
    _refused(tmp_path / "bz.lowbit", "compression method 12")


def test_object_arrays_in_the_npz_are_refused_and_never_unpickled(int8_file, tmp_path):
    doc, npz = _members(int8_file)
    key = next(iter(doc["constants"].values()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(npz)) as src, zipfile.ZipFile(buffer, "w") as dst:
        for item in src.infolist():
            if item.filename == f"{key}.npy":
                f = io.BytesIO()
                np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
                dst.writestr(item.filename, f.getvalue())
            else:
                dst.writestr(item, src.read(item))
    path = tmp_path / "obj.lowbit"
    _write(path, json.dumps(doc), buffer.getvalue())
    _refused(path, "holds Python objects")


def test_unnamed_npz_members_are_never_read(int8_file, tmp_path):
    doc, npz = _members(int8_file)
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(npz)) as src, zipfile.ZipFile(buffer, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("junk.npy", b"not an array at all")
    path = tmp_path / "junk.lowbit"
    _write(path, json.dumps(doc), buffer.getvalue())
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert np.array_equal(lowbit.load(str(path)).run(x), lowbit.load(str(int8_file)).run(x))


def test_save_refuses_object_arrays_and_leaves_nothing(int8_file, tmp_path):
    model = lowbit.load(str(int8_file))
    model.graph.metadata["labels"] = np.array(["cat", None], dtype=object)
    target = tmp_path / "out.lowbit"
    with pytest.raises(ModelSaveError, match="array of Python objects"):
        lowbit.save(model, target)
    assert list(tmp_path.iterdir()) == []
