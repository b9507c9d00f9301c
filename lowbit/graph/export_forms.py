"""How each lowbit node is written in a given ONNX opset: the exporter's conversion table.

lowbit runs one canonical form per op (see :mod:`lowbit.graph.onnx_import`),
plus a few attributes of its own.  For an export opset ``v`` (17 to 21),
:func:`write_node` turns one fp32 node into the ONNX nodes of opset ``v``:

* what moved between attribute and input is written in the opset's form:
  Reduce* ``axes`` (an input from opset 18, ReduceSum 13), Slice
  ``starts``/``ends``/``axes`` and TopK ``k`` (attributes before opset 10),
  Split's ``num_outputs`` (opset 18); Squeeze/Unsqueeze ``axes``, Clip
  ``min``/``max`` and Pad ``pads`` are already inputs in lowbit's form;
* lowbit-internal attributes are translated, never written:
  ``clip_min``/``clip_max`` (a fused Relu/Clip) become a Relu or Clip node,
  ``legacy_flatten`` (Softmax/LogSoftmax/Hardmax before opset 13) becomes
  Flatten → op(axis=-1) → Reshape, ``per_group`` (GroupNormalization-18,
  deprecated: the checker refuses it) becomes the opset-21 node when ``v`` is
  21, its scale and bias are constants and the channel count is known, else
  Reshape → InstanceNormalization → Reshape;
* ops that do not exist in ``v`` are written out: Upsample (deprecated after
  opset 9) as Resize, Gelu below opset 20 as its Erf/Tanh formula;
* a node that has no form in ``v`` raises :class:`NoForm` saying why; the
  exporter then tries the next opset.

Every node written is checked against its ONNX schema at ``v``
(:func:`onnx.checker.check_node`): an attribute or input count ``v`` does
not know is a :class:`NoForm` too, so nothing lowbit-internal can leak.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import checker, helper, numpy_helper

from .ir import Node

MIN_EXPORT_OPSET = 17
MAX_EXPORT_OPSET = 21
#: The IR version that goes with each export opset (onnx's release table).
IR_VERSIONS = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


class NoForm(Exception):
    """The node cannot be written in this opset (the message says why)."""


class Writer:
    """Collects the ONNX nodes and new constants one lowbit node becomes."""

    def __init__(self, node: Node, opset: int, constants: dict, dtypes: dict, shapes: dict):
        self.node, self.opset = node, opset
        self.constants, self.dtypes, self.shapes = constants, dtypes, shapes
        self.nodes: list = []
        self.new_constants: dict = {}

    def value(self, name: str):
        """The constant value of tensor ``name``, or None when it is computed at run time."""
        if not name:
            return None
        if name in self.new_constants:
            return self.new_constants[name]
        return self.constants.get(name)

    def const(self, label: str, value) -> str:
        name = f"{self.node.name}::{label}"
        self.new_constants[name] = np.asarray(value)
        return name

    def like(self, x: str, label: str, value: float) -> str:
        """A scalar constant of ``x``'s dtype (through CastLike when that dtype is unknown)."""
        dtype = self.dtypes.get(x)
        if dtype is not None:
            return self.const(label, np.array(value, dtype=dtype))
        raw = self.const(f"{label}_f32", np.array(value, dtype=np.float32))
        out = self.tmp(label)
        self.emit("CastLike", [raw, x], [out], label)
        return out

    def tmp(self, label: str) -> str:
        return f"{self.node.name}::{label}"

    def emit(self, op: str, inputs, outputs, suffix: str = "", **attrs) -> None:
        name = f"{self.node.name}::{suffix}" if suffix else self.node.name
        inputs = list(inputs)
        while inputs and not inputs[-1]:
            inputs.pop()
        proto = helper.make_node(op, inputs, list(outputs), name=name)
        proto.attribute.extend(onnx_attributes(op, self.opset, attrs))
        self.nodes.append(proto)


