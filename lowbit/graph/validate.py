"""Load-time checks of an imported model, before anything runs.

Two stages:

* :func:`check_proto`, on the ONNX ModelProto: the default opset is one lowbit
  reads (7 to 21), the IR version one onnx knows, every node passes
  ``onnx.checker.check_node`` against its op schema (input and output counts,
  attribute names, types and presence), and no initializer has a type lowbit
  cannot compute with (complex numbers would be truncated, strings have no
  meaning in a CNN);
* :func:`check_graph`, on lowbit's :class:`~lowbit.graph.ir.Graph`: every
  tensor a node reads has a producer earlier in the graph (so there are no
  cycles), every graph output is produced, and the attributes whose range
  the kernels rely on (window geometry, group, LRN size, Flatten axis,
  Dropout's training mode) are legal.

Each problem raises :class:`~lowbit.errors.ModelLoadError` with one line naming
the model, the node and what was expected.
"""
from __future__ import annotations

import numpy as np
import onnx

from ..errors import ModelLoadError
from .ir import Graph

MIN_OPSET, MAX_OPSET = 7, 21
ONNX_DOMAINS = ("", "ai.onnx")

_REFUSED_TENSOR_TYPES = {
    onnx.TensorProto.COMPLEX64: "complex64",
    onnx.TensorProto.COMPLEX128: "complex128",
    onnx.TensorProto.STRING: "string",
}
_WINDOW_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool")


def check_proto(model: onnx.ModelProto, label: str) -> int:
    """Check the opset, the ONNX checker and the initializer types; return the default opset.

    Raises
    ------
    ModelLoadError
        Naming ``label`` and the first problem found.
    """
    opsets = [int(e.version) for e in model.opset_import if e.domain in ONNX_DOMAINS]
    if not opsets:
        raise ModelLoadError(f"{label} imports no default ONNX opset; expected ai.onnx opset {MIN_OPSET} to {MAX_OPSET}")
    opset = opsets[0]
    if opset < MIN_OPSET:
        raise ModelLoadError(f"{label}: model opset {opset} is too old; lowbit reads opsets {MIN_OPSET} to {MAX_OPSET} "
                             "(upgrade it with onnx.version_converter)")
    if opset > MAX_OPSET:
        raise ModelLoadError(f"{label}: model opset {opset} is newer than lowbit reads; expected opset {MIN_OPSET} to "
                             f"{MAX_OPSET} (convert it with onnx.version_converter)")
    for init in model.graph.initializer:
        if init.data_type in _REFUSED_TENSOR_TYPES:
            raise ModelLoadError(f"{label}: initializer '{init.name}' is {_REFUSED_TENSOR_TYPES[init.data_type]}; "
                                 "expected a real numeric tensor")
    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        raise ModelLoadError(f"{label}: IR version {model.ir_version} is outside the range this onnx reads "
                             f"(3 to {onnx.IR_VERSION})")
    _check_nodes_against_schemas(model, label)
    return opset


def _check_nodes_against_schemas(model: onnx.ModelProto, label: str) -> None:
    """Every default-domain node against its op schema: input and output counts, attribute names,
    types and presence.  (The whole-model checker is not used: it also demands declared shapes on
    the graph outputs, which exporters and onnxruntime do without.)"""
    context = onnx.checker.C.CheckerContext()
    context.ir_version = model.ir_version
    context.opset_imports = {e.domain: int(e.version) for e in model.opset_import}
    for index, node in enumerate(model.graph.node):
        if node.domain not in ONNX_DOMAINS:
            continue  # reported as unsupported by the importer
        try:
            onnx.checker.check_node(node, context)
        except (onnx.checker.ValidationError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            if "is deprecated in domain_version" in first:
                # A deprecated op (Upsample after opset 9, GroupNormalization-18) still has a definition
                # and exporters still write it; onnxruntime runs it, and so does lowbit.
                continue
            name = node.name or f"{node.op_type}_{index}"
            raise ModelLoadError(f"{label}: node '{name}' ({node.op_type}) does not follow the ONNX spec: "
                                 f"{first}") from None


def check_graph(graph: Graph, label: str) -> None:
    """Check producers, graph outputs and attribute ranges of an imported graph.

    Raises
    ------
    ModelLoadError
        Naming ``label``, the node and what was expected.
    """
    known = set(graph.constants) | {info.name for info in graph.inputs}
    for node in graph.nodes:
        for name in node.inputs:
            if name and name not in known:
                raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) reads '{name}', which no earlier "
                                     "node, input or initializer produces; expected a topologically sorted graph")
        _check_attributes(node, graph, label)
        known.update(o for o in node.outputs if o)
    for name in graph.output_names():
        if name not in known:
            raise ModelLoadError(f"{label}: graph output '{name}' is produced by no node, input or initializer")


def _ints(node, key, label, *, low, count=None):
    value = node.attrs.get(key)
    if value is None:
        return None
    values = [value] if isinstance(value, (int, np.integer)) else list(value)
    if any(not isinstance(v, (int, np.integer)) or v < low for v in values):
        raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) has {key}={tuple(values)}; "
                             f"expected integers >= {low}")
    if count is not None and len(values) != count:
        raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) has {len(values)} {key}; "
                             f"expected {count}")
    return values


def _check_attributes(node, graph: Graph, label: str) -> None:
    op = node.op_type
    if op in _WINDOW_OPS:
        kernel = _ints(node, "kernel_shape", label, low=1)
        rank = len(kernel) if kernel is not None else None
        if rank is None and op in ("Conv", "ConvTranspose") and len(node.inputs) > 1:
            w = graph.constants.get(node.inputs[1])
            rank = w.ndim - 2 if w is not None and w.ndim >= 3 else None
        if rank is None and op != "Conv" and op != "ConvTranspose":
            raise ModelLoadError(f"{label}: node '{node.name}' ({op}) has no kernel_shape; the attribute is required")
        for key in ("strides", "dilations"):
            _ints(node, key, label, low=1, count=rank)
        _ints(node, "pads", label, low=0, count=None if rank is None else 2 * rank)
        if op in ("Conv", "ConvTranspose"):
            _ints(node, "group", label, low=1)
    elif op == "LRN":
        _ints(node, "size", label, low=1)
    elif op == "Dropout":
        training = node.inputs[2] if len(node.inputs) > 2 else ""
        if training and (training not in graph.constants or bool(np.asarray(graph.constants[training]).any())):
            raise ModelLoadError(f"{label}: node '{node.name}' (Dropout) runs in training mode; lowbit runs "
                                 "inference only (expected training_mode absent or false)")
    elif op == "Flatten":
        axis = node.attrs.get("axis", 1)
        rank = _rank_of(graph, node.inputs[0])
        if rank is not None and not -rank <= axis <= rank:
            raise ModelLoadError(f"{label}: node '{node.name}' (Flatten) has axis={axis} for a rank-{rank} input; "
                                 f"expected -{rank} <= axis <= {rank}")


def _rank_of(graph: Graph, name: str):
    if name in graph.constants:
        return np.ndim(graph.constants[name])
    shape = graph.metadata.get("static_shapes", {}).get(name)
    for info in graph.inputs:
        if info.name == name and info.shape is not None:
            shape = info.shape
    return None if shape is None else len(shape)
