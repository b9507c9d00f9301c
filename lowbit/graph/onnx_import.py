"""ONNX → lowbit Graph.

The only module that touches onnx objects on the way in.  It reads the file,
runs ONNX shape inference, converts initializers, Constant nodes and
attributes to numpy/Python values, and rewrites the opset-dependent forms of
ops (opsets 7 to 21) into one canonical form, the newest:

* Clip (< 11) ``min``/``max`` attributes, Pad (< 11) ``pads``/``value``,
  Squeeze/Unsqueeze (< 13) ``axes`` and Split (< 13) ``split`` become
  constant inputs;
* Softmax/LogSoftmax/Hardmax (< 13) keep their 2-D coercion semantics through the
  lowbit attribute ``legacy_flatten=1``;
* old IR files that list initializers among the graph inputs are read with
  those names as constants.

Unsupported operators are reported all at once, at load time.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelLoadError, UnsupportedOpError
from ..files import read_regular_file
from .external_data import load_external_data
from .ir import Graph, Node, ValueInfo
from .validate import ONNX_DOMAINS, check_graph, check_proto, check_types


def read_model_proto(source) -> onnx.ModelProto:
    """Read an ONNX ModelProto from a path, bytes, or a ModelProto (regular files only, external data
    resolved inside the model's folder: see :func:`read_model`)."""
    return _read(source)[0]


def read_model(source):
    """``(model, label)``: the ModelProto of a path, bytes or ModelProto, read safely, and its name for messages.

    Pass both to :func:`import_onnx` to import the model without reading it again.
    """
    return _read(source)


def _read(source):
    """``(model, label)``: the ModelProto, its external data loaded, and a name for messages."""
    if isinstance(source, onnx.ModelProto):
        return source, "the given model"
    folder = None
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), "the given bytes"
    else:
        path = Path(os.fspath(source))
        data, label, folder = read_regular_file(path, "model"), str(path), path.parent
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeWarning-like errors
        raise ModelLoadError(f"{label} is not an ONNX model ({type(exc).__name__}); expected an .onnx protobuf file") from None
    if not model.graph.node or not model.opset_import:
        raise ModelLoadError(f"{label} is not an ONNX model (no graph nodes or opset found); expected an .onnx protobuf file")
    load_external_data(model, folder, label)
    return model, label


def numpy_dtype(elem_type: int):
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def value_info(proto) -> ValueInfo:
    """A graph input, output or value_info entry as a :class:`ValueInfo`.

    Exporters write a dynamic dim as a ``dim_param`` name, as -1 or 0, or
    leave it unset; each of these becomes ``None``.  No shape at all gives
    ``shape=None`` (rank unknown).
    """
    ttype = proto.type.tensor_type
    shape = None
    if ttype.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                      for d in ttype.shape.dim)
    return ValueInfo(proto.name, shape, numpy_dtype(ttype.elem_type) if ttype.elem_type else None)


def attribute_value(attr):
    """An ONNX AttributeProto as a plain Python / numpy value."""
    kind = attr.type
    A = onnx.AttributeProto
    if kind == A.FLOAT:
        return float(attr.f)
    if kind == A.INT:
        return int(attr.i)
    if kind == A.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if kind == A.TENSOR:
        return tensor_value(attr.t, f"attribute {attr.name!r}")
    if kind == A.FLOATS:
        return tuple(float(v) for v in attr.floats)
    if kind == A.INTS:
        return tuple(int(v) for v in attr.ints)
    if kind == A.STRINGS:
        return tuple(s.decode("utf-8", errors="replace") for s in attr.strings)
    raise ValueError(f"attribute {attr.name!r} of type {A.AttributeType.Name(kind)}")