def onnx_attributes(op: str, opset: int, attrs: dict) -> list:
    """lowbit attribute values as AttributeProtos, typed by ``op``'s schema where it has one."""
    try:
        schema_attrs = onnx.defs.get_schema(op, opset).attributes
    except onnx.defs.SchemaError:  # no such op at this opset: check_node says so
        schema_attrs = {}
    A = onnx.AttributeProto
    convert = {A.FLOAT: float, A.INT: int, A.STRING: str,
               A.FLOATS: lambda v: [float(x) for x in np.asarray(v).reshape(-1)],
               A.INTS: lambda v: [int(x) for x in np.asarray(v).reshape(-1)]}
    out = []
    for key, value in sorted(attrs.items()):
        if value is None:
            continue
        kind = schema_attrs[key].type if key in schema_attrs else None
        if kind in convert:
            value = convert[kind](value)
        elif isinstance(value, np.ndarray):
            value = numpy_helper.from_array(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out.append(helper.make_attribute(key, value, attr_type=kind))
    return out


# ---- the conversion table: one function per op ---------------------------------------------
def _plain(w: Writer, node: Node, attrs: dict, outputs: list) -> None:
    w.emit(node.op_type, node.inputs, outputs, **attrs)


def _attr_to_input(w: Writer, node: Node, attrs: dict, outputs: list, names: tuple) -> None:
    """Attributes that later became inputs 1, 2, ... (in ``names`` order) are written as int64 inputs."""
    if not any(n in attrs for n in names):
        return _plain(w, node, attrs, outputs)
    inputs = list(node.inputs[:1])
    for position, key in enumerate(names, start=1):
        given = node.inputs[position] if len(node.inputs) > position else ""
        if key in attrs:
            given = w.const(key, np.asarray(attrs.pop(key), dtype=np.int64).reshape(-1))
        inputs.append(given)
    w.emit(node.op_type, inputs, outputs, **attrs)


def _slice(w, node, attrs, outputs):
    _attr_to_input(w, node, attrs, outputs, ("starts", "ends", "axes"))   # attributes before opset 10


def _top_k(w, node, attrs, outputs):
    _attr_to_input(w, node, attrs, outputs, ("k",))   # an attribute before opset 10


def _pad(w, node, attrs, outputs):
    if attrs.get("mode") == "wrap" and w.opset < 19:
        raise NoForm("Pad mode 'wrap' needs opset 19")
    _plain(w, node, attrs, outputs)


def _split(w, node, attrs, outputs):
    count = attrs.pop("num_outputs", None)
    if w.opset >= 18 and not (len(node.inputs) > 1 and node.inputs[1]):
        attrs["num_outputs"] = count or len(outputs)   # Split-18 needs one of split / num_outputs
    _plain(w, node, attrs, outputs)


def _reduce(w, node, attrs, outputs):
    axes_input = w.opset >= (13 if node.op_type == "ReduceSum" else 18)
    axes_attr = attrs.pop("axes", None)
    given = node.inputs[1] if len(node.inputs) > 1 else ""
    if axes_input:
        if axes_attr is not None:
            given = w.const("axes", np.asarray(axes_attr, dtype=np.int64).reshape(-1))
        return w.emit(node.op_type, [node.inputs[0], given], outputs, **attrs)
    if axes_attr is None and given:
        value = w.value(given)
        if value is None:
            raise NoForm(f"axes computed at run time need the axes input of {node.op_type}-18")
        axes_attr = tuple(int(a) for a in np.asarray(value).reshape(-1))
    if attrs.pop("noop_with_empty_axes", 0) and not axes_attr:
        raise NoForm(f"noop_with_empty_axes needs {node.op_type}-18")
    if axes_attr:
        attrs["axes"] = tuple(axes_attr)
    w.emit(node.op_type, [node.inputs[0]], outputs, **attrs)


def _softmax(w, node, attrs, outputs):
    """Before opset 13 these ops worked on the input coerced to 2-D at ``axis``."""
    if not attrs.pop("legacy_flatten", 0):
        return _plain(w, node, attrs, outputs)
    x, axis = node.inputs[0], int(attrs.pop("axis", 1))
    rank = len(w.shapes[x]) if w.shapes.get(x) is not None else None
    if axis == -1 or (rank is not None and axis == rank - 1):
        return w.emit(node.op_type, [x], outputs, axis=-1, **attrs)
    shape, flat, flat_y = w.tmp("shape"), w.tmp("2d"), w.tmp("y2d")
    w.emit("Shape", [x], [shape], "shape")
    w.emit("Flatten", [x], [flat], "flatten", axis=axis)
    w.emit(node.op_type, [flat], [flat_y], axis=-1, **attrs)
    w.emit("Reshape", [flat_y, shape], outputs, "reshape")


def _resize(w, node, attrs, outputs):
    mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode == "half_pixel_symmetric" and w.opset < 19:
        raise NoForm("coordinate_transformation_mode 'half_pixel_symmetric' needs Resize-19")
    if mode == "tf_half_pixel_for_nn":
        raise NoForm("coordinate_transformation_mode 'tf_half_pixel_for_nn' was removed in Resize-13 "
                     "and has no equivalent in later opsets")
    if w.opset < 18:   # the opset-18 attributes, at their defaults, are simply left out
        for key, default in (("antialias", 0), ("axes", None), ("keep_aspect_ratio_policy", "stretch")):
            if key in attrs and attrs[key] == default:
                del attrs[key]
    _plain(w, node, attrs, outputs)


def _upsample(w, node, attrs, outputs):
    """Upsample (opsets 7, 9) is Resize with asymmetric coordinates and floor for nearest."""
    scales = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] else ""
    if "scales" in attrs:
        scales = w.const("scales", np.asarray(attrs.pop("scales"), dtype=np.float32))
    mode = attrs.pop("mode", "nearest")
    extra = {"nearest_mode": "floor"} if mode == "nearest" else {}
    w.emit("Resize", [node.inputs[0], "", scales], outputs, mode=mode,
           coordinate_transformation_mode="asymmetric", **extra)


