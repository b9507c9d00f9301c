"""lowbit Graph → QONNX (the ``qonnx.custom_op.general`` ops FINN and Brevitas read).

Every tensor stays float32; quantization is written as QONNX nodes, with
the standard ops (Conv, Gemm, MaxPool, ...) in the ai.onnx opset chosen as
for :func:`lowbit.graph.onnx_export.export_onnx`:

``Quant(x, scale, zeropt, bitwidth; signed, narrow, rounding_mode)``
    ``(clamp(round(x / scale + zeropt), lo, hi) - zeropt) · scale`` with
    ``[lo, hi]`` the (narrow) range of a ``bitwidth``-bit type.
``BipolarQuant(x, scale)``
    ``(+1 if x >= 0 else -1) · scale``, i.e. ``sign(0) = +1`` as in lowbit.

Mapping of lowbit's integer layers (int2..int8 weights and ternary):

==========================  =================================================================
lowbit                      QONNX
==========================  =================================================================
QuantizeLinear (s, zp, k)   ``Quant(x, s, zp, k; signed, narrow=0, ROUND)`` (a Clip first when
                            lowbit's range is narrower than the k-bit type)
DequantizeLinear            Identity (a Quant output is already the float value)
Conv / Gemm weights         float initializer ``w_q · s_w[m]`` through
                            ``Quant(W, s_w[m], 0, k; signed=1, narrow=1)``; ternary is k = 2
                            (``{-1, 0, +1}·α``)
bias (int32 at s_x·s_w)     float initializer through ``Quant(b, s_x·s_w[m], 0, 32; signed=1)``
requantized output          float Conv/Gemm, the fused Relu/Clip as a Relu/Clip node, then
                            ``Quant(y, s_y, zp_y, k_y; signed, narrow=0, ROUND)``
float-output layer          float Conv/Gemm (and its clamp), no Quant
Add / Concat / GlobalAvg    the float op on Quant outputs, then ``Quant`` at the output's
                            parameters (lowbit rescales with round-to-nearest, so no ``Trunc``
                            is needed; a requantizing average pool is GlobalAveragePool + Quant)
MaxPool / Relu / movement   the float op on the Quant output (the values stay on the grid)
==========================  =================================================================

Rounding: lowbit's fixed-point requantization rounds ties toward +inf where
QONNX's ``ROUND`` rounds them to even, and the float Conv sums in a
different order than the int32 accumulator; an output level can differ by
one where ``acc · s_x s_w / s_y`` lies within float rounding of a half.

Binary layers (``sign(x)`` inputs, ``sign(W)`` weights, ``dot = Σ sign(x)·sign(w)``,
padded taps 0):

* the input: ``BipolarQuant(x, 1)``; a layer reading packed signs reads the
  ±1 tensor the previous binary layer wrote;
* the weights: the ±1 signs as a float initializer through
  ``BipolarQuant(W, 1)``, so the float Conv/Gemm (zero padding) computes the
  integer ``dot`` exactly;
* float output ``clamp(scale[m]·dot + shift[m])``: ``Mul(scale)``,
  ``Add(shift)`` (lowbit's stored per-channel scale α·BatchNorm and shift,
  the same two float32 roundings as lowbit's kernel), then Relu/Clip;
* sign output (BatchNorm + sign folded into integer thresholds ``t[m]``,
  ``flip[m]``): ``BipolarQuant(c[m]·dot + d[m], 1)`` with ``c = 1, d = -t``
  (−1 iff ``dot < t``) or, flipped, ``c = -1, d = t - 1`` (−1 iff
  ``dot >= t``): integer arithmetic in float32, so the signs are lowbit's
  exactly;
* a MaxPool on packed signs (AND of the −1 bits) is a float MaxPool of ±1.

fp16/bf16/fp8 layers have no QONNX form here and are refused.  The result
uses a custom domain, so onnxruntime cannot open it; :func:`export_qonnx`
checks it with ``onnx.checker`` (full check).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from ..formats.precision import get as get_precision
from ..quant.storage import decode_constant
from .ir import Graph, Node
from .onnx_export import MOVEMENT, ExportError, _check_io_shapes, _describe, _Exporter, activation_bits

QONNX_DOMAIN = "qonnx.custom_op.general"


class _QonnxExporter(_Exporter):
    def __init__(self, graph: Graph):
        super().__init__(graph, low_bits=True)
        self.domains = {QONNX_DOMAIN: 1}
        self.signs = {}

    # ---- QONNX nodes ---------------------------------------------------------------------------
    def fconst(self, name: str, value) -> str:
        return self.const(name, np.asarray(value, dtype=np.float32))

    def quant(self, x: str, out: str, scale, zp, bits: int, signed: int, narrow: int = 0) -> None:
        self.nodes.append(helper.make_node(
            "Quant", [x, self.fconst(f"{out}::scale", scale), self.fconst(f"{out}::zeropt", zp),
                      self.fconst(f"{out}::bitwidth", float(bits))], [out], name=f"{out}::quant",
            domain=QONNX_DOMAIN, signed=int(signed), narrow=int(narrow), rounding_mode="ROUND"))

    def bipolar(self, x: str, out: str, scale=1.0) -> str:
        self.nodes.append(helper.make_node("BipolarQuant", [x, self.fconst(f"{out}::scale", scale)], [out],
                                           name=f"{out}::bipolar", domain=QONNX_DOMAIN))
        return out

    def storage_bits(self, bits: int, tensor: str | None = None) -> int:
        return bits   # no storage type: Quant carries the bit width itself

    def q(self, name, scale, zp, signed, out, bits=8, qrange=None):
        type_lo, type_hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        lo, hi = qrange if qrange is not None else (type_lo, type_hi)
        if lo > type_lo or hi < type_hi:
            clipped = f"{out}::clip"
            self.clamp(name, clipped, (lo - zp) * scale if lo > type_lo else -math.inf,
                       (hi - zp) * scale if hi < type_hi else math.inf, f"{out}::range")
            name = clipped
        self.quant(name, out, scale, zp, bits, signed)

    def dq(self, name, scale, zp, signed, out, bits=8):
        return name

    # ---- integer layers ------------------------------------------------------------------------
    def int_node(self, node: Node):
        if node.precision == "binary":
            return self.binary_node(node)
        if node.op_type == "DequantizeLinear":
            self.add("Identity", [node.inputs[0]], [node.outputs[0]], node.name)
            return
        if node.op_type in ("MaxPool", "Relu"):
            attrs = {k: v for k, v in node.attrs.items() if k != "zero_point"} if node.op_type == "MaxPool" else {}
            self.add(node.op_type, [node.inputs[0]], [node.outputs[0]], node.name, **attrs)
            self.qparams[node.outputs[0]] = self.qparams[node.inputs[0]]
            return
        super().int_node(node)

    def weighted(self, node: Node):
        a, quant, const = node.attrs, node.quant, self.g.constants
        x, w_name, b_name = node.inputs[0], node.inputs[1], node.inputs[2]
        xs, xz, xsigned, xbits = self.qparams[x]
        w_scale = np.asarray(quant["w_scale"], dtype=np.float32)
        w_q = decode_constant(const[w_name], self.g.encodings[w_name]) if w_name in self.g.encodings else const[w_name]
        spec = get_precision(node.precision)
        shape = (-1,) + (1,) * (w_q.ndim - 1)
        weight = f"{node.name}::weight"
        self.fconst(weight, w_q.astype(np.float32) * w_scale.reshape(shape))
        self.quant(weight, f"{weight}::q", w_scale.reshape(shape), 0.0, spec.bits, 1, narrow=1)
        inputs = [x, f"{weight}::q"]
        if b_name:
            acc_scale = (np.float64(xs) * w_scale.astype(np.float64)).astype(np.float32)
            bias = f"{node.name}::bias"
            self.fconst(bias, const[b_name].astype(np.float64) * acc_scale)
            self.quant(bias, f"{bias}::q", acc_scale, 0.0, 32, 1)
            inputs.append(f"{bias}::q")
        out = node.outputs[0]
        raw = f"{out}::acc"
        if node.op_type == "Conv":
            attrs = {k: v for k, v in a.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
            self.add("Conv", inputs, [raw], node.name, **attrs)
        else:
            self.add("Gemm", inputs, [raw], node.name, transB=1)
        if "y_scale" not in quant:   # float-output layer: the accumulator's float value, clamped
            lo, hi = a.get("y_min", -math.inf), a.get("y_max", math.inf)
            if math.isfinite(lo) or math.isfinite(hi):
                self.clamp(raw, out, lo, hi, f"{node.name}::act")
            else:
                self.add("Identity", [raw], [out], f"{node.name}::out")
            return
        ys, yz, ysigned = quant["y_scale"], a["y_zero_point"], a.get("y_signed", 0)
        bits = activation_bits(self.g, node)
        self.q(raw, ys, yz, ysigned, out, bits, (a["qmin"], a["qmax"]))
        self.qparams[out] = (ys, yz, ysigned, bits)

    # ---- binary layers -------------------------------------------------------------------------
    def sign_input(self, node: Node) -> str:
        x = node.inputs[0]
        if node.attrs.get("input_packed", 0):
            return x   # the ±1 tensor a binary layer (or binary MaxPool) wrote
        if x not in self.signs:
            self.signs[x] = self.bipolar(x, f"{x}::sign")
        return self.signs[x]

    def binary_node(self, node: Node):
        a, const = node.attrs, self.g.constants
        out = node.outputs[0]
        if node.op_type == "MaxPool":
            attrs = {k: v for k, v in a.items() if k in ("kernel_shape", "pads", "strides", "dilations",
                                                          "ceil_mode", "auto_pad")}
            self.add("MaxPool", [node.inputs[0]], [out], node.name, **attrs)
            return
        if node.op_type not in ("Conv", "Gemm"):
            raise ExportError(f"cannot export binary op {node.op_type} (node {node.name}) to QONNX")
        w_name = node.inputs[1]
        shape = tuple(self.g.encodings[w_name]["shape"])
        negative = np.unpackbits(const[w_name])[:int(np.prod(shape))].reshape(shape)
        weight = self.fconst(f"{node.name}::weight", np.where(negative, -1.0, 1.0))
        w_sign = self.bipolar(weight, f"{weight}::sign")
        x = self.sign_input(node)
        dot = f"{node.name}::dot"
        if node.op_type == "Conv":
            attrs = {k: v for k, v in a.items() if k in ("auto_pad", "dilations", "kernel_shape", "pads", "strides")}
            self.add("Conv", [x, w_sign], [dot], node.name, **attrs)
            channel = (-1,) + (1,) * len(shape[2:])
        else:
            known = self.g.metadata.get("static_shapes", {}).get(node.inputs[0])
            producer = self.g.producers().get(node.inputs[0])
            if not (producer is not None and producer.op_type == "Flatten") and (known is None or len(known) != 2):
                self.add("Flatten", [x], [f"{x}::2d"], f"{node.name}::flatten", axis=1)
                x = f"{x}::2d"
            self.add("Gemm", [x, w_sign], [dot], node.name, transB=1)
            channel = (-1,)
        if a.get("output") == "sign":
            t = const[node.inputs[4]].astype(np.float64)
            flip = const[node.inputs[5]].astype(bool)
            c, d = np.where(flip, -1.0, 1.0), np.where(flip, t - 1.0, -t)
            self.add("Mul", [dot, self.fconst(f"{node.name}::sign_c", c.reshape(channel))], [f"{dot}::c"],
                     f"{node.name}::threshold_mul")
            self.add("Add", [f"{dot}::c", self.fconst(f"{node.name}::sign_d", d.reshape(channel))],
                     [f"{dot}::t"], f"{node.name}::threshold_add")
            self.bipolar(f"{dot}::t", out)
            return
        scale = const[node.inputs[2]].astype(np.float32).reshape(channel)
        shift = const[node.inputs[3]].astype(np.float32).reshape(channel)
        self.add("Mul", [dot, self.fconst(f"{node.name}::channel_scale", scale)], [f"{dot}::scaled"],
                 f"{node.name}::channel_scale")
        lo, hi = a.get("clip_min", -math.inf), a.get("clip_max", math.inf)
        clamped = math.isfinite(lo) or math.isfinite(hi)
        self.add("Add", [f"{dot}::scaled", self.fconst(f"{node.name}::channel_shift", shift)],
                 [f"{dot}::affine" if clamped else out], f"{node.name}::channel_shift")
        if clamped:
            self.clamp(f"{dot}::affine", out, lo, hi, f"{node.name}::act")

    # ---- the whole graph -----------------------------------------------------------------------
    def written_nodes(self) -> list:
        return [n for n in self.g.nodes if n.precision == "fp32" or (n.op_type in MOVEMENT and n.precision != "binary")]

    def check_precisions(self) -> None:
        for node in self.g.nodes:
            spec = get_precision(node.precision)
            if spec.is_float and spec.name != "fp32":
                raise ExportError(f"cannot export {spec.name} layers (node {node.name}) to QONNX; export fp32, "
                                  "int2..int8, ternary or binary models")

    def min_opset(self) -> int:
        return 17


def export_qonnx(graph: Graph, *, check: bool = True) -> onnx.ModelProto:
    """QONNX ModelProto of an fp32, integer (int2..int8, ternary) or binary lowbit graph.

    See the module docstring for the mapping.

    Raises
    ------
    ExportError
        A layer has no QONNX form (fp16/bf16/fp8), a node cannot be written
        in any opset from 17 to 21, or (``check``) ``onnx.checker.check_model(
        full_check=True)`` rejects the result; the message names the node.
    """
    model = _QonnxExporter(graph).run()
    if check:
        _check_io_shapes(model)
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:  # ValidationError, InferenceError
            raise ExportError(f"the exported QONNX model is invalid: {_describe(exc, model)}") from None
    return model
