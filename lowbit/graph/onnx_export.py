"""lowbit Graph → ONNX.

The export opset is the lowest one from 17 (or the model's own opset, up to
21) in which every node can be written; each fp32 node is written in that
opset's form by :mod:`lowbit.graph.export_forms` (which also translates
lowbit's own attributes: fused Relu/Clip, ``legacy_flatten``, ``per_group``).
Integer graphs export in the QDQ form onnxruntime reads: every integer
tensor is the output of a QuantizeLinear, every integer op becomes
``DequantizeLinear → float op → (Relu/Clip) → QuantizeLinear``, and the
weights are int8 initializers with a per-channel DequantizeLinear (axis 0),
biases int32 initializers at scale ``s_x · s_w``.  Data-movement ops
(Flatten, Reshape, Transpose, Squeeze, Unsqueeze) act on the integer tensor
directly.  :func:`export_onnx` checks the result with ONNX's full checker;
:func:`check_onnxruntime` also opens it in onnxruntime.
"""
from __future__ import annotations

import math
import re

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import LowbitError
from ..precision import get as get_precision
from ..quant.storage import decode_constant
from .export_forms import IR_VERSIONS, MAX_EXPORT_OPSET, MIN_EXPORT_OPSET, NoForm, tensor_dtypes, write_node
from .ir import Graph, Node

MOVEMENT = {"Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout"}


class ExportError(LowbitError):
    """The graph cannot be written as a valid ONNX model (names the node and the problem)."""