def _dropout(w, node, attrs, outputs):
    attrs.pop("ratio", None)     # an attribute before opset 12; inference ignores it
    _plain(w, node, attrs, outputs)


def _batch_norm(w, node, attrs, outputs):
    if not attrs.pop("spatial", 1):
        raise NoForm("BatchNormalization spatial=0 (per-feature statistics, opsets 7-8) has no form in opset 9 "
                     "or later")
    _plain(w, node, attrs, outputs)


def _cast(w, node, attrs, outputs):
    if w.opset < 19:
        attrs.pop("saturate", None)   # Cast-19 attribute; it only concerns float8 targets
    _plain(w, node, attrs, outputs)


def _scatter(w, node, attrs, outputs):
    if attrs.get("reduction") in ("max", "min") and w.opset < 18:
        raise NoForm(f"{node.op_type} reduction {attrs['reduction']!r} needs opset 18")
    _plain(w, node, attrs, outputs)


def _gelu(w, node, attrs, outputs):
    approximate = attrs.get("approximate", "none")
    if w.opset >= 20:
        return _plain(w, node, attrs, outputs)
    x = node.inputs[0]
    if approximate == "tanh":
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = w.tmp("x3")
        w.emit("Mul", [x, x], [w.tmp("x2")], "x2")
        w.emit("Mul", [w.tmp("x2"), x], [cube], "x3")
        w.emit("Mul", [cube, w.like(x, "c", 0.044715)], [w.tmp("cx3")], "cx3")
        w.emit("Add", [x, w.tmp("cx3")], [w.tmp("inner")], "inner")
        w.emit("Mul", [w.tmp("inner"), w.like(x, "k", math.sqrt(2.0 / math.pi))], [w.tmp("u")], "u")
        w.emit("Tanh", [w.tmp("u")], [w.tmp("t")], "tanh")
    else:
        # 0.5 x (1 + erf(x / sqrt 2))
        w.emit("Mul", [x, w.like(x, "inv_sqrt2", 1.0 / math.sqrt(2.0))], [w.tmp("u")], "u")
        w.emit("Erf", [w.tmp("u")], [w.tmp("t")], "erf")
    w.emit("Add", [w.tmp("t"), w.like(x, "one", 1.0)], [w.tmp("1pt")], "1pt")
    w.emit("Mul", [x, w.tmp("1pt")], [w.tmp("x1pt")], "x1pt")
    w.emit("Mul", [w.tmp("x1pt"), w.like(x, "half", 0.5)], outputs, "half")


def _group_norm(w, node, attrs, outputs):
    """Opset 21 holds scale and bias per channel; lowbit's ``per_group`` form (opsets 18-20) per group."""
    x, scale, bias = node.inputs[:3]
    per_group = attrs.pop("per_group", 0)
    if not per_group:
        if w.opset < 21:
            raise NoForm("GroupNormalization with per-channel scale and bias needs opset 21")
        return _plain(w, node, attrs, outputs)
    groups, eps = int(attrs["num_groups"]), float(attrs.get("epsilon", 1e-5))
    shape = w.shapes.get(x)
    channels = shape[1] if shape is not None and len(shape) > 1 else None
    s_value, b_value = w.value(scale), w.value(bias)
    if w.opset >= 21 and s_value is not None and b_value is not None and channels and channels % groups == 0:
        repeat = channels // groups
        s = w.const("scale_c", np.repeat(np.reshape(s_value, -1), repeat))
        b = w.const("bias_c", np.repeat(np.reshape(b_value, -1), repeat))
        return w.emit("GroupNormalization", [x, s, b], outputs, **attrs)
    # GroupNormalization-18 is deprecated (the checker refuses it): InstanceNormalization over
    # (N, G, C/G * spatial) computes the same per-group statistics and applies the per-group scale.
    grouped, normed, x_shape = w.tmp("grouped"), w.tmp("normed"), w.tmp("x_shape")
    w.emit("Reshape", [x, w.const("group_shape", np.array([0, groups, -1], np.int64))], [grouped], "group")
    w.emit("InstanceNormalization", [grouped, scale, bias], [normed], "norm", epsilon=eps)
    w.emit("Shape", [x], [x_shape], "shape")
    w.emit("Reshape", [normed, x_shape], outputs, "ungroup")


