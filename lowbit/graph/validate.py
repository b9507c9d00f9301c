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
    for entry in model.opset_import:
        if not 0 <= entry.version < 2 ** 31:
            raise ModelLoadError(f"{label}: opset import {entry.domain or 'ai.onnx'} version {entry.version} is not "
                                 "a version number; expected 0 to 2**31 - 1")
    opsets = [int(e.version) for e in model.opset_import if e.domain in ONNX_DOMAINS]
    if not opsets:
        raise ModelLoadError(f"{label} imports no default ONNX opset; expected ai.onnx opset {MIN_OPSET} to {MAX_OPSET}")
    if len(opsets) > 1:
        raise ModelLoadError(f"{label} imports the default ONNX opset {len(opsets)} times ({opsets}); expected once")
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
        except UnicodeDecodeError:
            name = f"{node.op_type}_{index}" if isinstance(node.op_type, str) else f"node {index}"
            raise ModelLoadError(f"{label}: node '{name}' holds a name or string that is not UTF-8; expected an "
                                 "ONNX file written by an exporter") from None
        except ValueError:  # the checker re-parses the node in C++ and refuses what protobuf let through
            raise ModelLoadError(f"{label}: node {index} ({node.op_type}) is malformed (onnx cannot parse it); "
                                 "expected an ONNX file written by an exporter") from None
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
        for name in node.outputs:
            if name and name in known:
                raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) writes '{name}', which an "
                                     "earlier node, input or initializer already holds; expected each tensor "
                                     "produced once")
            known.add(name)
    names = graph.output_names()
    if not names:
        raise ModelLoadError(f"{label}: the graph declares no outputs; expected at least one")
    for name in names:
        if name not in known:
            raise ModelLoadError(f"{label}: graph output '{name}' is produced by no node, input or initializer")
        if names.count(name) > 1:
            raise ModelLoadError(f"{label}: graph output '{name}' is listed {names.count(name)} times; "
                                 "expected each output once")


def check_types(model: onnx.ModelProto, label: str) -> None:
    """Every default-domain node's input types against its schema's type constraints.

    The types known before running: initializers, graph inputs and what shape inference wrote into
    ``value_info``.  An input whose type the constraint does not allow (an int4 Conv weight, a bool
    Gather index), or two inputs of one type variable with different types (a float64 bias beside
    float32 data), is refused, as onnxruntime refuses it.

    Raises
    ------
    ModelLoadError
        Naming ``label``, the node, the input and the types allowed.
    """
    g = model.graph
    types = {}
    for info in list(g.value_info) + list(g.input) + list(g.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    ranks = {}
    for init in g.initializer:
        types[init.name] = init.data_type
        ranks[init.name] = len(init.dims)
    for index, node in enumerate(g.node):
        if node.domain not in ONNX_DOMAINS:
            continue
        try:
            # The newest schema: its type lists are the widest (a float16 Celu or a float4 Cast stamped
            # with an older opset still reads), while what no version allows is refused.
            schema = onnx.defs.get_schema(node.op_type, onnx.defs.onnx_opset_version(), "")
        except Exception:
            continue  # unknown ops are reported by the importer
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        bound = {}
        formals = list(schema.inputs)
        for position, name in enumerate(node.input):
            if not name or name not in types or not formals:
                continue
            formal = formals[min(position, len(formals) - 1)]
            if position >= len(formals) and formal.option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
                continue
            node_name = node.name or f"{node.op_type}_{index}"
            if formal.name in _VECTOR_INPUTS and ranks.get(name, 0) > 1:
                raise ModelLoadError(f"{label}: node '{node_name}' ({node.op_type}) input {formal.name} '{name}' has "
                                     f"rank {ranks[name]}; expected a 1-D list")
            type_str = _type_str(types[name])
            if type_str is None:
                continue
            if formal.type_str not in allowed:  # a fixed type such as tensor(int64), not a type variable
                allowed[formal.type_str] = {formal.type_str}
            if type_str not in allowed[formal.type_str]:
                raise ModelLoadError(f"{label}: node '{node_name}' ({node.op_type}) input '{name}' is {type_str}; "
                                     f"expected one of {', '.join(sorted(allowed[formal.type_str]))}")
            previous = bound.setdefault(formal.type_str, (type_str, name))
            homogeneous = formal.is_homogeneous if hasattr(formal, "is_homogeneous") else True
            if previous[0] != type_str and (position < len(formals) or homogeneous):
                raise ModelLoadError(f"{label}: node '{node_name}' ({node.op_type}) input '{name}' is {type_str} but "
                                     f"'{previous[1]}' is {previous[0]}; expected the same type for both")


#: Inputs that are lists of integers (axes, shapes, pads...): a constant of rank 2 or more is malformed.
_VECTOR_INPUTS = ("axes", "shape", "pads", "repeats", "split", "starts", "ends", "steps", "sizes", "scales", "roi")


def _type_str(elem_type: int):
    try:
        return f"tensor({onnx.TensorProto.DataType.Name(elem_type).lower()})"
    except ValueError:
        return None


def _ints(node, key, label, *, low, count=None, high=2 ** 31 - 1):
    value = node.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        values = [value]
    elif isinstance(value, (list, tuple, np.ndarray)):
        values = list(np.asarray(value).reshape(-1)) if isinstance(value, np.ndarray) else list(value)
    else:
        values = [value]
    if any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not low <= v <= high for v in values):
        raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) has {key}={_brief(tuple(values))}; "
                             f"expected integers >= {low} (and <= {high})")
    if count is not None and len(values) != count:
        raise ModelLoadError(f"{label}: node '{node.name}' ({node.op_type}) has {len(values)} {key}; "
                             f"expected {count}")
    return values