class _Exporter:
    def __init__(self, graph: Graph):
        self.g = graph
        self.nodes = []
        self.inits = {}

    def const(self, name: str, value) -> str:
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def add(self, op, inputs, outputs, name, **attrs):
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=name, **attrs))

    def scalar(self, base: str, value, dtype) -> str:
        return self.const(base, np.array(value, dtype=dtype))

    def dq(self, name: str, scale: float, zp: int, signed: int, out: str):
        if out in self.produced:
            return out
        self.produced.add(out)
        zdtype = np.int8 if signed else np.uint8
        self.add("DequantizeLinear", [name, self.scalar(f"{name}::scale", scale, np.float32),
                                      self.scalar(f"{name}::zero_point", zp, zdtype)], [out], f"{out}::dq")
        return out

    def q(self, name: str, scale: float, zp: int, signed: int, out: str):
        zdtype = np.int8 if signed else np.uint8
        self.add("QuantizeLinear", [name, self.scalar(f"{out}::scale", scale, np.float32),
                                    self.scalar(f"{out}::zero_point", zp, zdtype)], [out], f"{out}::q")

    def clamp(self, src: str, out: str, lo: float, hi: float, name: str):
        if lo == 0.0 and math.isinf(hi):
            self.add("Relu", [src], [out], name)
        else:
            inputs = [src, self.scalar(f"{name}::min", lo, np.float32) if math.isfinite(lo) else "",
                      self.scalar(f"{name}::max", hi, np.float32) if math.isfinite(hi) else ""]
            self.add("Clip", inputs, [out], name)

    def int_node(self, node: Node):
        op, a, quant = node.op_type, node.attrs, node.quant
        if op == "QuantizeLinear":
            self.q(node.inputs[0], a["scale"], a["zero_point"], a.get("signed", 0), node.outputs[0])
            self.qparams[node.outputs[0]] = (a["scale"], a["zero_point"], a.get("signed", 0))
            return
        if op == "DequantizeLinear":
            s, z, signed = self.qparams[node.inputs[0]]
            self.dq(node.inputs[0], s, z, signed, node.outputs[0])
            return
        if op in MOVEMENT:
            self.take(self.written[node.name])
            self.qparams[node.outputs[0]] = self.qparams[node.inputs[0]]
            return
        if op in ("Conv", "Gemm"):
            self.weighted(node)
            return
        x_params = [self.qparams[n] for n in node.inputs if n in self.qparams]
        floats = [self.dq(n, *self.qparams[n], f"{n}::f") for n in node.inputs if n in self.qparams]
        out = node.outputs[0]
        if op in ("MaxPool", "Relu"):
            s, z, signed = x_params[0]
            self.add(op, floats, [f"{out}::pre"], node.name, **({} if op == "Relu" else a))
        elif op == "Add":
            s, z, signed = a["y_scale"], a["y_zero_point"], a.get("y_signed", 0)
            self.add("Add", floats, [f"{out}::pre"], node.name)
        elif op == "Concat":
            s, z, signed = a["y_scale"], a["y_zero_point"], a.get("y_signed", 0)
            self.add("Concat", floats, [f"{out}::pre"], node.name, axis=a["axis"])
        elif op == "GlobalAveragePool":
            s, z, signed = a["y_scale"], a["y_zero_point"], a.get("y_signed", 0)
            self.add(op, floats, [f"{out}::pre"], node.name)
        else:
            raise LowbitError(f"cannot export integer op {op} (node {node.name})")
        self.q(f"{out}::pre", s, z, signed, out)
        self.qparams[out] = (s, z, signed)

    def weighted(self, node: Node):
        a, quant, const = node.attrs, node.quant, self.g.constants
        x, w_name, b_name = node.inputs[0], node.inputs[1], node.inputs[2]
        xs, xz, xsigned = self.qparams[x]
        w_scale = np.asarray(quant["w_scale"], dtype=np.float32)
        w_q = decode_constant(const[w_name], self.g.encodings[w_name]) if w_name in self.g.encodings else const[w_name]
        out = node.outputs[0]
        xf = self.dq(x, xs, xz, xsigned, f"{x}::f")
        self.const(w_name, w_q)
        self.const(f"{w_name}::scale", w_scale)
        self.const(f"{w_name}::zero_point", np.zeros(len(w_scale), np.int8))
        self.add("DequantizeLinear", [w_name, f"{w_name}::scale", f"{w_name}::zero_point"], [f"{w_name}::f"],
                 f"{w_name}::dq", axis=0)
        inputs = [xf, f"{w_name}::f"]
        if b_name:
            self.const(b_name, const[b_name])
            self.const(f"{b_name}::scale", (np.float64(xs) * w_scale.astype(np.float64)).astype(np.float32))
            self.const(f"{b_name}::zero_point", np.zeros(len(w_scale), np.int32))
            self.add("DequantizeLinear", [b_name, f"{b_name}::scale", f"{b_name}::zero_point"], [f"{b_name}::f"],
                     f"{b_name}::dq", axis=0)
            inputs.append(f"{b_name}::f")
        ys, yz, ysigned = quant["y_scale"], a["y_zero_point"], a.get("y_signed", 0)
        raw = f"{out}::acc"
        if node.op_type == "Conv":
            attrs = {k: v for k, v in a.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
            self.add("Conv", inputs, [raw], node.name, **attrs)
        else:
            self.add("Gemm", inputs, [raw], node.name, transB=1)
        type_lo, type_hi = (-128, 127) if ysigned else (0, 255)
        result = raw
        if a["qmin"] > type_lo or a["qmax"] < type_hi:
            lo = (a["qmin"] - yz) * ys if a["qmin"] > type_lo else -math.inf
            hi = (a["qmax"] - yz) * ys if a["qmax"] < type_hi else math.inf
            result = f"{out}::act"
            self.clamp(raw, result, lo, hi, f"{node.name}::act")
        self.q(result, ys, yz, ysigned, out)
        self.qparams[out] = (ys, yz, ysigned)

    # ---- the whole graph --------------------------------------------------------------------
    def written_nodes(self) -> list:
        """Nodes written through the conversion table: fp32 nodes and integer data movement."""
        return [n for n in self.g.nodes if n.precision == "fp32" or n.op_type in MOVEMENT]

    def choose_opset(self) -> tuple:
        """``(opset, {node name: Writer})`` for the lowest opset in which every node can be written."""
        base = max(MIN_EXPORT_OPSET, min(self.g.opset or MIN_EXPORT_OPSET, MAX_EXPORT_OPSET))
        shapes = dict(self.g.metadata.get("static_shapes", {}))
        shapes.update({v.name: v.shape for v in self.g.inputs if v.shape is not None})
        for opset in range(base, MAX_EXPORT_OPSET + 1):
            written = {}
            for node in self.written_nodes():
                try:
                    written[node.name] = write_node(node, opset, self.g.constants, self.dtypes, shapes)
                except NoForm as exc:
                    failed, reason = node, str(exc)
                    break
            else:
                return opset, written
        raise ExportError(f"cannot export node {failed.name!r} ({failed.op_type}) to ONNX opset {base}-"
                          f"{MAX_EXPORT_OPSET}: {reason}")

    def take(self, writer) -> None:
        self.nodes.extend(writer.nodes)
        for name, value in writer.new_constants.items():
            self.const(name, value)

    def run(self) -> onnx.ModelProto:
        self.qparams = {}
        self.produced = set()
        for node in self.g.nodes:
            spec = get_precision(node.precision)
            if spec.is_float and spec.name != "fp32":
                raise ExportError(f"cannot export {spec.name} models to ONNX; export fp32 or int8 (QDQ) models")
            if not spec.is_float and spec.name != "int8":
                raise ExportError(f"cannot export {spec.name} layers (node {node.name}) to ONNX QDQ, which holds "
                                  "8-bit tensors; export fp32 or int8 models")
        self.dtypes = tensor_dtypes(self.g)
        self.opset, self.written = self.choose_opset()
        # A graph output that is a constant (folded at load) is written as a Constant node.
        for name in dict.fromkeys(self.g.output_names()):
            if name in self.g.constants:
                self.add("Constant", [], [name], f"{name}::constant",
                         value=numpy_helper.from_array(np.asarray(self.g.constants[name]), name))
        for node in self.g.nodes:
            if node.precision == "fp32":
                self.take(self.written[node.name])
            else:
                self.int_node(node)
        defined = {o for n in self.nodes for o in n.output}
        for proto in self.nodes:
            for name in proto.input:
                if name in self.g.constants and name not in self.inits and name not in defined:
                    value = self.g.constants[name]
                    if name in self.g.encodings:
                        value = decode_constant(value, self.g.encodings[name])
                    self.const(name, value)
        inputs = [self.info(v) for v in self.g.inputs]
        outputs = [self.info(v) for v in self.g.outputs]
        graph = helper.make_graph(self.nodes, self.g.name or "lowbit", inputs, outputs, list(self.inits.values()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="lowbit")
        model.ir_version = IR_VERSIONS[self.opset]
        _fill_output_shapes(model)
        return model

    def info(self, v):
        shape = v.shape if v.shape is not None else self.g.metadata.get("static_shapes", {}).get(v.name)
        if shape is not None:
            shape = [d if d is not None else f"{v.name}_dim{i}" for i, d in enumerate(shape)]
        dtype = v.dtype if v.dtype is not None else self.dtypes.get(v.name, np.float32)
        return helper.make_tensor_value_info(v.name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def _fill_output_shapes(model: onnx.ModelProto) -> None:
    """Give graph outputs without a shape the one ONNX shape inference finds (the checker needs one)."""
    missing = [o for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    if not missing:
        return
    try:
        inferred = {o.name: o for o in onnx.shape_inference.infer_shapes(model).graph.output}
    except Exception:
        return   # the checker reports the problem
    for out in missing:
        found = inferred.get(out.name)
        if found is not None and found.type.tensor_type.HasField("shape"):
            out.type.CopyFrom(found.type)


_NODE_PATTERNS = (
    (re.compile(r"Name:\s*(?P<name>\S*)\s+OpType:\s*(?P<op>\S+)")),                  # onnx checker context
    (re.compile(r"op_type:\s*(?P<op>[^,\s]+),\s*node name:\s*(?P<name>[^)]*)\)")),    # onnx shape inference
    (re.compile(r"Node \((?P<name>[^)]*)\) Op \((?P<op>[^)]*)\)")),                     # onnxruntime
    (re.compile(r"for (?P<op>\w+)\(\d+\) node with name '(?P<name>[^']*)'")),           # onnxruntime, no kernel
)


def _describe(exc: Exception, model: onnx.ModelProto) -> str:
    """One line: the node an ONNX/onnxruntime error names (or the op type it mentions), and the problem."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    for pattern in _NODE_PATTERNS:
        found = pattern.search(text)
        if found:
            return f"node {found.group('name')!r} ({found.group('op')}): {first}"
    # onnxruntime's kernel constructors name only their class, e.g. "onnxruntime::LRN<T>::LRN(...)".
    for node in model.graph.node:
        if re.search(rf"\b{re.escape(node.op_type)}\b", text):
            return f"node {node.name!r} ({node.op_type}), the first of its type: {first}"
    return first


def _check_io_shapes(model: onnx.ModelProto) -> None:
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            if v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape"):
                raise ExportError(f"graph {kind} {v.name!r} has no known shape (not even its rank); ONNX requires "
                                  "one: give the model's inputs and outputs shapes")


def export_onnx(graph: Graph, *, check: bool = True) -> onnx.ModelProto:
    """ONNX ModelProto of an fp32 or integer lowbit graph (integer graphs in QDQ form).

    Raises
    ------
    ExportError
        A node cannot be written in any opset from 17 to 21, or (``check``)
        ``onnx.checker.check_model(full_check=True)`` rejects the result;
        the message names the node and the problem.
    """
    model = _Exporter(graph).run()
    if check:
        _check_io_shapes(model)
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:  # ValidationError, InferenceError
            raise ExportError(f"the exported ONNX model is invalid: {_describe(exc, model)}") from None
    return model


def check_onnxruntime(model: onnx.ModelProto) -> bool:
    """Open ``model`` in an onnxruntime session; False when onnxruntime is not installed.

    Raises
    ------
    ExportError
        onnxruntime refuses the model (names the node and the problem).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    options = ort.SessionOptions()
    options.log_severity_level = 4   # the refusal is reported once, by the ExportError
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot open the exported model: {_describe(exc, model)}") from None
    return True