FORMS = {
    "Slice": _slice, "TopK": _top_k, "Pad": _pad, "Split": _split,
    "Softmax": _softmax, "LogSoftmax": _softmax, "Hardmax": _softmax,
    "Resize": _resize, "Upsample": _upsample,
    "Dropout": _dropout, "BatchNormalization": _batch_norm, "Cast": _cast,
    "ScatterElements": _scatter, "ScatterND": _scatter,
    "Gelu": _gelu, "GroupNormalization": _group_norm,
    **{op: _reduce for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                              "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")},
}


def write_node(node: Node, opset: int, constants: dict, dtypes: dict, shapes: dict) -> Writer:
    """The ONNX nodes of opset ``opset`` that compute fp32 ``node``.

    A fused activation (``clip_min``/``clip_max``, set by the graph passes on
    Conv and Gemm) is written as a Relu or Clip node after the op.

    Raises
    ------
    NoForm
        ``node`` cannot be written in ``opset`` (the message says why).
    """
    w = Writer(node, opset, constants, dtypes, shapes)
    attrs = dict(node.attrs)
    lo, hi = attrs.pop("clip_min", None), attrs.pop("clip_max", None)
    outputs = list(node.outputs)
    if lo is not None:
        outputs[0] = w.tmp("preact")
    FORMS.get(node.op_type, _plain)(w, node, attrs, outputs)
    if lo is not None:
        pre = outputs[0]
        if lo == 0.0 and math.isinf(hi):
            w.emit("Relu", [pre], node.outputs[:1], "act")
        else:
            bounds = [w.like(pre, key, v) if math.isfinite(v) else "" for key, v in (("min", lo), ("max", hi))]
            w.emit("Clip", [pre, *bounds], node.outputs[:1], "act")
    for proto in w.nodes:
        problem = node_problem(proto, opset)
        if problem:
            raise NoForm(problem)
    return w


def node_problem(proto, opset: int) -> str | None:
    """What ONNX opset ``opset`` finds wrong with ``proto`` against its schema, or None."""
    ctx = checker.C.CheckerContext()
    ctx.ir_version = IR_VERSIONS[opset]
    ctx.opset_imports = {"": opset}
    try:
        checker.check_node(proto, ctx)
    except checker.ValidationError as exc:
        return str(exc).strip().splitlines()[0]
    return None


# ---- dtypes, for the constants a written-out form adds ---------------------------------------
_INT64_OUT = {"Shape", "Size", "ArgMax", "ArgMin", "NonZero"}
_BOOL_OUT = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor"}
_FROM_INPUT = {"CastLike": 1, "Where": 1, "OneHot": 2}


def tensor_dtypes(graph) -> dict:
    """Element type of every tensor whose type lowbit can tell: inputs, constants, fp32 node outputs."""
    dtypes = {v.name: np.dtype(v.dtype) for v in graph.inputs if v.dtype is not None}
    dtypes.update({name: value.dtype for name, value in graph.constants.items()})
    for node in graph.nodes:
        op, outs = node.op_type, [o for o in node.outputs if o]
        first = dtypes.get(node.inputs[0]) if node.inputs and node.inputs[0] else None
        if node.precision != "fp32":
            if op == "DequantizeLinear":
                dtypes.update({o: np.dtype(np.float32) for o in outs})
            continue
        if op == "Cast":
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attrs["to"])))
        elif op in _INT64_OUT:
            dtype = np.dtype(np.int64)
        elif op in _BOOL_OUT:
            dtype = np.dtype(bool)
        elif op in _FROM_INPUT:
            src = node.inputs[_FROM_INPUT[op]] if len(node.inputs) > _FROM_INPUT[op] else ""
            dtype = dtypes.get(src)
        elif op == "ConstantOfShape":
            value = node.attrs.get("value")
            dtype = np.asarray(value).dtype if value is not None else np.dtype(np.float32)
        else:
            dtype = first
        for index, out in enumerate(outs):
            if op in ("TopK", "Dropout") and index == 1:
                dtypes[out] = np.dtype(np.int64 if op == "TopK" else bool)
            elif dtype is not None:
                dtypes[out] = dtype
    return dtypes