def tensor_value(tensor, label: str) -> np.ndarray:
    """A TensorProto as a numpy array, or a one-line ModelLoadError when its data does not match its
    declared type and dims (raw data cut short, a dim of -5, an unknown element type)."""
    if any(d < 0 for d in tensor.dims):
        raise ModelLoadError(f"{label}: tensor '{tensor.name}' has dims {tuple(tensor.dims)}; expected dims >= 0")
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # onnx raises ValueError, TypeError or KeyError for inconsistent tensors
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{label}: tensor '{tensor.name}' (type {tensor.data_type}, dims {tuple(tensor.dims)}) "
                             f"cannot be read: {message[:160]}") from None


def constant_node_value(node, attrs: dict) -> np.ndarray:
    if "value" in attrs:
        return np.asarray(attrs["value"])
    if "value_float" in attrs:
        return np.array(attrs["value_float"], dtype=np.float32)
    if "value_floats" in attrs:
        return np.array(attrs["value_floats"], dtype=np.float32)
    if "value_int" in attrs:
        return np.array(attrs["value_int"], dtype=np.int64)
    if "value_ints" in attrs:
        return np.array(attrs["value_ints"], dtype=np.int64)
    raise ValueError("Constant node without a numeric value")


class _Canonicalizer:
    """Rewrites opset-dependent attribute forms into constant inputs."""

    def __init__(self, opset: int, constants: dict):
        self.opset = opset
        self.constants = constants

    def add_constant(self, node_name: str, label: str, value) -> str:
        name = f"{node_name}::{label}"
        self.constants[name] = np.asarray(value)
        return name

    def __call__(self, op: str, name: str, inputs: list, attrs: dict) -> None:
        opset = self.opset
        if op == "Clip" and opset < 11:
            lo = attrs.pop("min", None)
            hi = attrs.pop("max", None)
            inputs[1:] = [
                self.add_constant(name, "min", np.float32(lo)) if lo is not None else "",
                self.add_constant(name, "max", np.float32(hi)) if hi is not None else "",
            ]
        elif op == "Pad" and opset < 11:
            pads = attrs.pop("pads", attrs.pop("paddings", ()))
            value = attrs.pop("value", 0.0)
            inputs[1:] = [self.add_constant(name, "pads", np.array(pads, dtype=np.int64)),
                          self.add_constant(name, "value", np.float32(value))]
        # Reduce* keep an ``axes`` attribute (before opset 13 / 18) as written: their kernels take both forms.
        elif op in ("Squeeze", "Unsqueeze") and opset < 13 and "axes" in attrs:
            inputs[1:] = [self.add_constant(name, "axes", np.array(attrs.pop("axes"), dtype=np.int64))]
        elif op == "Split" and opset < 13 and "split" in attrs:
            inputs[1:] = [self.add_constant(name, "split", np.array(attrs.pop("split"), dtype=np.int64))]
        elif op == "Resize" and opset < 11:
            # Resize-10 is (X, scales) with asymmetric coordinates; onnxruntime rounds its nearest
            # source index down on an enlarged axis and up on a shrunk one (equal on a kept one).
            scales = self.constants.get(inputs[1]) if len(inputs) > 1 else None
            shrinks = scales is not None and np.all(np.asarray(scales) <= 1)
            inputs[1:] = ["", inputs[1] if len(inputs) > 1 else ""]
            attrs["coordinate_transformation_mode"] = "asymmetric"
            attrs["nearest_mode"] = "ceil" if shrinks else "floor"
        if op == "Split" and (len(inputs) < 2 or not inputs[1]) and "num_outputs" not in attrs:
            attrs["num_outputs"] = self.n_outputs  # before opset 18: equal parts, one per output
        elif op in ("Softmax", "LogSoftmax", "Hardmax") and opset < 13:
            attrs.setdefault("axis", 1)
            attrs["legacy_flatten"] = 1
        elif op == "BatchNormalization":
            attrs.pop("is_test", None)
            attrs.pop("consumed_inputs", None)
        elif op == "Dropout":
            attrs.pop("is_test", None)
        elif op == "GroupNormalization" and opset < 21:
            # Opsets 18-20: scale and bias hold one value per group (21: per channel).  The channel
            # count is not known here, so the values are not repeated; the kernel reads this flag.
            attrs["per_group"] = 1


