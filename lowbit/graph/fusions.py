"""Pattern fusions: the written-out LayerNorm and GELU of real exports, back into one node each.

Exporters that predate (or avoid) the ONNX ops write

* LayerNorm as ``m = ReduceMean(x); d = Sub(x, m); v = ReduceMean(Pow(d, 2))``
  (or ``Mul(d, d)``) ``; y = Div(d, Sqrt(Add(v, eps)))`` ``[; Mul(y, gamma)]
  [; Add(., beta)]``, both means over the same trailing axes with
  ``keepdims=1``;
* GELU as ``x * 0.5 * (1 + Erf(x / sqrt(2)))``: ``Div`` by 1.4142135 or
  ``Mul`` by 0.70710677, ``Add`` (or a two-input ``Sum``) of 1, the three
  factors multiplied in any grouping and operand order.

:func:`fuse_patterns` replaces each such chain by one ``LayerNormalization``
(``axis = -k``) or ``Gelu`` node.  A chain is fused only when every
intermediate tensor is read by the chain alone (and is no graph output),
the constants are what the pattern needs (within float32 tolerance), and
gamma and beta vary along the normalized axes only.
"""
from __future__ import annotations

import math

import numpy as np

from .ir import Graph, Node

#: Relative tolerance on the pattern's constants (2, 1, 0.5, sqrt(2), 1/sqrt(2)).
RTOL = 1e-5


