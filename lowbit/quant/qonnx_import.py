"""Running QONNX models (Brevitas/FINN exports) on lowbit's integer and binary kernels.

A QONNX model is a float graph whose weights and activations pass through
``Quant(x, scale, zeropt, bitwidth; signed, narrow, rounding_mode)`` and
``BipolarQuant(x, scale)`` nodes of the ``qonnx.custom_op.general`` domain.
:func:`lower_qonnx` reads it back into lowbit's form, like
:mod:`lowbit.quant.qdq_import` does for QDQ:

* a Quant/BipolarQuant of a constant becomes the float constant it computes;
  a Quant weight's integers and per-output-channel scales are kept so the
  converter reuses them exactly (also through a folded BatchNorm, which
  rescales each channel);
* a Quant on an activation is removed and its ``(scale, zero point, signed,
  [lo, hi])`` recorded for that tensor: the integer kernels use that scale
  and clamp to that range;
* a BipolarQuant on an activation is removed and marks the weighted layers
  that read it (directly or through MaxPools: sign commutes with max) as
  binary; ``sign(0) = +1`` in both.  A scale other than 1 is folded into the
  readers' weights.

:func:`qonnx_graph` turns the lowered model into an integer graph
(:func:`lowbit.quant.convert_int.convert_int`) or a binary one
(:func:`lowbit.quant.convert_binary.convert_binary`).  Constructs with no
lowbit kernel (Trunc, MultiThreshold, per-channel activation scales, widths
above 8 bits, other rounding modes, binary weights on a non-bipolar input,
Quant and BipolarQuant activations in one model, ...) are all listed in one
:class:`~lowbit.errors.ModelLoadError` line.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelLoadError
from ..formats.precision import get as get_precision
from .convert_binary import convert_binary
from .convert_int import PASSTHROUGH, convert_int
from .weights import layer_weights

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas", "finn")
WEIGHTED = ("Conv", "Gemm", "MatMul")
ROUNDING = ("ROUND", "HALF_EVEN")
SIGN_COMMUTES = ("MaxPool", "Flatten", "Reshape")


def is_qonnx(model: onnx.ModelProto) -> bool:
    return any(node.domain in QONNX_DOMAINS for node in model.graph.node)


def _type_range(bits: int, signed: int, narrow: int) -> tuple:
    if signed:
        return -(1 << (bits - 1)) + int(bool(narrow)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(bool(narrow))


def _quant_values(x, scale, zp, lo, hi) -> np.ndarray:
    """The integers of ``Quant`` (round half to even), float64."""
    return np.clip(np.rint(np.asarray(x, np.float64) / scale + zp), lo, hi)


class _Lowering:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.attribute:
                attr = node.attribute[0]
                if attr.name == "value":
                    self.consts[node.output[0]] = numpy_helper.to_array(attr.t)
        self.problems = []
        self.alias = {}          # removed activation-Quant output -> its input
        self.new_consts = {}
        self.acts = {}           # tensor -> (scale, zp, signed, bits, lo, hi)
        self.bipolar = {}        # tensor -> scale
        self.weights = {}        # float constant -> (q int8, per-channel scale (M,), bits)
        self.binary_weights = set()

    def param(self, node, index, what):
        name = node.input[index] if len(node.input) > index else ""
        name = self.alias.get(name, name)
        if name not in self.consts:
            self.problems.append(f"{node.op_type} node '{node.name}' with a non-constant {what}")
            return None
        return np.asarray(self.consts[name], np.float64)

    def quant(self, node, attrs):
        scale, zp, bits = (self.param(node, i, w) for i, w in ((1, "scale"), (2, "zero point"), (3, "bit width")))
        if scale is None or zp is None or bits is None:
            return
        signed, narrow = int(attrs.get("signed", 1)), int(attrs.get("narrow", 0))
        mode = attrs.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        if bits.size != 1 or bits.ravel()[0] != int(bits.ravel()[0]) or not 1 <= int(bits.ravel()[0]) <= 32:
            self.problems.append(f"Quant node '{node.name}' with bit width {bits.ravel().tolist()}")
            return
        k = int(bits.ravel()[0])
        lo, hi = _type_range(k, signed, narrow)
        x, out = self.alias.get(node.input[0], node.input[0]), node.output[0]
        if x in self.consts:
            value = np.asarray(self.consts[x], np.float64)
            q = _quant_values(value, scale, zp, lo, hi)
            self.new_consts[out] = ((q - zp) * scale).astype(np.float32)
            if value.ndim >= 2:
                per_channel = scale.size == 1 or (scale.size == value.shape[0] and scale.shape[0] == value.shape[0])
                if k > 8 or not signed or np.any(zp != 0) or not per_channel:
                    self.problems.append(f"weight Quant node '{node.name}' (lowbit needs signed, zero-point-free, "
                                         "per-output-channel weights of at most 8 bits)")
                    return
                self.weights[out] = (q.astype(np.int8), np.broadcast_to(scale.ravel(), (value.shape[0],)).copy(), k)
            return
        if mode not in ROUNDING:
            self.problems.append(f"Quant node '{node.name}' with rounding_mode {mode}")
        if scale.size != 1 or zp.size != 1:
            self.problems.append(f"Quant node '{node.name}' with a per-channel activation scale")
        elif not 2 <= k <= 8 or zp.ravel()[0] != int(zp.ravel()[0]) or not lo <= zp.ravel()[0] <= hi:
            self.problems.append(f"activation Quant node '{node.name}' with bit width {k}, zero point "
                                 f"{zp.ravel()[0]:g} (lowbit: 2..8 bits, an integer zero point in range)")
        else:
            self.acts[x] = (float(scale.ravel()[0]), int(zp.ravel()[0]), signed, k, lo, hi)
        self.alias[out] = x

    def bipolar_quant(self, node):
        scale = self.param(node, 1, "scale")
        if scale is None:
            return
        x, out = self.alias.get(node.input[0], node.input[0]), node.output[0]
        if x in self.consts:
            value = np.asarray(self.consts[x], np.float64)
            self.new_consts[out] = (np.where(value >= 0, 1.0, -1.0) * scale).astype(np.float32)
            self.binary_weights.add(out)
            return
        if scale.size != 1 or scale.ravel()[0] <= 0:
            self.problems.append(f"BipolarQuant node '{node.name}' on an activation with scale "
                                 f"{scale.ravel().tolist()} (lowbit: one positive scale)")
        else:
            self.bipolar[x] = float(scale.ravel()[0])
        self.alias[out] = x

    def run(self) -> onnx.ModelProto:
        g = self.model.graph
        kept = []
        for node in g.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.domain in QONNX_DOMAINS:
                if node.op_type in ("Quant", "IntQuant"):
                    self.quant(node, attrs)
                elif node.op_type == "BipolarQuant":
                    self.bipolar_quant(node)
                else:
                    self.problems.append(f"{node.op_type} node '{node.name}'")
                continue
            kept.append(node)
        outputs = {o.name for o in g.output}
        nodes = []
        for node in kept:
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.input[:] = [self.resolve(n) for n in node.input]
            nodes.append(new)
        for name in outputs:   # a graph output that was a removed Quant's output keeps its name
            if name in self.alias:
                nodes.append(helper.make_node("Identity", [self.resolve(name)], [name], name=f"{name}::output"))
        used = {n for node in nodes for n in node.input}
        inits = [t for t in g.initializer if t.name in used]
        inits += [numpy_helper.from_array(v, n) for n, v in self.new_consts.items() if n in used]
        graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits,
                                  value_info=[v for v in g.value_info if v.name not in self.alias])
        opsets = [o for o in self.model.opset_import if o.domain not in QONNX_DOMAINS]
        lowered = helper.make_model(graph, opset_imports=opsets, producer_name=self.model.producer_name)
        lowered.ir_version = self.model.ir_version
        return lowered

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name


def lower_qonnx(model: onnx.ModelProto, label: str = "the model") -> tuple:
    """Strip the QONNX nodes; return ``(plain ONNX model, lowering)`` (see the module docstring).

    Raises
    ------
    ModelLoadError
        Listing every QONNX construct lowbit has no kernel for, in one line.
    """
    lowering = _Lowering(model)
    lowered = lowering.run()
    if lowering.acts and lowering.bipolar:
        lowering.problems.append("Quant and BipolarQuant activations in one model (lowbit runs a model "
                                 "either on integer or on binary kernels)")
    if len({a[2] for a in lowering.acts.values()}) > 1:
        lowering.problems.append("signed and unsigned activation Quants in one model")
    if lowering.problems:
        raise ModelLoadError(f"{label}: QONNX constructs lowbit has no kernel for: " + "; ".join(lowering.problems))
    return lowered, lowering


def _binary_layers(graph, lowering, label) -> set:
    """Weighted nodes reading a BipolarQuant activation (through MaxPools, Flatten or Reshape: sign
    commutes with them) with BipolarQuant weights."""
    producers = graph.producers()

    def sign_source(t):
        while t not in lowering.bipolar:
            p = producers.get(t)
            if p is None or p.op_type not in SIGN_COMMUTES:
                return None
            t = p.inputs[0]
        return t

    chosen, problems = set(), []
    readers = graph.consumers()
    for node in graph.nodes:
        if node.op_type not in WEIGHTED:
            continue
        binary_w = len(node.inputs) > 1 and node.inputs[1] in lowering.binary_weights
        source = sign_source(node.inputs[0])
        if binary_w and source is None:
            problems.append(f"binary weights on the non-bipolar input of node '{node.name}'")
        elif source is not None and not binary_w:
            problems.append(f"bipolar input to node '{node.name}' whose weights are not BipolarQuant")
        elif binary_w:
            s = lowering.bipolar[source]
            if s != 1.0:   # sign(x)·s · W = sign(x) · (s·W)
                w = node.inputs[1]
                if len(readers.get(w, [])) != 1:
                    problems.append(f"bipolar input scale {s:g} of node '{node.name}' with shared weights")
                graph.constants[w] = (graph.constants[w] * np.float32(s)).astype(np.float32)
            chosen.add(node.name)
    for t in lowering.bipolar:
        for r in readers.get(t, []):
            if r.op_type not in WEIGHTED + SIGN_COMMUTES:
                problems.append(f"BipolarQuant activation '{t}' read by {r.op_type} node '{r.name}'")
    if problems:
        raise ModelLoadError(f"{label}: QONNX constructs lowbit has no kernel for: " + "; ".join(problems))
    return chosen


def _fixed_weights(graph, lowering, names: dict, label) -> dict:
    """``{weight constant: (q, scale, 0)}`` after the graph passes (a folded BatchNorm rescales channels)."""
    fixed = {}
    for node in graph.nodes:
        if node.name not in names or node.op_type not in WEIGHTED:
            continue
        q, _, _ = lowering.weights[names[node.name]]
        w, _ = layer_weights(graph, node)
        q = q if node.op_type == "Conv" else q.reshape(w.shape) if q.shape == w.shape else q.T
        flat_q, flat_w = q.reshape(q.shape[0], -1).astype(np.float64), w.reshape(w.shape[0], -1)
        norm = (flat_q * flat_q).sum(axis=1)
        scale = np.where(norm > 0, (flat_q * flat_w).sum(axis=1) / np.where(norm > 0, norm, 1), 1.0)
        if not np.allclose(flat_q * scale[:, None], flat_w, rtol=1e-5, atol=1e-12):
            raise ModelLoadError(f"{label}: the quantized weights of node '{node.name}' are not per-output-channel "
                                 "multiples of their integers after the graph passes")
        flip = np.where(scale < 0, -1, 1).reshape((-1,) + (1,) * (q.ndim - 1))
        fixed[node.inputs[1]] = ((q * flip).astype(np.int8), np.where(scale == 0, 1.0, np.abs(scale)), 0)
    return fixed


def qonnx_graph(graph, lowering, *, shapes: dict, optimize_fn, label: str = "the model"):
    """The lowbit graph (integer or binary) of a lowered QONNX model's fp32 ``graph``."""
    if lowering.bipolar:
        binary = _binary_layers(graph, lowering, label)
        optimize_fn(graph)
        weighted = {n.name for n in graph.nodes if n.op_type in WEIGHTED}
        out = convert_binary(graph, get_precision("binary"), exclude=weighted - binary,
                             first_layer="binary", last_layer="binary")
        out.metadata["source_format"] = "qonnx"
        return out
    names = {n.name: n.inputs[1] for n in graph.nodes if n.op_type in WEIGHTED and len(n.inputs) > 1
             and n.inputs[1] in lowering.weights}
    precisions = {n.name: get_precision(f"int{lowering.weights[names[n.name]][2]}" if n.name in names else "fp32")
                  for n in graph.nodes if n.op_type in WEIGHTED}
    optimize_fn(graph)
    fixed = _fixed_weights(graph, lowering, names, label)
    qparams = {t: a[:3] for t, a in lowering.acts.items()}
    ranges = {t: a[4:] for t, a in lowering.acts.items()}
    bits = {t: a[3] for t, a in lowering.acts.items()}
    for node in graph.nodes:   # passthrough ops keep their input's parameters
        if node.op_type in PASSTHROUGH and node.inputs and node.inputs[0] in qparams:
            for o in node.outputs[:1]:
                if o not in qparams:
                    qparams[o], ranges[o], bits[o] = qparams[node.inputs[0]], ranges[node.inputs[0]], bits[node.inputs[0]]
    for node in graph.nodes:
        # a weighted layer whose output has no Quant: convert_int's float-output form (its output
        # parameters are never used; only fp32 ops read it)
        if node.name in names and node.inputs[0] in qparams and node.outputs[0] not in qparams:
            qparams[node.outputs[0]] = (1.0, 0, max({a[2] for a in lowering.acts.values()}))
    int_bits = [p.bits for p in precisions.values() if p.kind == "int"]
    main = get_precision(f"int{max(int_bits)}") if int_bits else get_precision("int8")
    signed = {a[2] for a in lowering.acts.values()}
    out = convert_int(graph, main, {}, shapes=shapes, fixed_qparams=qparams, fixed_weights=fixed,
                      activation_type="int8" if signed == {1} else "uint8", first_layer="quantized",
                      last_layer="quantized", activation_bits=max(bits.values()) if bits else None,
                      node_precisions=precisions)
    # Narrow each integer tensor to its own Quant range (convert_int used the widest activation width).
    for node in out.nodes:
        if "qmin" not in node.attrs or "qmax" not in node.attrs:
            continue
        t = node.inputs[0] if node.op_type == "QuantizeLinear" else node.outputs[0].removesuffix("::q")
        if t in ranges:
            lo, hi = ranges[t]
            node.attrs["qmin"], node.attrs["qmax"] = max(node.attrs["qmin"], lo), min(node.attrs["qmax"], hi)
            if node.op_type in WEIGHTED:
                node.quant["y_bits"] = bits[t]
    for name, spec in precisions.items():
        node = next((n for n in out.nodes if n.name == name), None)
        if spec.kind == "int" and node is not None and node.precision == "fp32":
            raise ModelLoadError(f"{label}: node '{name}' has quantized weights but runs in fp32 "
                                 f"({node.quant.get('fallback', 'an input or output without a Quant')})")
    out.metadata["source_format"] = "qonnx"
    if len(set(int_bits)) > 1:
        out.metadata["precision"] = "mixed"
    return out


def read_qonnx(model: onnx.ModelProto):
    """``model`` when it is a QONNX model, else None (the caller reads the file, safely, once)."""
    return model if is_qonnx(model) else None
