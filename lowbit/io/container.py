"""The .lowbit file: a zip holding ``graph.json`` and ``tensors.npz``; no pickle.

``graph.json`` describes nodes, inputs, outputs, storage encodings and
metadata; every array (constants, and array-valued attributes) lives in
``tensors.npz`` under a key that the JSON names as ``{"tensor": key}``.
Constants are kept in their storage dtype (float16, uint16 bf16 bits, fp8
codes, int8, packed bits), so the file holds the real low-bit tensors.
"""
from __future__ import annotations

import io
import json
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError, ModelSaveError
from ..graph.ir import Graph, Node, ValueInfo
from .atomic import atomic_path
from ..files import regular_file_size
from ..graph.validate import check_graph
from .schema import FORMAT, VERSION, check_document, check_encodings, check_quantization

#: Caps on the inflated members: no model lowbit runs comes near them, and a zip bomb stops there.
MAX_GRAPH_JSON_BYTES = 64 << 20
MAX_TENSOR_BYTES = 1 << 30

#: Metadata only needed while converting (import shapes, calibration ranges): not saved.
TRANSIENT_METADATA = ("static_shapes", "ranges", "calibration_seconds")
#: Entries carry a fixed timestamp, so the same model always gives the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _encode_value(value, tensors: dict, key: str):
    if isinstance(value, np.ndarray):
        tensors[key] = value
        return {"tensor": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"tuple": [_encode_value(v, tensors, f"{key}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode_value(v, tensors, f"{key}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {"dict": {k: _encode_value(v, tensors, f"{key}.{k}") for k, v in value.items()}}
    if isinstance(value, float) and not np.isfinite(value):
        return {"float": repr(value)}
    return value


def _decode_value(value, tensors):
    if isinstance(value, dict):
        if "tensor" in value:
            return tensors[value["tensor"]]
        if "tuple" in value:
            return tuple(_decode_value(v, tensors) for v in value["tuple"])
        if "dict" in value:
            return {k: _decode_value(v, tensors) for k, v in value["dict"].items()}
        if "float" in value:
            return float(value["float"])
    if isinstance(value, list):
        return [_decode_value(v, tensors) for v in value]
    return value


def _value_info_json(v: ValueInfo) -> dict:
    return {"name": v.name, "shape": None if v.shape is None else list(v.shape),
            "dtype": None if v.dtype is None else np.dtype(v.dtype).str}


def _value_info(d: dict) -> ValueInfo:
    return ValueInfo(d["name"], None if d["shape"] is None else tuple(d["shape"]),
                     None if d["dtype"] is None else np.dtype(d["dtype"]))


def save_graph(graph: Graph, path) -> None:
    """Write ``graph`` to ``path`` atomically (no partial file on error)."""
    tensors = {}
    const_keys = {}
    for i, (name, value) in enumerate(graph.constants.items()):
        key = f"c{i}"
        tensors[key] = np.asarray(value)
        const_keys[name] = key
    nodes = []
    for i, node in enumerate(graph.nodes):
        nodes.append({"op_type": node.op_type, "name": node.name, "inputs": node.inputs, "outputs": node.outputs,
                      "precision": node.precision, "fused": list(node.fused),
                      "attrs": _encode_value(node.attrs, tensors, f"a{i}"),
                      "quant": _encode_value(node.quant, tensors, f"q{i}")})
    doc = {"format": FORMAT, "version": VERSION, "name": graph.name, "opset": graph.opset,
           "inputs": [_value_info_json(v) for v in graph.inputs],
           "outputs": [_value_info_json(v) for v in graph.outputs],
           "constants": const_keys, "encodings": _encode_value(graph.encodings, tensors, "e"),
           "metadata": _encode_value({k: v for k, v in graph.metadata.items() if k not in TRANSIENT_METADATA},
                                      tensors, "m"),
           "nodes": nodes}
    buffer = _npz_bytes(tensors)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in (("graph.json", json.dumps(doc, separators=(",", ":"))),
                               ("tensors.npz", buffer)):
                zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), data, compress_type=zipfile.ZIP_DEFLATED)


def _npz_bytes(tensors: dict) -> bytes:
    """An ``.npz`` of ``tensors`` written without pickle and with fixed timestamps (same model, same bytes).

    Raises
    ------
    ModelSaveError
        An array of Python objects (only pickle could store it).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, value in tensors.items():
            value = np.asarray(value)
            if value.dtype.hasobject:
                raise ModelSaveError(f"cannot save tensor {key!r}: it is an array of Python objects; expected a "
                                     "numeric array (.lowbit files never use pickle)")
            with zf.open(zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(value), allow_pickle=False)
    return buffer.getvalue()


def is_container(path) -> bool:
    """Whether ``path`` is a regular file holding a zip (a .lowbit candidate)."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
    except (OSError, ValueError):
        return False
    return zipfile.is_zipfile(path)


def _member(zf: zipfile.ZipFile, name: str, limit: int, label: str) -> bytes:
    """One zip member's bytes, after checking its method, encryption and declared size; read with a cap."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ModelLoadError(f"{label} has no {name}; expected a zip with graph.json and tensors.npz") from None
    if info.flag_bits & 0x1 or _local_flags(zf, info) & 0x1:
        raise ModelLoadError(f"{label}: {name} is encrypted; expected a plain zip member")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelLoadError(f"{label}: {name} uses zip compression method {info.compress_type}; "
                             "expected stored or deflated")
    if info.file_size > limit:
        raise ModelLoadError(f"{label}: {name} declares {info.file_size:,} bytes; expected at most {limit:,}")
    with zf.open(info) as f:
        data = f.read(limit + 1)    # a member whose header understates its size is cut off here
    if len(data) > limit:
        raise ModelLoadError(f"{label}: {name} inflates past {limit:,} bytes")
    return data


def _local_flags(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The general-purpose flags of ``info``'s local header (zipfile reads only the central directory's)."""
    zf.fp.seek(info.header_offset)
    header = zf.fp.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    return int.from_bytes(header[6:8], "little")


def _read_tensors(data: bytes, keys: set, label: str) -> dict:
    """The arrays named ``keys`` from an ``.npz``'s bytes, without pickle, each size-checked before reading."""
    tensors = {}
    with zipfile.ZipFile(io.BytesIO(data)) as npz:
        members = {info.filename[:-4]: info for info in npz.infolist() if info.filename.endswith(".npy")}
        missing = sorted(keys - set(members))
        if missing:
            raise ModelLoadError(f"{label}: tensors.npz lacks the arrays {missing[:5]} that graph.json names")
        for key in sorted(keys):
            raw = _member(npz, members[key].filename, MAX_TENSOR_BYTES, label)
            f = io.BytesIO(raw)
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = header(f)
            if dtype.hasobject:
                raise ModelLoadError(f"{label}: array {key!r} holds Python objects; .lowbit files never use pickle")
            if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > len(raw):
                raise ModelLoadError(f"{label}: array {key!r} declares shape {shape} but holds fewer bytes")
            f.seek(0)
            tensors[key] = np.lib.format.read_array(f, allow_pickle=False)
    return tensors


def _tensor_keys(value, keys: set) -> set:
    """Every ``{"tensor": key}`` reference inside a decoded graph.json value."""
    if isinstance(value, dict):
        if set(value) == {"tensor"} and isinstance(value["tensor"], str):
            keys.add(value["tensor"])
        else:
            for v in value.values():
                _tensor_keys(v, keys)
    elif isinstance(value, list):
        for v in value:
            _tensor_keys(v, keys)
    return keys


def load_graph(path) -> Graph:
    """Read a .lowbit file, checking its structure before anything is decoded.

    Only the two members are read, each with a cap on its inflated size;
    ``graph.json`` must follow :func:`lowbit.io.schema.check_document`; only the
    arrays the document names are read from ``tensors.npz``, never with
    pickle.

    Raises
    ------
    ModelLoadError
        Missing file, not a .lowbit zip, a version this lowbit cannot read,
        or a member that is malformed, oversized or inconsistent.
    """
    path = Path(path)
    regular_file_size(path, "model")
    label = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            text = _member(zf, "graph.json", MAX_GRAPH_JSON_BYTES, label)
            try:
                doc = json.loads(text.decode("utf-8"))  # UTF-8 only: no BOM, no UTF-16/32 guessing
            except RecursionError:
                raise ModelLoadError(f"{label}: graph.json nests too deeply; expected a lowbit graph document") from None
            except (UnicodeDecodeError, ValueError) as exc:
                raise ModelLoadError(f"{label}: graph.json is not JSON ({exc})") from None
            check_document(doc, label)
            keys = _tensor_keys(doc, set()) | set(doc["constants"].values())
            tensors = _read_tensors(_member(zf, "tensors.npz", MAX_TENSOR_BYTES, label), keys, label)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, zlib.error) as exc:
        raise ModelLoadError(f"{path} is not a readable .lowbit file ({type(exc).__name__}: {exc}); expected a zip "
                             "with graph.json and tensors.npz") from None
    except ValueError as exc:   # numpy's header parser
        raise ModelLoadError(f"{path}: tensors.npz holds a malformed array ({exc})") from None
    nodes = [Node(d["op_type"], d["name"], list(d["inputs"]), list(d["outputs"]),
                  _decode_value(d["attrs"], tensors), d["precision"], tuple(d["fused"]),
                  _decode_value(d["quant"], tensors)) for d in doc["nodes"]]
    graph = Graph(nodes=nodes, inputs=[_value_info(v) for v in doc["inputs"]],
                  outputs=[_value_info(v) for v in doc["outputs"]],
                  constants={name: tensors[key] for name, key in doc["constants"].items()},
                  name=doc["name"], opset=doc["opset"], metadata=_decode_value(doc["metadata"], tensors),
                  encodings=_decode_value(doc["encodings"], tensors))
    check_graph(graph, label)
    check_quantization(graph, label)
    check_encodings(graph, label)
    return graph