#: Attributes that are flags (0 or 1) wherever they appear.
_FLAGS = ("keepdims", "ceil_mode", "count_include_pad", "storage_order", "transA", "transB", "noop_with_empty_axes",
          "exclude_outside", "antialias", "allowzero", "select_last_index", "largest", "sorted", "exclusive",
          "reverse", "training_mode", "legacy_flatten", "per_group")


def _check_attributes(node, graph: Graph, label: str) -> None:
    op = node.op_type
    for key in _FLAGS:
        value = node.attrs.get(key)
        if value is not None and (not isinstance(value, (int, np.integer)) or value not in (0, 1)):
            raise ModelLoadError(f"{label}: node '{node.name}' ({op}) has {key}={_brief(value)}; expected 0 or 1")
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
        if op == "Conv":
            _check_conv_constants(node, graph, label, kernel)
    elif op == "LRN":
        _ints(node, "size", label, low=1)
    elif op == "BatchNormalization" and node.precision == "fp32":
        params = [np.asarray(graph.constants[n]) for n in node.inputs[1:5] if n in graph.constants]
        if any(p.ndim != 1 for p in params) or len({p.size for p in params}) > 1:
            raise ModelLoadError(f"{label}: node '{node.name}' (BatchNormalization) has scale/bias/mean/var of shapes "
                                 f"{[p.shape for p in params]}; expected 1-D tensors of one size (the channels)")
    elif op == "Dropout":
        training = node.inputs[2] if len(node.inputs) > 2 else ""
        if training and (training not in graph.constants or bool(np.asarray(graph.constants[training]).any())):
            raise ModelLoadError(f"{label}: node '{node.name}' (Dropout) runs in training mode; lowbit runs "
                                 "inference only (expected training_mode absent or false)")
        ratio = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] else None
        ratio = graph.constants.get(ratio) if ratio else node.attrs.get("ratio")
        if ratio is not None and (np.size(ratio) != 1 or not 0 <= float(np.asarray(ratio).reshape(-1)[0]) < 1):
            raise ModelLoadError(f"{label}: node '{node.name}' (Dropout) has ratio {_brief(ratio)}; expected a "
                                 "number in [0, 1)")
    elif op == "Reshape" and len(node.inputs) > 1 and node.inputs[1] in graph.constants:
        shape = np.asarray(graph.constants[node.inputs[1]])
        if shape.dtype.kind not in "iu" or shape.ndim != 1 or (shape < -1).any() or (shape == -1).sum() > 1 or \
                (node.attrs.get("allowzero", 0) and (shape == 0).any() and (shape == -1).any()):
            raise ModelLoadError(f"{label}: node '{node.name}' (Reshape) has target shape {_brief(shape.tolist())}; "
                                 "expected integers >= 0 and at most one -1")
    elif op == "Transpose" and node.attrs.get("perm") is not None:
        perm = list(node.attrs["perm"])
        rank = _rank_of(graph, node.inputs[0])
        if sorted(perm) != list(range(len(perm))) or (rank is not None and len(perm) != rank):
            raise ModelLoadError(f"{label}: node '{node.name}' (Transpose) has perm={tuple(perm)}; expected a "
                                 f"permutation of 0..{(rank if rank is not None else len(perm)) - 1}")
    elif op == "ConstantOfShape" and "value" in node.attrs and np.size(node.attrs["value"]) != 1:
        raise ModelLoadError(f"{label}: node '{node.name}' (ConstantOfShape) has a value of "
                             f"{np.size(node.attrs['value'])} elements; expected one")
    elif op == "Flatten":
        axis = node.attrs.get("axis", 1)
        rank = _rank_of(graph, node.inputs[0])
        if rank is not None and not -rank <= axis <= rank:
            raise ModelLoadError(f"{label}: node '{node.name}' (Flatten) has axis={axis} for a rank-{rank} input; "
                                 f"expected -{rank} <= axis <= {rank}")


def _check_conv_constants(node, graph: Graph, label: str, kernel) -> None:
    """A constant Conv weight of rank >= 3 matching kernel_shape and group, and a bias of shape (M,)."""
    w = graph.constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None or node.precision != "fp32" or node.inputs[1] in graph.encodings:
        return  # quantized weights are stored packed or padded (checked by the container's schema)
    w = np.asarray(w)
    group = node.attrs.get("group", 1)
    if w.ndim < 3 or (kernel is not None and list(w.shape[2:]) != list(kernel)) or w.shape[0] % group:
        raise ModelLoadError(f"{label}: node '{node.name}' (Conv) has a weight of shape {w.shape} with kernel_shape="
                             f"{_brief(kernel)} and group={group}; expected (M, C/group, *kernel_shape) with M "
                             "divisible by group")
    b = graph.constants.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if b is not None and np.shape(b) != (w.shape[0],):
        raise ModelLoadError(f"{label}: node '{node.name}' (Conv) has a bias of shape {np.shape(b)}; expected "
                             f"({w.shape[0]},), one value per output channel")


def _brief(value) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _rank_of(graph: Graph, name: str):
    if name in graph.constants:
        return np.ndim(graph.constants[name])
    shape = graph.metadata.get("static_shapes", {}).get(name)
    for info in graph.inputs:
        if info.name == name and info.shape is not None:
            shape = info.shape
    return None if shape is None else len(shape)
