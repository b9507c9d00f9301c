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
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError
from ..graph.ir import Graph, Node, ValueInfo
from .atomic import atomic_path

FORMAT = "lowbit"
#: Metadata only needed while converting (import shapes, calibration ranges): not saved.
TRANSIENT_METADATA = ("static_shapes", "ranges", "calibration_seconds")
#: Entries carry a fixed timestamp, so the same model always gives the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
VERSION = 1


def _encode_value(value, tensors: dict, key: str):
    if isinstance(value, np.ndarray):
        tensors[key] = value
        return {"tensor": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"tuple": [_encode_value(v, tensors, f"{key}.{i}") for i, v in enumerate(value)]}
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
    buffer = io.BytesIO()
    np.savez(buffer, **tensors)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in (("graph.json", json.dumps(doc, separators=(",", ":"))),
                               ("tensors.npz", buffer.getvalue())):
                zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), data, compress_type=zipfile.ZIP_DEFLATED)


def is_container(path) -> bool:
    path = Path(path)
    return path.is_file() and zipfile.is_zipfile(path)


def load_graph(path) -> Graph:
    """Read a .lowbit file.

    Raises
    ------
    ModelLoadError
        Missing file, not a .lowbit zip, or a version this lowbit cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            doc = json.loads(zf.read("graph.json"))
            with np.load(io.BytesIO(zf.read("tensors.npz")), allow_pickle=False) as npz:
                tensors = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{path} is not a readable .lowbit file ({exc}); expected a zip with graph.json "
                             "and tensors.npz") from None
    if doc.get("format") != FORMAT or doc.get("version", 0) > VERSION:
        raise ModelLoadError(f"{path}: format {doc.get('format')!r} version {doc.get('version')}; "
                             f"this lowbit reads {FORMAT} up to version {VERSION}")
    nodes = [Node(d["op_type"], d["name"], list(d["inputs"]), list(d["outputs"]),
                  _decode_value(d["attrs"], tensors), d["precision"], tuple(d["fused"]),
                  _decode_value(d["quant"], tensors)) for d in doc["nodes"]]
    return Graph(nodes=nodes, inputs=[_value_info(v) for v in doc["inputs"]],
                 outputs=[_value_info(v) for v in doc["outputs"]],
                 constants={name: tensors[key] for name, key in doc["constants"].items()},
                 name=doc["name"], opset=doc["opset"], metadata=_decode_value(doc["metadata"], tensors),
                 encodings=_decode_value(doc["encodings"], tensors))