class _View:
    """Producers, readers and constants of a graph, for matching."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.producers = graph.producers()
        self.readers = {}
        for node in graph.nodes:
            for name in dict.fromkeys(n for n in node.inputs if n):
                self.readers.setdefault(name, []).append(node)
        self.outputs = set(graph.output_names())

    def sole_reader(self, name: str, op_type: str):
        """The one fp32 node of ``op_type`` reading ``name`` (an intermediate, not a graph output), or None."""
        readers = self.readers.get(name, [])
        if len(readers) != 1 or name in self.outputs or readers[0].op_type != op_type \
                or readers[0].precision != "fp32":
            return None
        return readers[0]

    def scalar(self, name: str):
        """The value of a one-element float constant of rank <= 1, or None."""
        value = self.graph.constants.get(name)
        if value is None or value.size != 1 or value.ndim > 1 or value.dtype.kind != "f":
            return None
        return float(value.reshape(-1)[0])

    def other(self, node: Node, name: str):
        """The input of a two-input node that is not ``name`` (None if neither or both are)."""
        if len(node.inputs) != 2 or node.inputs.count(name) != 1:
            return None
        return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _near(value, target) -> bool:
    return value is not None and math.isclose(value, target, rel_tol=RTOL)


def _replace(graph: Graph, removed: list, fused: Node) -> None:
    """Put ``fused`` where the last node of ``removed`` was and drop the others."""
    last = max(graph.nodes.index(n) for n in removed)
    graph.nodes[last] = fused
    gone = {id(n) for n in removed}
    graph.nodes = [n for n in graph.nodes if id(n) not in gone or n is fused]


# --- LayerNorm ------------------------------------------------------------------------------

def _rank(view: _View, name: str):
    shape = view.graph.metadata.get("static_shapes", {}).get(name)
    if shape is None:
        shape = next((i.shape for i in view.graph.inputs if i.name == name), None)
    return None if shape is None else len(shape)


def _trailing_axes(view: _View, node: Node, x: str):
    """The number k of normalized axes when ``node`` (ReduceMean, keepdims) reduces the last k axes of ``x``.

    The axes are an input (opset 18) or an attribute (before); none at all means every axis.
    """
    if node.attrs.get("keepdims", 1) != 1:
        return None
    if len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in view.graph.constants:
            return None
        axes = [int(a) for a in np.asarray(view.graph.constants[node.inputs[1]]).reshape(-1)]
    else:
        axes = [int(a) for a in node.attrs.get("axes", ())]
    if not axes:
        rank = None if node.attrs.get("noop_with_empty_axes", 0) else _rank(view, x)
        return rank or None
    if any(a >= 0 for a in axes):
        rank = _rank(view, x)
        if rank is None:
            return None
        axes = [a - rank if a >= 0 else a for a in axes]
    k = len(axes)
    return k if sorted(axes) == list(range(-k, 0)) else None


def _affine_constant(view: _View, name: str, k: int):
    """A float constant that varies along the last ``k`` axes only, its leading unit axes dropped; or None."""
    value = view.graph.constants.get(name)
    if value is None or value.dtype.kind != "f":
        return None
    while value.ndim > k and value.shape[0] == 1:
        value = value[0]
    return value if value.ndim <= k else None


def _match_layer_norm(view: _View, mean1: Node):
    x = mean1.inputs[0] if mean1.inputs else ""
    k = _trailing_axes(view, mean1, x)
    sub = view.sole_reader(mean1.outputs[0], "Sub") if k else None
    if sub is None or sub.inputs != [x, mean1.outputs[0]]:
        return None
    d = sub.outputs[0]
    readers = view.readers.get(d, [])
    if len(readers) != 2 or d in view.outputs:
        return None
    square = next((n for n in readers if n.op_type == "Pow" and n.inputs[0] == d and len(n.inputs) == 2
                   and _near(view.scalar(n.inputs[1]), 2.0)
                   or n.op_type == "Mul" and n.inputs == [d, d]), None)
    div = next((n for n in readers if n.op_type == "Div" and n.inputs[0] == d and n is not square), None)
    if square is None or div is None:
        return None
    mean2 = view.sole_reader(square.outputs[0], "ReduceMean")
    if mean2 is None or mean2.inputs[0] != square.outputs[0] or _trailing_axes(view, mean2, x) != k:   # (d and its square have x's rank)
        return None
    add = view.sole_reader(mean2.outputs[0], "Add")
    eps = view.scalar(view.other(add, mean2.outputs[0])) if add is not None else None
    if eps is None or eps < 0:
        return None
    sqrt = view.sole_reader(add.outputs[0], "Sqrt")
    if sqrt is None or view.sole_reader(sqrt.outputs[0], "Div") is not div or div.inputs != [d, sqrt.outputs[0]]:
        return None
    chain = [mean1, sub, square, mean2, add, sqrt, div]
    if any(n.precision != "fp32" for n in chain):
        return None
    out, scale, bias = div.outputs[0], None, None
    mul = view.sole_reader(out, "Mul")
    if mul is not None and view.other(mul, out) is not None:
        scale = _affine_constant(view, view.other(mul, out), k)
        if scale is not None:
            chain.append(mul)
            out = mul.outputs[0]
    add_b = view.sole_reader(out, "Add")
    if add_b is not None and view.other(add_b, out) is not None:
        bias = _affine_constant(view, view.other(add_b, out), k)
        if bias is not None:
            chain.append(add_b)
            out = add_b.outputs[0]
    return x, k, eps, scale, bias, chain, out


def fuse_layer_norm(graph: Graph) -> int:
    """Replace written-out LayerNorm chains by ``LayerNormalization`` nodes; return how many."""
    count = 0
    for mean1 in [n for n in graph.nodes if n.op_type == "ReduceMean"]:
        if mean1 not in graph.nodes or mean1.precision != "fp32":
            continue
        match = _match_layer_norm(_View(graph), mean1)
        if match is None:
            continue
        x, k, eps, scale, bias, chain, out = match
        name = chain[-1].name
        if scale is None:
            shape = graph.metadata.get("static_shapes", {}).get(x)
            norm_shape = tuple(shape[-k:]) if shape and None not in shape[-k:] else (1,)
            scale = np.ones(norm_shape, dtype=np.float32)
        inputs = [x, f"{name}::ln_scale"]
        graph.constants[inputs[1]] = np.asarray(scale, dtype=np.float32)
        if bias is not None:
            inputs.append(f"{name}::ln_bias")
            graph.constants[inputs[2]] = np.asarray(bias, dtype=np.float32)
        _replace(graph, chain, Node("LayerNormalization", name, inputs, [out],
                                    {"axis": -k, "epsilon": float(np.float32(eps))}))
        count += 1
    return count


# --- GELU -----------------------------------------------------------------------------------

def _match_gelu(view: _View, erf: Node):
    scaled = erf.inputs[0]
    pre = view.producers.get(scaled)
    if pre is None or view.sole_reader(scaled, "Erf") is not erf:
        return None
    if pre.op_type == "Div" and len(pre.inputs) == 2 and _near(view.scalar(pre.inputs[1]), math.sqrt(2.0)):
        x = pre.inputs[0]
    elif pre.op_type == "Mul" and len(pre.inputs) == 2:
        x = next((a for a, b in (pre.inputs, pre.inputs[::-1]) if _near(view.scalar(b), math.sqrt(0.5))
                  and view.scalar(a) is None), None)
    else:
        return None
    add = view.sole_reader(erf.outputs[0], "Add") or view.sole_reader(erf.outputs[0], "Sum")  # (ONNX's own expansion)
    if x is None or add is None or not _near(view.scalar(view.other(add, erf.outputs[0])), 1.0):
        return None
    mul1 = view.sole_reader(add.outputs[0], "Mul")
    other = view.other(mul1, add.outputs[0]) if mul1 is not None else None
    if other is None:
        return None
    chain = [pre, erf, add, mul1]
    if other == x or _near(view.scalar(other), 0.5):
        # (x * (1 + erf)) * 0.5  or  ((1 + erf) * 0.5) * x
        mul2 = view.sole_reader(mul1.outputs[0], "Mul")
        last = view.other(mul2, mul1.outputs[0]) if mul2 is not None else None
        if last is None or not (_near(view.scalar(last), 0.5) if other == x else last == x):
            return None
        chain.append(mul2)
    else:
        # (x * 0.5) * (1 + erf)
        half = view.producers.get(other)
        if half is None or half.op_type != "Mul" or view.sole_reader(other, "Mul") is not mul1 \
                or not _near(view.scalar(view.other(half, x)), 0.5):
            return None
        chain.insert(0, half)
    return x, chain


def fuse_gelu(graph: Graph) -> int:
    """Replace written-out erf GELU chains by ``Gelu`` nodes; return how many."""
    count = 0
    for erf in [n for n in graph.nodes if n.op_type == "Erf"]:
        if erf not in graph.nodes or erf.precision != "fp32":
            continue
        match = _match_gelu(_View(graph), erf)
        if match is None:
            continue
        x, chain = match
        if any(n.precision != "fp32" for n in chain):
            continue
        _replace(graph, chain, Node("Gelu", chain[-1].name, [x], [chain[-1].outputs[0]], {"approximate": "none"}))
        count += 1
    return count


def fuse_patterns(graph: Graph) -> None:
    """Apply :func:`fuse_layer_norm` and :func:`fuse_gelu` in place."""
    fuse_layer_norm(graph)
    fuse_gelu(graph)
