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

Sub-8-bit layers (``export_onnx(..., low_bits=True)``, ``lowbit export
--format qdq``): 4-bit tensors are written as ONNX INT4/UINT4 (int4 weights
with their INT4 per-channel DequantizeLinear, 4-bit activations through a
QuantizeLinear to UINT4/INT4 and back), which needs opset 21.  The other
widths (int2, int3, int5..int7, ternary weights {-1, 0, 1}) are written as
8-bit QDQ holding the k-bit values: the weights are int8 initializers with
values inside ``[-(2^(k-1) - 1), 2^(k-1) - 1]`` and the activations are
clipped to their k-bit range ``[(qmin - zp)·s, (qmax - zp)·s]`` before the
8-bit QuantizeLinear, so the stored integers are exactly lowbit's.
Binary layers have no QDQ form (``--format qonnx`` writes them).
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


#: (signed, bits) of a QDQ tensor → its element type (4-bit only with ``low_bits``)
_QDQ_TYPES = {(0, 8): onnx.TensorProto.UINT8, (1, 8): onnx.TensorProto.INT8,
              (0, 4): onnx.TensorProto.UINT4, (1, 4): onnx.TensorProto.INT4}


def activation_bits(graph: Graph, node: Node) -> int:
    """Bits of the activation an integer node writes (the converter's rule: ``activation_bits`` when
    the model was quantized with one, else the node's weight bits for int2..int8, 8 for ternary)."""
    if "y_bits" in node.quant:   # recorded by the QONNX importer
        return int(node.quant["y_bits"])
    spec = get_precision(node.precision)
    chosen = (graph.metadata.get("post_training") or {}).get("activation_bits")
    return int(chosen) if chosen else (spec.bits if spec.kind == "int" else 8)


def range_bits(qmin: int, qmax: int) -> int:
    """Bits of the integer type whose full range is ``[qmin, qmax]``."""
    return max(1, int(qmax - qmin).bit_length())


