"""lowbit Graph → ONNX.

fp32 graphs export as they run (fused Relu/Clip written back as nodes).
Integer graphs export in the QDQ form onnxruntime reads: every integer
tensor is the output of a QuantizeLinear, every integer op becomes
``DequantizeLinear → float op → (Relu/Clip) → QuantizeLinear``, and the
weights are int8 initializers with a per-channel DequantizeLinear (axis 0),
biases int32 initializers at scale ``s_x · s_w``.  Data-movement ops
(Flatten, Reshape, Transpose, Squeeze, Unsqueeze) act on the integer tensor
directly.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import LowbitError
from ..precision import get as get_precision
from ..quant.storage import decode_constant
from .ir import Graph, Node

EXPORT_OPSET = 17
MOVEMENT = {"Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout"}


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

    # ---- per node -------------------------------------------------------------------------
    def float_node(self, node: Node):
        attrs = dict(node.attrs)
        lo, hi = attrs.pop("clip_min", None), attrs.pop("clip_max", None)
        legacy = attrs.pop("legacy_flatten", 0)
        for n in node.inputs:
            if n in self.g.constants:
                self.const(n, self.g.constants[n])
        if legacy and node.op_type in ("Softmax", "LogSoftmax"):
            axis = attrs.get("axis", 1)
            x = node.inputs[0]
            self.add("Shape", [x], [f"{node.name}::shape"], f"{node.name}::shape")
            self.add("Flatten", [x], [f"{node.name}::2d"], f"{node.name}::flatten", axis=axis)
            self.add(node.op_type, [f"{node.name}::2d"], [f"{node.name}::y2d"], node.name, axis=-1)
            self.add("Reshape", [f"{node.name}::y2d", f"{node.name}::shape"], node.outputs, f"{node.name}::reshape")
            return
        if lo is None:
            self.add(node.op_type, node.inputs, node.outputs, node.name, **attrs)
            return
        raw = f"{node.outputs[0]}::preact"
        self.add(node.op_type, node.inputs, [raw], node.name, **attrs)
        self.clamp(raw, node.outputs[0], lo, hi, f"{node.name}::act")

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
            for n in node.inputs[1:]:
                if n in self.g.constants:
                    self.const(n, self.g.constants[n])
            self.add(op, node.inputs, node.outputs, node.name, **a)
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

    def run(self) -> onnx.ModelProto:
        self.qparams = {}
        self.produced = set()
        for node in self.g.nodes:
            spec = get_precision(node.precision)
            if spec.is_float and spec.name != "fp32":
                raise LowbitError(f"cannot export {spec.name} models to ONNX; export fp32 or int8 (QDQ) models")
            if not spec.is_float and spec.name != "int8":
                raise LowbitError(f"cannot export {spec.name} layers (node {node.name}) to ONNX QDQ, which holds "
                                  "8-bit tensors; export fp32 or int8 models")
            if spec.name == "fp32":
                self.float_node(node)
            else:
                self.int_node(node)
        def info(v):
            shape = None if v.shape is None else [d if d is not None else f"{v.name}_dim{i}"
                                                  for i, d in enumerate(v.shape)]
            dtype = helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype if v.dtype is not None else np.float32))
            return helper.make_tensor_value_info(v.name, dtype, shape)

        inputs = [info(v) for v in self.g.inputs]
        outputs = [info(v) for v in self.g.outputs]
        graph = helper.make_graph(self.nodes, self.g.name or "lowbit", inputs, outputs, list(self.inits.values()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(EXPORT_OPSET, 13))],
                                  producer_name="lowbit")
        model.ir_version = 8
        return model


def export_onnx(graph: Graph) -> onnx.ModelProto:
    """ONNX ModelProto of an fp32 or integer lowbit graph (integer graphs in QDQ form)."""
    model = _Exporter(graph).run()
    onnx.checker.check_model(model)
    return model
