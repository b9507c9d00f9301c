"""The schema of a ``.lowbit`` file's ``graph.json``, and the checks of what it decodes to.

:func:`check_document` runs on the parsed JSON before any array is read:

* the top level is an object with ``format == "lowbit"``, an integer
  ``version`` from 1 to :data:`VERSION`, a string ``name``, an integer
  ``opset``, lists ``inputs``/``outputs`` of value infos, an object
  ``constants`` (tensor name → npz key), and ``encodings``/``metadata``;
* every value info is ``{"name": str, "shape": null | [int >= 0 | null, ...],
  "dtype": null | a numpy dtype string of a real number or bool}``;
* every node is an object with string ``op_type``, ``name``, ``precision``,
  string lists ``inputs``, ``outputs``, ``fused``, and encoded ``attrs`` and
  ``quant`` objects;
* an encoded value is ``null``, a bool, a number, a string, a list of
  encoded values, ``{"tensor": key}``, ``{"tuple": [...]}``,
  ``{"dict": {...}}``, ``{"float": "inf" | "-inf" | "nan"}`` or a plain
  object of encoded values, nested at most :data:`MAX_DEPTH` deep.

:func:`check_quantization` runs on the decoded graph: every scale (an
attribute or quantization entry whose name ends in ``scale``/``scales``) is
finite and positive, zero points are integers inside their type, and
``qmin <= qmax`` inside the output type.  Every failure is a one-line
:class:`~lowbit.errors.ModelLoadError` naming the file, the node and what was
expected.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import ModelLoadError

FORMAT = "lowbit"
VERSION = 1
MAX_DEPTH = 32
_DTYPE_KINDS = "biuf"   # bool, signed and unsigned integers, floats


def _fail(label, where, expected):
    raise ModelLoadError(f"{label}: graph.json {where}: expected {expected}")


def _string(value, label, where):
    if not isinstance(value, str):
        _fail(label, where, f"a string, got {type(value).__name__}")


def _string_list(value, label, where):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(label, where, "a list of strings")


def _encoded(value, label, where, depth=0):
    if depth > MAX_DEPTH:
        _fail(label, where, f"values nested at most {MAX_DEPTH} deep")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, numbers.Real):
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _encoded(v, label, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict) and len(value) == 1:
        (kind, inner), = value.items()
        if kind == "tensor" and isinstance(inner, str):
            return
        if kind == "tuple" and isinstance(inner, list):
            for i, v in enumerate(inner):
                _encoded(v, label, f"{where}[{i}]", depth + 1)
            return
        if kind == "dict" and isinstance(inner, dict):
            for k, v in inner.items():
                _encoded(v, label, f"{where}.{k}", depth + 1)
            return
        if kind == "float" and inner in ("inf", "-inf", "nan"):
            return
        if kind in ("tensor", "tuple", "dict", "float"):
            _fail(label, where, f'{{"{kind}": ...}} holding ' + {"tensor": "an array key", "tuple": "a list",
                                                                  "dict": "an object",
                                                                  "float": '"inf", "-inf" or "nan"'}[kind])
    if isinstance(value, dict):
        # A plain JSON object: what files written before lists were encoded element by element hold
        # inside lists (fine-tuning histories); decoded as it is.
        for k, v in value.items():
            _encoded(v, label, f"{where}.{k}", depth + 1)
        return
    _fail(label, where, 'an encoded value (null, bool, number, string, list, object)')


def _encoded_dict(value, label, where):
    if not (isinstance(value, dict) and set(value) == {"dict"} and isinstance(value["dict"], dict)):
        _fail(label, where, 'an encoded object {"dict": {...}}')
    _encoded(value, label, where)


def _value_info(value, label, where):
    if not isinstance(value, dict) or set(value) != {"name", "shape", "dtype"}:
        _fail(label, where, 'an object with "name", "shape" and "dtype"')
    _string(value["name"], label, f"{where}.name")
    shape = value["shape"]
    if shape is not None and (not isinstance(shape, list) or not all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape)):
        _fail(label, f"{where}.shape", "null or a list of non-negative integers and nulls")
    dtype = value["dtype"]
    if dtype is not None:
        try:
            ok = isinstance(dtype, str) and np.dtype(dtype).kind in _DTYPE_KINDS
        except TypeError:
            ok = False
        if not ok:
            _fail(label, f"{where}.dtype", "null or a numpy dtype string of a number or bool")


def check_document(doc, label: str) -> None:
    """Check the structure of a parsed ``graph.json`` (see the module docstring).

    Raises
    ------
    ModelLoadError
        Naming ``label``, the field and what was expected.
    """
    if not isinstance(doc, dict):
        _fail(label, "top level", "an object")
    version = doc.get("version", 0)
    if doc.get("format") != FORMAT or not isinstance(version, int) or not 1 <= version <= VERSION:
        raise ModelLoadError(f"{label}: format {doc.get('format')!r} version {version!r}; "
                             f"this lowbit reads {FORMAT} versions 1 to {VERSION}")
    for key in ("name", "opset", "inputs", "outputs", "constants", "encodings", "metadata", "nodes"):
        if key not in doc:
            _fail(label, f"field {key!r}", "present")
    _string(doc["name"], label, "name")
    if not isinstance(doc["opset"], int) or isinstance(doc["opset"], bool):
        _fail(label, "opset", "an integer")
    for key in ("inputs", "outputs"):
        if not isinstance(doc[key], list):
            _fail(label, key, "a list")
        for i, v in enumerate(doc[key]):
            _value_info(v, label, f"{key}[{i}]")
    constants = doc["constants"]
    if not isinstance(constants, dict) or not all(isinstance(v, str) for v in constants.values()):
        _fail(label, "constants", "an object mapping tensor names to array keys")
    _encoded_dict(doc["encodings"], label, "encodings")
    _encoded_dict(doc["metadata"], label, "metadata")
    if not isinstance(doc["nodes"], list):
        _fail(label, "nodes", "a list")
    fields = {"op_type", "name", "inputs", "outputs", "precision", "fused", "attrs", "quant"}
    for i, node in enumerate(doc["nodes"]):
        where = f"nodes[{i}]"
        if not isinstance(node, dict) or set(node) != fields:
            _fail(label, where, f"an object with the fields {sorted(fields)}")
        for key in ("op_type", "name", "precision"):
            _string(node[key], label, f"{where}.{key}")
        for key in ("inputs", "outputs", "fused"):
            _string_list(node[key], label, f"{where}.{key}")
        _encoded_dict(node["attrs"], label, f"{where}.attrs")
        _encoded_dict(node["quant"], label, f"{where}.quant")


_INT_RANGES = {0: (0, 255), 1: (-128, 127)}


def _scales(value):
    """The numbers inside a scale entry (a number, an array, or a dict of them)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _scales(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _scales(v)
    else:
        yield from np.asarray(value, dtype=np.float64).reshape(-1)


def _brief(value) -> str:
    """``repr(value)`` on one line, at most 80 characters (an array's repr spans lines)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def check_quantization(graph, label: str) -> None:
    """Scales finite and > 0, integer zero points inside their type, and qmin <= qmax, on every node.

    Raises
    ------
    ModelLoadError
        Naming ``label``, the node, the entry and what was expected.
    """
    for node in graph.nodes:
        entries = {**{f"quant {k}": v for k, v in node.quant.items()}, **node.attrs}
        for key, value in entries.items():
            bare = key.split(" ")[-1]
            if not (bare.endswith("scale") or bare.endswith("scales")):
                continue
            try:
                values = list(_scales(value))
            except (TypeError, ValueError):
                values = [float("nan")]
            if not values or not all(np.isfinite(v) and v > 0 for v in values):
                raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) has {key} {_brief(value)}; "
                                     "expected finite scales > 0")
        signed = node.attrs.get("y_signed", node.attrs.get("signed"))
        if signed is not None and (not isinstance(signed, numbers.Integral) or signed not in (0, 1)):
            raise ModelLoadError(f"{label}: node '{node.name}' has signed flag {_brief(signed)}; expected 0 or 1")
        lo, hi = _INT_RANGES[int(signed)] if signed is not None else (-128, 255)
        if "qmin" in node.attrs or "qmax" in node.attrs:
            qmin, qmax = node.attrs.get("qmin", lo), node.attrs.get("qmax", hi)
            if not all(isinstance(q, numbers.Integral) for q in (qmin, qmax)) or not lo <= qmin <= qmax <= hi:
                raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) clamps to "
                                     f"[{_brief(qmin)}, {_brief(qmax)}]; "
                                     f"expected integers with {lo} <= qmin <= qmax <= {hi}")
        for key in ("zero_point", "y_zero_point"):
            if key in node.attrs:
                zp = node.attrs[key]
                if not isinstance(zp, numbers.Integral) or not lo <= zp <= hi:
                    raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) has {key}={_brief(zp)}; "
                                         f"expected an integer in [{lo}, {hi}]")
        for key in ("x_zero_point", "a_zero_point"):
            if key in node.attrs:
                zp = node.attrs[key]
                if not isinstance(zp, numbers.Integral) or not -128 <= zp <= 255:
                    raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) has {key}={_brief(zp)}; "
                                         "expected an integer in [-128, 255]")


def check_encodings(graph, label: str) -> None:
    """Each stored constant's encoding names its format, and a float format its finite scale > 0.

    Raises
    ------
    ModelLoadError
        Naming ``label``, the constant and what was expected.
    """
    for name, encoding in graph.encodings.items():
        if name not in graph.constants:
            raise ModelLoadError(f"{label}: encoding given for '{name}', which is not a stored constant")
        if not isinstance(encoding, dict) or not isinstance(encoding.get("precision"), str):
            raise ModelLoadError(f"{label}: constant '{name}' has encoding {_brief(encoding)}; expected an object "
                                 'with a "precision"')
        precision = encoding["precision"]
        if precision.startswith(("fp", "bf")):
            scale = encoding.get("scale")
            if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not (np.isfinite(scale) and scale > 0):
                raise ModelLoadError(f"{label}: constant '{name}' ({precision}) has scale {_brief(scale)}; "
                                     "expected a finite scale > 0")
        else:
            shape = encoding.get("shape")
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ModelLoadError(f"{label}: constant '{name}' ({precision}) has shape {_brief(shape)}; "
                                     "expected a list of non-negative integers")
            bits = encoding.get("bits", 1 if precision == "binary" else None)
            if not isinstance(bits, int) or not 1 <= bits <= 8:
                raise ModelLoadError(f"{label}: constant '{name}' ({precision}) has bits {_brief(bits)}; "
                                     "expected 1 to 8")
            needed = -(-int(np.prod(shape, dtype=np.int64)) * bits // 8)
            if np.asarray(graph.constants[name]).nbytes < needed:
                raise ModelLoadError(f"{label}: constant '{name}' packs {np.asarray(graph.constants[name]).nbytes} "
                                     f"bytes; its shape {shape} at {bits} bits needs {needed}")
