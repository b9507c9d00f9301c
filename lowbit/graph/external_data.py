"""ONNX external data, resolved against the model file's folder and never outside it.

An initializer stored outside the ``.onnx`` file names a ``location``
(relative to the model's folder, per the ONNX spec), an ``offset`` and a
``length``.  lowbit reads it only when the location is a relative path that
stays inside that folder (no ``..``, no absolute path, no symbolic link
leading out), names a regular file, and the byte range lies inside the file
and holds exactly the tensor's declared size.  The current directory never
plays a part.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import onnx

from ..errors import ModelLoadError
from ..files import regular_file_size


def _tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t


def load_external_data(model: onnx.ModelProto, folder, label: str) -> None:
    """Read every external initializer of ``model`` from ``folder`` into the proto, in place.

    Raises
    ------
    ModelLoadError
        The model came without a folder (bytes), or a location is unsafe,
        missing, or too short for its tensor.
    """
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        if folder is None:
            raise ModelLoadError(f"{label}: tensor '{tensor.name}' keeps its data in an external file; "
                                 "load the model from its .onnx path so that the file can be found beside it")
        entries = {e.key: e.value for e in tensor.external_data}
        tensor.raw_data = _read_range(Path(folder), entries, tensor, label)
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def _read_range(folder: Path, entries: dict, tensor, label: str) -> bytes:
    location = entries.get("location", "")
    rel = PurePosixPath(location.replace("\\", "/"))
    if not location or rel.is_absolute() or ".." in rel.parts or ":" in location:
        raise ModelLoadError(f"{label}: tensor '{tensor.name}' has external location {location!r}; expected a "
                             "relative path inside the model's folder")
    base = folder.resolve()
    path = (base / Path(*rel.parts)).resolve()
    if base not in path.parents:
        raise ModelLoadError(f"{label}: tensor '{tensor.name}' external location {location!r} leads outside the "
                             "model's folder")
    size = regular_file_size(path, "external data")
    try:
        offset = int(entries.get("offset", 0))
        length = int(entries["length"]) if "length" in entries else size - offset
    except ValueError:
        raise ModelLoadError(f"{label}: tensor '{tensor.name}' has a non-integer external offset or length") from None
    count = int(np.prod(tensor.dims, dtype=np.int64))
    if tensor.data_type in _FOUR_BIT:
        expected = (count + 1) // 2          # two 4-bit values per byte
    else:
        itemsize = _itemsize(tensor.data_type)
        expected = count * itemsize if itemsize else None
    if offset < 0 or length < 0 or offset + length > size:
        raise ModelLoadError(f"{label}: tensor '{tensor.name}' reads bytes {offset}..{offset + length} of {location!r}, "
                             f"which has {size}")
    if expected is not None and length != expected:
        raise ModelLoadError(f"{label}: tensor '{tensor.name}' of shape {tuple(tensor.dims)} needs {expected} bytes; "
                             f"its external data holds {length}")
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


_FOUR_BIT = {getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, name)}


def _itemsize(data_type: int):
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except Exception:
        return None
