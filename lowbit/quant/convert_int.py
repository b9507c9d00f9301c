"""fp32 graph → integer graph (int8, and the k-bit formats on the same kernels).

Scheme (see :mod:`lowbit.formats.fixed_point` for requantization):

* weights: per output channel by :mod:`lowbit.formats.quantizers` — symmetric
  k-bit (``s_w[m] = max|W[m]| / (2^(k-1) - 1)``) or ternary ``{-α, 0, +α}``;
  stored as int8, bit-packed below 8 bits;
* activations: per tensor, from the calibration range ``[lo, hi]`` (which
  contains 0): uint8 asymmetric ``s = (hi - lo) / (2^bits - 1)``,
  ``zp = round(-lo / s)``, or int8 symmetric ``s = max(|lo|, |hi|) / qmax``,
  ``zp = 0``;
* bias: int32 at scale ``s_x · s_w[m]``;
* Conv, Gemm and MatMul (constant weights) become integer ops; MaxPool,
  Flatten/Reshape/Transpose/Squeeze/Unsqueeze, Relu, Add, Concat and
  GlobalAveragePool stay integer when all their data inputs are integer;
  everything else runs fp32 between a DequantizeLinear and a QuantizeLinear.
  A fused Relu/Clip becomes the clamp ``[zp + round(a/s), zp + round(b/s)]``.
* no tensor is rounded to 8 bits that no integer node reads: an Add, Concat,
  GlobalAveragePool or passthrough op whose output only fp32 ops (or the
  graph's outputs) read runs in fp32, and a Conv/Gemm/MatMul whose output only
  fp32 ops read writes float32 straight from its int32 accumulator,
  ``clip(float32(acc) · s_x s_w[m])`` (an int8 kernel; onnxruntime would
  requantize there and dequantize again);
* every node left in fp32 records why in ``node.quant["fallback"]`` (shown by
  ``lowbit inspect``).

Integer tensors are named ``<fp32 name>::q``; the fp32 name keeps meaning
the float value (produced by a DequantizeLinear where something reads it).
"""
from __future__ import annotations

import copy
import math

import numpy as np

from ..graph.ir import Graph, Node
from ..formats.precision import Precision
from ..formats.precision import get as get_precision
from ..formats.fixed_point import quantize_multiplier
from ..formats import quantizers
from .weights import layer_weights
from ..formats.packing import pack_bits