def _structural_problem(op: str, node) -> str | None:
    """A supported op used in a form lowbit does not run, or None."""
    outputs = [o for o in node.output if o]
    if op == "MaxPool" and len(outputs) > 1:
        return "MaxPool with an Indices output"
    if op == "BatchNormalization" and len(outputs) > 1:
        return "BatchNormalization in training mode"
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            return f"{op} with a subgraph"
    return None


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with ONNX shape inference applied (its value_info also feeds :func:`check_types`)."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:
        return model  # shapes are a convenience; the executor does not depend on them


def import_onnx(source, supported_ops, *, label=None) -> Graph:
    """Convert an ONNX model into a lowbit :class:`Graph`.

    Parameters
    ----------
    source : str, os.PathLike, bytes or onnx.ModelProto
        The model.
    supported_ops : collection of str
        Op types lowbit has kernels for; any other op is reported.

    Raises
    ------
    ModelLoadError
        Missing or unreadable file, not an ONNX model, opset out of range.
    UnsupportedOpError
        Lists every unsupported op type with its node names.
    """
    model, read_label = _read(source)
    label = label or read_label
    opset = check_proto(model, label)
    for proto in list(model.graph.input) + list(model.graph.output):
        if proto.type.HasField("tensor_type") and not proto.type.tensor_type.elem_type:
            raise ModelLoadError(f"{label}: graph input or output '{proto.name}' declares a tensor without an "
                                 "element type; expected e.g. float32")
    model = _inferred(model)
    check_types(model, label)
    g = model.graph

    constants = {}
    for init in g.initializer:
        constants[init.name] = tensor_value(init, label)
    inputs = [value_info(v) for v in g.input if v.name not in constants]
    outputs = [value_info(v) for v in g.output]
    shapes = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        info = value_info(v)
        if info.shape is not None:
            shapes[info.name] = info.shape

    canonicalize = _Canonicalizer(opset, constants)
    nodes, problems, taken = [], {}, set()
    for index, proto in enumerate(g.node):
        op = proto.op_type
        name = proto.name or f"{op}_{index}"
        while name in taken:
            name = f"{name}_{index}"
        taken.add(name)
        if proto.domain not in ONNX_DOMAINS:
            problems.setdefault(f"{proto.domain}.{op}", []).append(name)
            continue
        problem = _structural_problem(op, proto) if op in supported_ops else op
        if problem:
            problems.setdefault(problem, []).append(name)
            continue
        try:
            attrs = {a.name: attribute_value(a) for a in proto.attribute}
        except ValueError as exc:
            raise ModelLoadError(f"{label}: node '{name}' ({op}): {exc}") from None
        if op == "Constant":
            try:
                constants[proto.output[0]] = constant_node_value(proto, attrs)
            except ValueError as exc:
                raise ModelLoadError(f"{label}: node '{name}' (Constant): {exc}") from None
            continue
        node_inputs = list(proto.input)
        canonicalize.n_outputs = len(proto.output)
        canonicalize(op, name, node_inputs, attrs)
        while node_inputs and node_inputs[-1] == "":
            node_inputs.pop()
        nodes.append(Node(op, name, node_inputs, list(proto.output), attrs))

    if problems:
        listed = "; ".join(f"{op} (nodes: {', '.join(names)})" for op, names in sorted(problems.items()))
        raise UnsupportedOpError(f"unsupported operators: {listed}")

    graph = Graph(nodes=nodes, inputs=inputs, outputs=outputs, constants=constants,
                  name=g.name or "graph", opset=opset)
    graph.metadata["static_shapes"] = shapes
    check_graph(graph, label)
    graph.metadata["producer"] = f"{model.producer_name} {model.producer_version}".strip()
    return graph