class _Exporter:
    low_bits = False   # sub-8-bit layers allowed (4-bit tensors as INT4/UINT4)

    def __init__(self, graph: Graph, low_bits: bool = False):
        self.g = graph
        self.nodes = []
        self.inits = {}
        self.low_bits = low_bits
        self.domains = {}   # extra opset imports {domain: version}

    def const(self, name: str, value) -> str:
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def add(self, op, inputs, outputs, name, **attrs):
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=name, **attrs))

    def scalar(self, base: str, value, dtype) -> str:
        return self.const(base, np.array(value, dtype=dtype))

    def storage_bits(self, bits: int, tensor: str | None = None) -> int:
        """Width of the QDQ element type that holds a ``bits``-bit weight (``tensor`` None) or activation."""
        if not (self.low_bits and bits == 4):
            return 8
        return 4 if tensor is None or tensor in self.four_bit else 8

    def four_bit_activations(self) -> set:
        """Integer tensors that may be stored as UINT4/INT4: those read only by int4 Conv/Gemm, MaxPool or
        DequantizeLinear nodes.  onnxruntime fuses ``DQ → op → Q`` with int8 weights (QLinearConv) or
        elementwise ops into kernels that take no 4-bit type; those readers get an 8-bit tensor holding
        the same 4-bit values."""
        def ok(reader, tensor):
            if reader.op_type in ("Conv", "Gemm") and reader.precision != "fp32":
                return reader.inputs[0] == tensor and get_precision(reader.precision).bits == 4
            return reader.op_type in ("MaxPool", "DequantizeLinear") and reader.precision != "fp32"
        readers = self.g.consumers()
        return {t for t, nodes in readers.items() if nodes and all(ok(r, t) for r in nodes)}

    def int_tensor(self, name: str, values, bits: int, signed: int, tensor: str | None = None) -> str:
        """An integer initializer (INT4/UINT4 when ``bits`` is stored in 4 bits); ``tensor``: the
        activation whose zero point this is."""
        values = np.asarray(values)
        if name not in self.inits:
            if self.storage_bits(bits, tensor) == 4:
                self.inits[name] = helper.make_tensor(name, _QDQ_TYPES[(signed, 4)], list(values.shape),
                                                      values.astype(np.int64).reshape(-1).tolist())
            else:
                self.inits[name] = numpy_helper.from_array(values.astype(np.int8 if signed else np.uint8), name)
        return name

    def dq(self, name: str, scale: float, zp: int, signed: int, out: str, bits: int = 8):
        if out in self.produced:
            return out
        self.produced.add(out)
        self.add("DequantizeLinear", [name, self.scalar(f"{name}::scale", scale, np.float32),
                                      self.int_tensor(f"{name}::zero_point", zp, bits, signed, name)], [out],
                 f"{out}::dq")
        return out

    def q(self, name: str, scale: float, zp: int, signed: int, out: str, bits: int = 8, qrange=None):
        """QuantizeLinear to the tensor's type; a k-bit range inside a wider type is clipped first."""
        stored = self.storage_bits(bits, out)
        type_lo, type_hi = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
        lo, hi = qrange if qrange is not None else (type_lo, type_hi)
        if lo > type_lo or hi < type_hi:
            clipped = f"{out}::clip"
            self.clamp(name, clipped, (lo - zp) * scale if lo > type_lo else -math.inf,
                       (hi - zp) * scale if hi < type_hi else math.inf, f"{out}::range")
            name = clipped
        self.add("QuantizeLinear", [name, self.scalar(f"{out}::scale", scale, np.float32),
                                    self.int_tensor(f"{out}::zero_point", zp, bits, signed, out)], [out], f"{out}::q")

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
            signed = a.get("signed", 0)
            bits = range_bits(a["qmin"], a["qmax"]) if "qmin" in a and "qmax" in a else 8
            self.q(node.inputs[0], a["scale"], a["zero_point"], signed, node.outputs[0], bits,
                   (a.get("qmin"), a.get("qmax")) if "qmin" in a and "qmax" in a else None)
            self.qparams[node.outputs[0]] = (a["scale"], a["zero_point"], signed, bits)
            return
        if op == "DequantizeLinear":
            self.dq(node.inputs[0], *self.qparams[node.inputs[0]][:3], node.outputs[0], self.qparams[node.inputs[0]][3])
            return
        if op in MOVEMENT:
            self.take(self.written[node.name])
            self.qparams[node.outputs[0]] = self.qparams[node.inputs[0]]
            return
        if op in ("Conv", "Gemm"):
            self.weighted(node)
            return
        x_params = [self.qparams[n] for n in node.inputs if n in self.qparams]
        floats = [self.dq(n, *self.qparams[n][:3], f"{n}::f", self.qparams[n][3])
                  for n in node.inputs if n in self.qparams]
        out = node.outputs[0]
        qrange = (a["qmin"], a["qmax"]) if "qmin" in a and "qmax" in a else None
        if op in ("MaxPool", "Relu"):
            s, z, signed, bits = x_params[0]
            # onnxruntime's optimizer runs DQ → MaxPool → Q on the integer type, which it cannot do for
            # 4-bit types: the result is stored in 8 bits (the same values)
            qrange, bits = None, 8 if self.storage_bits(bits, node.inputs[0]) == 4 else bits
            self.add(op, floats, [f"{out}::pre"], node.name, **({} if op == "Relu" else a))
        elif op in ("Add", "Concat", "GlobalAveragePool"):
            s, z, signed = a["y_scale"], a["y_zero_point"], a.get("y_signed", 0)
            bits = range_bits(*qrange) if qrange else activation_bits(self.g, node)
            self.add(op, floats, [f"{out}::pre"], node.name, **({"axis": a["axis"]} if op == "Concat" else {}))
        else:
            raise LowbitError(f"cannot export integer op {op} (node {node.name})")
        self.q(f"{out}::pre", s, z, signed, out, bits, qrange)
        self.qparams[out] = (s, z, signed, bits)

    def weighted(self, node: Node):
        a, quant, const = node.attrs, node.quant, self.g.constants
        x, w_name, b_name = node.inputs[0], node.inputs[1], node.inputs[2]
        xs, xz, xsigned, xbits = self.qparams[x]
        w_scale = np.asarray(quant["w_scale"], dtype=np.float32)
        w_q = decode_constant(const[w_name], self.g.encodings[w_name]) if w_name in self.g.encodings else const[w_name]
        out = node.outputs[0]
        xf = self.dq(x, xs, xz, xsigned, f"{x}::f", xbits)
        wbits = get_precision(node.precision).bits
        self.int_tensor(w_name, w_q, wbits, 1)
        self.const(f"{w_name}::scale", w_scale)
        self.int_tensor(f"{w_name}::zero_point", np.zeros(len(w_scale), np.int8), wbits, 1)
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
        # convert_int's float-output form (no y_scale): the layer's float result is the output, clamped
        float_out = "y_scale" not in quant
        raw = out if float_out and "y_min" not in a and "y_max" not in a else f"{out}::acc"
        if node.op_type == "Conv":
            attrs = {k: v for k, v in a.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
            self.add("Conv", inputs, [raw], node.name, **attrs)
        else:
            self.add("Gemm", inputs, [raw], node.name, transB=1)
        if float_out:
            if raw != out:
                self.clamp(raw, out, a.get("y_min", -math.inf), a.get("y_max", math.inf), f"{node.name}::act")
            return
        ys, yz, ysigned = quant["y_scale"], a["y_zero_point"], a.get("y_signed", 0)
        bits = activation_bits(self.g, node)
        self.q(raw, ys, yz, ysigned, out, bits, (a["qmin"], a["qmax"]))
        self.qparams[out] = (ys, yz, ysigned, bits)

    # ---- the whole graph --------------------------------------------------------------------
    def written_nodes(self) -> list:
        """Nodes written through the conversion table: fp32 nodes and integer data movement."""
        return [n for n in self.g.nodes if n.precision == "fp32" or n.op_type in MOVEMENT]

    def choose_opset(self) -> tuple:
        """``(opset, {node name: Writer})`` for the lowest opset in which every node can be written."""
        base = max(self.min_opset(), min(self.g.opset or MIN_EXPORT_OPSET, MAX_EXPORT_OPSET))
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

    def check_precisions(self) -> None:
        for node in self.g.nodes:
            spec = get_precision(node.precision)
            if spec.is_float and spec.name != "fp32":
                raise ExportError(f"cannot export {spec.name} models to ONNX; export fp32 or int8 (QDQ) models")
            if spec.kind == "binary" or (not spec.is_float and spec.name != "int8" and not self.low_bits):
                hint = ("--format qonnx writes binary layers" if spec.kind == "binary" else
                        "--format qdq writes int2..int7 and ternary layers (INT4 at opset 21), --format qonnx any width")
                raise ExportError(f"cannot export {spec.name} layers (node {node.name}) to ONNX QDQ, which holds "
                                  f"8-bit tensors; {hint}")

    def min_opset(self) -> int:
        """Opset 21 where a tensor is written as INT4/UINT4."""
        four = self.low_bits and any(
            (n.op_type in ("Conv", "Gemm") and get_precision(n.precision).bits == 4)
            or activation_bits(self.g, n) == 4 for n in self.g.nodes if get_precision(n.precision).kind != "float")
        return 21 if four else MIN_EXPORT_OPSET

    def run(self) -> onnx.ModelProto:
        self.qparams = {}
        self.produced = set()
        self.check_precisions()
        self.four_bit = self.four_bit_activations() if self.low_bits else set()
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
        opsets = [helper.make_opsetid("", self.opset)] + [helper.make_opsetid(d, v) for d, v in self.domains.items()]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="lowbit")
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


def export_onnx(graph: Graph, *, check: bool = True, low_bits: bool = False) -> onnx.ModelProto:
    """ONNX ModelProto of an fp32 or integer lowbit graph (integer graphs in QDQ form).

    ``low_bits`` also writes int2..int7 and ternary layers (see the module
    docstring: INT4/UINT4 at opset 21, the other widths as 8-bit QDQ with
    the k-bit values).

    Raises
    ------
    ExportError
        A node cannot be written in any opset from 17 to 21, or (``check``)
        ``onnx.checker.check_model(full_check=True)`` rejects the result;
        the message names the node and the problem.
    """
    model = _Exporter(graph, low_bits).run()
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