ANCHORS = {"Conv", "Gemm", "MatMul"}
INT8 = get_precision("int8")
INTEGER_KINDS = ("int", "ternary")
PASSTHROUGH = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Relu"}
REQUANTIZING = {"Add", "Concat", "GlobalAveragePool"}
WINDOW_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def activation_qparams(lo: float, hi: float, bits: int = 8, signed: bool = False) -> tuple:
    """Scale and zero point of a per-tensor activation range (see the module docstring)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if signed:
        qmax = (1 << (bits - 1)) - 1
        scale = max(abs(lo), abs(hi)) / qmax
        return (scale if scale > 0 else 1.0), 0
    levels = (1 << bits) - 1
    scale = (hi - lo) / levels
    if scale <= 0:
        return 1.0, 0
    return scale, int(min(levels, max(0, round(-lo / scale))))


class _IntConverter:
    def __init__(self, graph: Graph, precision: Precision, ranges: dict, shapes: dict, exclude,
                 activation_signed: bool, first_layer: str, last_layer: str, activation_bits: int | None,
                 fixed_qparams=None, fixed_weights=None, node_precisions=None):
        self.src = graph
        self.g = copy.deepcopy(graph)
        self.p = precision
        self.ranges = ranges
        self.shapes = shapes
        self.exclude = exclude
        self.signed = activation_signed
        self.abits = activation_bits
        self.node_precisions = node_precisions or {}
        self.tensor_bits = {}
        self.first_layer, self.last_layer = first_layer, last_layer
        self.qparams = {name: (float(p[0]), int(p[1])) for name, p in (fixed_qparams or {}).items()}
        self.fixed_weights = fixed_weights or {}

    # ---- decisions ---------------------------------------------------------------------
    def eligible_anchor(self, node: Node) -> bool:
        const = self.g.constants
        if node.op_type == "Conv":
            return len(node.inputs) >= 2 and node.inputs[1] in const and const[node.inputs[1]].ndim == 4 \
                and all(n in const for n in node.inputs[2:] if n)
        if node.op_type == "Gemm":
            c = node.inputs[2] if len(node.inputs) > 2 else ""
            return node.inputs[1] in const and not node.attrs.get("transA", 0) \
                and (not c or (c in const and const[c].size in (1, self.out_features(node))))
        if node.op_type == "MatMul":
            return node.inputs[1] in const and const[node.inputs[1]].ndim == 2 \
                and len(self.shapes.get(node.inputs[0], ())) == 2
        return False

    def out_features(self, node: Node) -> int:
        b = self.g.constants[node.inputs[1]]
        return b.shape[0] if node.attrs.get("transB", 0) else b.shape[1]

    def decide(self) -> set:
        anchors = [n.name for n in self.g.nodes if n.op_type in ANCHORS and self.eligible_anchor(n)]
        skip = set()
        for policy, anchor in ((self.first_layer, anchors[:1]), (self.last_layer, anchors[-1:])):
            if anchor and policy == "fp32":
                skip.add(anchor[0])
            elif anchor and policy == "int8":
                self.node_precisions = {**self.node_precisions}
                self.node_precisions.setdefault(anchor[0], INT8)
        int_nodes, int_tensors = set(), set()
        self.fallback = {}
        edges = {anchors[0]: "first", anchors[-1]: "last"} if anchors else {}
        for node in self.g.nodes:
            if node.name in self.exclude or node.op_type in self.exclude:
                self.fallback[node.name] = "excluded by nodes_to_exclude (--exclude)"
                continue
            if node.name in skip:
                self.fallback[node.name] = f"{edges.get(node.name, 'edge')} weighted layer kept at fp32"
                continue
            if node.name in self.node_precisions and self.node_precisions[node.name].kind not in INTEGER_KINDS:
                self.fallback[node.name] = f"precision plan: {self.node_precisions[node.name].name}"
                continue
            data = self.data_inputs(node)
            why = None
            if node.op_type in ANCHORS:
                if node.name not in anchors:
                    why = f"no int8 kernel for this {node.op_type} (weights not constant or not 2-D/4-D)"
            elif node.op_type in PASSTHROUGH or node.op_type in REQUANTIZING:
                floats = [t for t in data if t not in int_tensors]
                if not data:
                    why = "no tensor input to quantize"
                elif floats:
                    why = f"reads the fp32 tensor {floats[0]}"
                elif node.op_type in REQUANTIZING and not all(n in self.g.constants or n in data
                                                              for n in node.inputs if n):
                    why = "an input is neither integer nor constant"
                elif node.op_type == "Add" and (len(data) != 2
                                                or self.shapes.get(data[0]) != self.shapes.get(data[1])):
                    why = "integer Add needs two inputs of equal shapes (no broadcasting)"
            else:
                why = f"no int8 kernel for {node.op_type}"
            if why is None:
                unknown = [o for o in node.outputs if o and not self.known(o)]
                if node.op_type in ANCHORS and not self.known(node.inputs[0]):
                    unknown.insert(0, node.inputs[0])
                if unknown:
                    why = f"no calibration range for {unknown[0]}"
            ok = why is None
            if not ok:
                self.fallback[node.name] = why
            if ok:
                int_nodes.add(node.name)
                int_tensors.update(o for o in node.outputs if o)
                for t in data:
                    self.tensor_bits.setdefault(t, self.activation_bits(node))
                bits = self.tensor_bits[data[0]] if node.op_type in PASSTHROUGH else self.activation_bits(node)
                for o in node.outputs:
                    if o:
                        self.tensor_bits[o] = bits
        return self.float_boundaries(int_nodes)

    def float_boundaries(self, int_nodes: set) -> set:
        """Leave in fp32 the non-anchor integer nodes whose outputs no integer node reads (repeatedly),
        and mark the anchors left so as float-output (``self.float_out``)."""
        readers = {}
        for node in self.g.nodes:
            for t in node.inputs:
                if t:
                    readers.setdefault(t, []).append(node.name)
        int_read = lambda node: any(r in int_nodes for o in node.outputs if o for r in readers.get(o, ()))
        changed = True
        while changed:
            changed = False
            for node in reversed(self.g.nodes):
                if node.name in int_nodes and node.op_type not in ANCHORS and not int_read(node):
                    int_nodes.discard(node.name)
                    self.fallback[node.name] = "output read only by fp32 ops: computed in fp32, not rounded to 8 bits"
                    changed = True
        self.float_out = {n.name for n in self.g.nodes if n.name in int_nodes and n.op_type in ANCHORS
                          and not int_read(n)}
        return int_nodes

    def data_inputs(self, node: Node) -> list:
        if node.op_type in ANCHORS or node.op_type in PASSTHROUGH:
            return [node.inputs[0]] if node.inputs and node.inputs[0] not in self.g.constants else []
        return [n for n in node.inputs if n and n not in self.g.constants]

    def node_precision(self, node: Node) -> Precision:
        return self.node_precisions.get(node.name, self.p)

    def weight_bits(self, node: Node) -> int:
        return self.node_precision(node).bits

    def activation_bits(self, node: Node) -> int:
        """Explicit ``activation_bits``, else the weight bits (int2..int8); ternary weights keep 8-bit activations."""
        spec = self.node_precision(node)
        return self.abits or (spec.bits if spec.kind == "int" else 8)

    def qrange(self, tensor: str) -> tuple:
        bits = self.tensor_bits.get(tensor, self.abits or self.p.bits)
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if self.signed else (0, (1 << bits) - 1)

    def known(self, name: str) -> bool:
        """Whether tensor ``name`` has quantization parameters (calibrated or fixed)."""
        return name in self.qparams or name in self.ranges

    def tensor_qparams(self, name: str) -> tuple:
        if name not in self.qparams:
            lo, hi = self.ranges[name]
            bits = self.tensor_bits.get(name, self.abits or self.p.bits)
            self.qparams[name] = activation_qparams(lo, hi, bits, self.signed)
        return self.qparams[name]

    # ---- rewriting ---------------------------------------------------------------------
    def run(self) -> Graph:
        g = self.g
        int_nodes = self.decide()
        producers = {o: n for n in g.nodes for o in n.outputs if o}
        is_int = lambda t: t in producers and producers[t].name in int_nodes
        float_readers = {}
        for node in g.nodes:
            if node.name not in int_nodes:
                for t in node.inputs:
                    if t:
                        float_readers[t] = True
        graph_outputs = set(g.output_names())
        new_nodes, quantized = [], set()
        for node in g.nodes:
            if node.name not in int_nodes:
                if node.name in self.fallback:
                    node.quant = {**node.quant, "fallback": self.fallback[node.name]}
                new_nodes.append(node)
                continue
            for t in self.data_inputs(node):
                if not is_int(t) and t not in quantized:
                    scale, zp = self.tensor_qparams(t)
                    qmin, qmax = self.qrange(t)
                    new_nodes.append(Node("QuantizeLinear", f"{t}::quantize", [t], [f"{t}::q"],
                                          {"scale": scale, "zero_point": zp, "signed": int(self.signed),
                                           "qmin": qmin, "qmax": qmax}, precision=self.p.name))
                    quantized.add(t)
            # passthrough ops carry their input's parameters
            if node.op_type in PASSTHROUGH:
                self.qparams[node.outputs[0]] = self.tensor_qparams(node.inputs[0])
            new_nodes.append(self.convert(node))
            if node.name in self.float_out:
                continue
            for o in node.outputs:
                if o and (o in graph_outputs or float_readers.get(o)):
                    scale, zp = self.tensor_qparams(o)
                    new_nodes.append(Node("DequantizeLinear", f"{o}::dequantize", [f"{o}::q"], [o],
                                          {"scale": scale, "zero_point": zp}, precision=self.p.name))
        g.nodes = new_nodes
        used = {n for node in g.nodes for n in node.inputs if n}
        g.constants = {k: v for k, v in g.constants.items() if k in used}
        g.metadata["precision"] = self.p.name
        g.metadata["activation_type"] = "int8" if self.signed else "uint8"
        return g

    def clamp(self, node: Node, y_scale: float, y_zp: int) -> tuple:
        type_lo, type_hi = self.qrange(node.outputs[0])
        lo, hi = type_lo, type_hi
        a, b = node.attrs.get("clip_min", -math.inf), node.attrs.get("clip_max", math.inf)
        if math.isfinite(a):
            lo = max(lo, y_zp + int(np.rint(a / y_scale)))
        if math.isfinite(b):
            hi = min(hi, y_zp + int(np.rint(b / y_scale)))
        return lo, min(max(lo, hi), type_hi)

    def convert(self, node: Node) -> Node:
        q = lambda names: [f"{n}::q" if n and n not in self.g.constants else n for n in names]
        # A passthrough op's other inputs (Reshape's shape, Squeeze's axes) are integer plumbing, not
        # activations: only its data input becomes the integer tensor.
        inputs = q(node.inputs[:1]) + list(node.inputs[1:]) if node.op_type in PASSTHROUGH else q(node.inputs)
        out = Node(node.op_type, node.name, inputs, [f"{o}::q" if o else o for o in node.outputs],
                   dict(node.attrs), precision=self.node_precisions.get(node.name, self.p).name, fused=node.fused)
        if node.op_type in ANCHORS:
            return self.convert_anchor(node, out)
        y_scale, y_zp = self.tensor_qparams(node.outputs[0])
        signed = int(self.signed)
        qmin, qmax = self.qrange(node.outputs[0])
        if node.op_type == "Relu":
            out.attrs = {"zero_point": y_zp}
        elif node.op_type == "Add":
            (sa, za), (sb, zb) = (self.tensor_qparams(t) for t in node.inputs)
            out.attrs = {"a_scale": sa, "a_zero_point": za, "b_scale": sb, "b_zero_point": zb,
                         "y_scale": y_scale, "y_zero_point": y_zp, "qmin": qmin, "qmax": qmax,
                         "y_signed": signed}
        elif node.op_type == "Concat":
            params = [self.tensor_qparams(t) for t in node.inputs]
            out.attrs = {"axis": node.attrs["axis"], "in_scales": tuple(p[0] for p in params),
                         "in_zero_points": tuple(p[1] for p in params), "y_scale": y_scale, "y_zero_point": y_zp,
                         "y_signed": signed}
        elif node.op_type == "GlobalAveragePool":
            sx, zx = self.tensor_qparams(node.inputs[0])
            out.attrs = {"x_scale": sx, "x_zero_point": zx, "y_scale": y_scale, "y_zero_point": y_zp,
                         "qmin": qmin, "qmax": qmax, "y_signed": signed}
        return out

    def anchor_weights(self, node: Node, x_scale: float) -> tuple:
        """``(w_q, w_scale, bias_q or None)`` of an anchor; the bias in int32 at ``x_scale · w_scale``."""
        w, bias = layer_weights(self.g, node)
        fixed = self.fixed_weights.get(node.inputs[1])
        if fixed is not None and fixed[2] == 0 and (node.op_type == "Conv" or node.attrs.get("transB", 0)) \
                and node.attrs.get("alpha", 1.0) == 1.0:
            w_q, w_scale = fixed[0], fixed[1]
        else:
            w_q, w_scale = quantizers.for_precision(self.node_precision(node))(np.asarray(w, dtype=np.float64))
        acc_scale = x_scale * w_scale
        bias_q = None if bias is None else np.clip(np.rint(np.asarray(bias, np.float64) / acc_scale),
                                                   -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
        return w_q, w_scale, bias_q

    def store_weights(self, node: Node, w_q) -> str:
        name = f"{node.name}::w_q"
        bits = self.weight_bits(node)
        if bits < 8:  # ternary {-1, 0, 1} packs into 2 bits like int2
            self.g.constants[name] = pack_bits(w_q, bits)
            self.g.encodings[name] = {"precision": f"int{bits}", "bits": bits, "shape": list(w_q.shape)}
        else:
            self.g.constants[name] = w_q
        return name

    def convert_float_out(self, node: Node, out: Node, x_scale: float, x_zp: int) -> Node:
        """An anchor read only by fp32 ops: int32 accumulation, float32 output ``clip(acc · s_x s_w[m])``."""
        const = self.g.constants
        w_q, w_scale, bias_q = self.anchor_weights(node, x_scale)
        base = node.name
        w_name, b_name, s_name = self.store_weights(node, w_q), f"{base}::bias_q", f"{base}::acc_scale"
        const[s_name] = np.asarray(x_scale * np.asarray(w_scale, np.float64), np.float32).reshape(-1)
        if bias_q is not None:
            const[b_name] = bias_q
        out.inputs = [f"{node.inputs[0]}::q", w_name, b_name if bias_q is not None else "", "", "", s_name]
        out.outputs = list(node.outputs)
        out.quant = {"x_scale": x_scale, "x_zero_point": x_zp, "w_scale": np.asarray(w_scale, np.float32),
                     "output": "float32 from the int32 accumulator (read only by fp32 ops)",
                     "params": [n for n in (w_name, out.inputs[2]) if n]}
        clamp = {}
        for attr, key in (("clip_min", "y_min"), ("clip_max", "y_max")):
            v = node.attrs.get(attr)
            if v is not None and math.isfinite(v):
                clamp[key] = float(v)
        if node.op_type == "Conv":
            out.attrs = {k: v for k, v in node.attrs.items() if k in WINDOW_ATTRS}
            out.attrs.update(x_zero_point=x_zp, **clamp)
        else:
            out.op_type = "Gemm"
            out.attrs = {"a_zero_point": x_zp, **clamp}
        return out

    def convert_anchor(self, node: Node, out: Node) -> Node:
        const = self.g.constants
        x_scale, x_zp = self.tensor_qparams(node.inputs[0])
        if node.name in self.float_out:
            return self.convert_float_out(node, out, x_scale, x_zp)
        y_scale, y_zp = self.tensor_qparams(node.outputs[0])
        w_q, w_scale, bias_q = self.anchor_weights(node, x_scale)
        multiplier, shift = quantize_multiplier(x_scale * w_scale / y_scale)
        qmin, qmax = self.clamp(node, y_scale, y_zp)
        base = node.name
        names = {"w": self.store_weights(node, w_q), "b": f"{base}::bias_q", "m": f"{base}::multiplier",
                 "s": f"{base}::shift"}
        const[names["m"]], const[names["s"]] = multiplier.astype(np.int32), shift.astype(np.int32)
        inputs = [f"{node.inputs[0]}::q", names["w"], "", names["m"], names["s"]]
        if bias_q is not None:
            const[names["b"]] = bias_q
            inputs[2] = names["b"]
        out.inputs = inputs
        out.quant = {"x_scale": x_scale, "x_zero_point": x_zp, "y_scale": y_scale, "y_zero_point": y_zp,
                     "w_scale": w_scale.astype(np.float32),
                     "params": [n for n in (names["w"], inputs[2]) if n]}
        common = {"y_zero_point": y_zp, "qmin": qmin, "qmax": qmax, "y_signed": int(self.signed)}
        if node.op_type == "Conv":
            out.attrs = {k: v for k, v in node.attrs.items() if k in WINDOW_ATTRS}
            out.attrs.update(x_zero_point=x_zp, **common)
        else:
            out.op_type = "Gemm"
            out.attrs = {"a_zero_point": x_zp, **common}
        return out


def convert_int(graph: Graph, precision: Precision, ranges: dict, *, shapes: dict, exclude=frozenset(),
                activation_type: str = "uint8", first_layer: str | None = None, last_layer: str | None = None,
                activation_bits: int | None = None, fixed_qparams=None, fixed_weights=None,
                node_precisions: dict | None = None) -> Graph:
    """Return an integer copy of the fp32 ``graph``.

    Parameters
    ----------
    graph : Graph
        fp32 graph (BatchNorm folded, activations fused).
    precision : Precision
        int8 or intK: the weight bits.
    ranges : dict
        Calibration ranges ``{tensor: (lo, hi)}`` of the fp32 graph.
    shapes : dict
        Tensor shapes from one calibration sample (for eligibility checks).
    exclude : set of str
        Node names or op types kept in fp32.
    activation_type : {"uint8", "int8"}
        Asymmetric unsigned or symmetric signed activations.
    first_layer, last_layer : {"quantized", "int8", "fp32"}, optional
        Precision of the first / last weighted layer: the target precision,
        int8 (with 8-bit activations), or fp32.  Default: "quantized" for
        int8, "int8" below 8 bits and for ternary weights (the edge layers
        are the most sensitive and the cheapest to keep wider).
    activation_bits : int, optional
        Activation bits (default: the weight bits).
    fixed_qparams : dict, optional
        ``{tensor: (scale, zero_point, signed)}`` to use instead of calibration (QDQ import).
    fixed_weights : dict, optional
        ``{float constant: (q, per-channel scale, axis)}`` to reuse as the integer weights.
    node_precisions : dict, optional
        ``{node name: Precision}`` overriding ``precision`` per node (mixed
        precision); a non-integer entry keeps that node in fp32.
    """
    if activation_type not in ("uint8", "int8"):
        raise ValueError(f"activation_type must be 'uint8' or 'int8', got {activation_type!r}")
    default = "quantized" if precision.name == "int8" else "int8"
    policies = []
    for label, value in (("first_layer", first_layer), ("last_layer", last_layer)):
        value = default if value is None else ("quantized" if value == precision.name else value)
        if value not in ("quantized", "int8", "fp32"):
            raise ValueError(f"{label} must be 'quantized', 'int8' or 'fp32', got {value!r}")
        policies.append(value)
    return _IntConverter(graph, precision, ranges or {}, shapes, exclude, activation_type == "int8",
                         policies[0], policies[1], activation_bits, fixed_qparams, fixed_weights,
                         node_precisions).run()
