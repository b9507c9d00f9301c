"""Graph passes run after import: fold, simplify, fuse.

``optimize(graph, evaluate)`` applies, in order:

1. constant folding — every node whose inputs are all constants is run once
   and replaced by its outputs;
2. shape-plumbing folding — the Shape→Gather→Unsqueeze→Concat→Reshape chains
   exporters emit are evaluated on probe batches of 1 and 2 images; a value
   that does not change is a constant, and a Reshape target whose only
   change is its leading batch entry becomes ``0`` ("copy the input's dim");
3. no-op removal — Identity and inference Dropout;
4. BatchNormalization folded into the preceding Conv or Gemm:
   ``W' = W · γ/√(σ²+ε)`` per output channel, ``b' = (b − μ) · γ/√(σ²+ε) + β``;
5. Conv/Gemm + Relu/Clip fused into the Conv/Gemm's ``clip_min``/``clip_max``;
6. dead-node and unused-constant elimination.

``evaluate(graph, feeds, names)`` runs the graph and returns the requested
tensors; it is passed in so that this module does not import the executor.
"""
from __future__ import annotations

import numpy as np

from ..config import MAX_FOLDED_ELEMENTS
from ..errors import ModelLoadError
from .fusions import fuse_patterns
from .ir import Graph, Node

FOLDABLE_SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Mul",
                      "Add", "Sub", "Div", "Identity", "ConstantOfShape", "Reshape", "Flatten"}


def fold_constants(graph: Graph, kernel_for) -> None:
    """Run every node whose inputs are all constants; keep its outputs as constants.

    A node that cannot run on its constants, or whose output would exceed
    :data:`lowbit.config.MAX_FOLDED_ELEMENTS`, is refused with a
    :class:`~lowbit.errors.ModelLoadError` naming it (a 200-byte model must not
    allocate gigabytes at load).
    """
    kept = []
    for node in graph.nodes:
        if node.inputs and all(name == "" or name in graph.constants for name in node.inputs):
            args = [graph.constants[n] if n else None for n in node.inputs]
            _check_folded_size(node, args)
            try:
                result = kernel_for(node.op_type, "fp32")(*args, **node.attrs)
            except (ValueError, IndexError, TypeError, ZeroDivisionError, OverflowError, MemoryError) as exc:
                shapes = [None if a is None else tuple(np.shape(a)) for a in args]
                raise ModelLoadError(f"node '{node.name}' ({node.op_type}) cannot run on its constant inputs "
                                     f"{shapes}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            results = result if isinstance(result, tuple) else (result,)
            for value in results:
                if np.size(value) > MAX_FOLDED_ELEMENTS:
                    raise ModelLoadError(f"node '{node.name}' ({node.op_type}) folds to {np.size(value):,} elements; "
                                         f"expected at most {MAX_FOLDED_ELEMENTS:,}")
            for name, value in zip(node.outputs, results):
                if name:
                    graph.constants[name] = np.asarray(value)
        else:
            kept.append(node)
    graph.nodes = kept


def _check_folded_size(node, args) -> None:
    """Refuse, before allocating, the ops that make large tensors out of small constants."""
    op = node.op_type
    try:
        if op == "ConstantOfShape":
            dims = [int(d) for d in np.asarray(args[0]).reshape(-1)]
        elif op == "Expand":
            target = [int(d) for d in np.asarray(args[1]).reshape(-1)]
            shape = list(np.shape(args[0]))
            rank = max(len(target), len(shape))
            target, shape = [1] * (rank - len(target)) + target, [1] * (rank - len(shape)) + shape
            dims = [max(a, b) for a, b in zip(target, shape)]
        elif op == "Tile":
            dims = [int(s) * int(r) for s, r in zip(np.shape(args[0]), np.asarray(args[1]).reshape(-1))]
        elif op == "Range":
            start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in args[:3])
            dims = [max(0, int(np.ceil((limit - start) / delta)))] if delta else [0]
        else:
            return
    except (TypeError, ValueError, IndexError, OverflowError):
        return  # malformed inputs: the kernel itself reports them
    count = 1
    for d in dims:
        if d < 0:
            return
        count *= d
    if count > MAX_FOLDED_ELEMENTS:
        raise ModelLoadError(f"node '{node.name}' ({op}) would fold to {count:,} elements at load; "
                             f"expected at most {MAX_FOLDED_ELEMENTS:,}")


#: Inputs (by position) whose *values* set the shape of an op's output; ``None``: every input.
SHAPE_ARGUMENTS = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Pad": (1, 3), "Slice": (1, 2, 3, 4), "Resize": (1, 2, 3),
    "Upsample": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "Split": (1,), "Squeeze": (1,),
    "Unsqueeze": (1,), "TopK": (1,), "OneHot": (1,), "NonZero": None, "Compress": None, "CenterCropPad": (1,),
    "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "ReduceProd": (1,),
    "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
}


def value_shaped(graph: Graph, derived=frozenset()) -> set:
    """Tensors whose *shape* may depend on the values (not only the shapes) of the graph inputs.

    A node's outputs are value-shaped when one of its inputs is, or when a runtime value (neither a
    constant nor in ``derived``) feeds one of its :data:`SHAPE_ARGUMENTS`.
    """
    shaped = set()
    for node in graph.nodes:
        positions = SHAPE_ARGUMENTS.get(node.op_type, ())
        runtime = [i for i, n in enumerate(node.inputs) if n and n not in graph.constants and n not in derived]
        if (any(n in shaped for n in node.inputs if n)
                or (positions is None and runtime) or any(i in positions for i in runtime if positions)):
            shaped.update(o for o in node.outputs if o)
    return shaped


def shape_derived(graph: Graph) -> set:
    """Names of tensors that depend on runtime inputs only through their shapes.

    ``Shape(t)`` qualifies only when ``t``'s shape follows from the input shapes alone: a tensor
    padded, reshaped or sliced by runtime *values* (an integer graph input, say) has a shape no
    probe batch can fix.
    """
    derived = set()
    for _ in range(len(graph.nodes) + 1):
        shaped = value_shaped(graph, derived)
        grown = set()
        for node in graph.nodes:
            if (node.op_type == "Shape" and node.inputs and node.inputs[0] not in shaped) or (
                    node.op_type in FOLDABLE_SHAPE_OPS and node.op_type != "Shape" and node.inputs
                    and all(n == "" or n in graph.constants or n in grown for n in node.inputs)):
                grown.update(o for o in node.outputs if o)
        if grown == derived:
            return derived
        derived = grown
    return derived


def fold_shape_plumbing(graph: Graph, evaluate) -> None:
    """Fold tensors computed from input shapes, probing with batches of 1 and 2."""
    derived = shape_derived(graph)
    if not derived:
        return
    users = graph.consumers()
    reshape_data = {r.inputs[0] for name in derived for r in users.get(name, []) if r.op_type == "Reshape"}
    probes = []
    for batch in (1, 2):
        feeds = {}
        for info in graph.inputs:
            if not info.shape or any(d is None for d in info.shape[1:]) or info.dtype is None:
                return
            # Only a dynamic leading dim is the batch; declared dims are fed as declared.
            lead = batch if info.shape[0] is None else info.shape[0]
            feeds[info.name] = np.zeros((lead,) + tuple(info.shape[1:]), dtype=info.dtype)
        probes.append(evaluate(graph, feeds, sorted(derived | reshape_data)))
    one, two = probes
    for name in derived:
        a, b = np.asarray(one[name]), np.asarray(two[name])
        if a.shape == b.shape and np.array_equal(a, b):
            graph.constants[name] = a
            continue
        # A Reshape target that differs only in its leading entry, which follows the batch
        # as the data's leading dim does: that entry becomes 0, "copy dim 0 of the input".
        readers = users.get(name, [])
        batch_follows = all(
            r.op_type == "Reshape" and r.inputs[1] == name and not r.attrs.get("allowzero", 0)
            and np.shape(one[r.inputs[0]])[:1] == (1,) and np.shape(two[r.inputs[0]])[:1] == (2,)
            for r in readers)
        if (readers and batch_follows and a.ndim == 1 and a.shape == b.shape and a.size
                and (a[0], b[0]) == (1, 2) and np.array_equal(a[1:], b[1:])):
            target = a.copy()
            target[0] = 0
            graph.constants[name] = target
    graph.nodes = [n for n in graph.nodes if not all(o in graph.constants for o in n.outputs if o)]


def rename_uses(graph: Graph, old: str, new: str) -> None:
    for node in graph.nodes:
        node.inputs = [new if n == old else n for n in node.inputs]


def remove_noops(graph: Graph) -> None:
    """Drop Identity and inference Dropout, rewiring their readers."""
    outputs = set(graph.output_names())
    for node in list(graph.nodes):
        if node.op_type not in ("Identity", "Dropout"):
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if len([o for o in node.outputs if o]) > 1:
            continue  # a Dropout whose mask is read stays
        if dst not in outputs:
            graph.nodes.remove(node)
            rename_uses(graph, dst, src)
            continue
        producer = graph.producers().get(src)
        if producer is not None and src not in outputs:
            graph.nodes.remove(node)
            producer.outputs = [dst if o == src else o for o in producer.outputs]
            rename_uses(graph, src, dst)


def _single_reader(graph: Graph, name: str):
    readers = graph.consumers().get(name, [])
    if len(readers) != 1 or name in graph.output_names():
        return None
    return readers[0]


def fold_batchnorm(graph: Graph) -> None:
    """Fold inference BatchNormalization into the Conv or Gemm that feeds it.

    Per output channel ``f = γ/√(σ²+ε)``: the weights of that channel are
    multiplied by ``f`` and the bias becomes ``(b − μ)·f + β`` (for Gemm,
    ``alpha`` and ``beta`` are folded in first).
    """
    producers = graph.producers()
    for bn in list(graph.nodes):
        if bn.op_type != "BatchNormalization" or len(bn.inputs) < 5:
            continue
        base = producers.get(bn.inputs[0])
        if base is None or base.op_type not in ("Conv", "Gemm") or base.fused \
                or _single_reader(graph, bn.inputs[0]) is not bn:
            continue
        if not all(n in graph.constants for n in base.inputs[1:] + bn.inputs[1:5] if n):
            continue
        if base.op_type == "Gemm" and base.attrs.get("transA", 0):
            continue
        gamma, beta, mean, var = (graph.constants[n].astype(np.float64).reshape(-1) for n in bn.inputs[1:5])
        factor = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        w = graph.constants[base.inputs[1]].astype(np.float64)
        has_bias = len(base.inputs) > 2 and base.inputs[2]
        if base.op_type == "Conv":
            out_first = w
            bias = graph.constants[base.inputs[2]].astype(np.float64).reshape(-1) if has_bias else np.zeros(w.shape[0])
        else:
            out_first = (w if base.attrs.get("transB", 0) else w.T) * base.attrs.get("alpha", 1.0)
            bias = np.zeros(out_first.shape[0])
            if has_bias:
                bias = np.broadcast_to(graph.constants[base.inputs[2]].astype(np.float64).reshape(-1),
                                       (out_first.shape[0],)) * base.attrs.get("beta", 1.0)
            if factor.size != out_first.shape[0]:
                continue
        folded = out_first * factor.reshape(-1, *([1] * (out_first.ndim - 1)))
        w_name, b_name = f"{base.name}::W_bn", f"{base.name}::B_bn"
        graph.constants[w_name] = folded.astype(np.float32)
        graph.constants[b_name] = ((bias - mean) * factor + beta).astype(np.float32)
        base.inputs = [base.inputs[0], w_name, b_name]
        if base.op_type == "Gemm":
            base.attrs.update(transB=1, alpha=1.0, beta=1.0)
        base.outputs = [bn.outputs[0]]
        base.fused = base.fused + ("BatchNormalization",)
        graph.nodes.remove(bn)
        producers = graph.producers()


def fuse_activations(graph: Graph) -> None:
    """Fuse Relu and constant-bound Clip into the preceding Conv or Gemm."""
    producers = graph.producers()
    for act in list(graph.nodes):
        if act.op_type not in ("Relu", "Clip"):
            continue
        base = producers.get(act.inputs[0])
        if base is None or base.op_type not in ("Conv", "Gemm") or "clip_min" in base.attrs \
                or _single_reader(graph, act.inputs[0]) is not act:
            continue
        if act.op_type == "Relu":
            lo, hi = 0.0, float("inf")
        else:
            bounds = act.inputs[1:] + ["", ""]
            if not all(n == "" or n in graph.constants for n in bounds[:2]):
                continue
            lo = float(graph.constants[bounds[0]]) if bounds[0] else float("-inf")
            hi = float(graph.constants[bounds[1]]) if bounds[1] else float("inf")
        base.attrs["clip_min"], base.attrs["clip_max"] = lo, hi
        base.outputs = [act.outputs[0]]
        base.fused = base.fused + (act.op_type,)
        graph.nodes.remove(act)
        producers = graph.producers()


def eliminate_dead(graph: Graph) -> None:
    """Remove nodes nothing reads and constants no node reads."""
    needed = set(graph.output_names())
    kept = []
    for node in reversed(graph.nodes):
        if any(o in needed for o in node.outputs if o):
            kept.append(node)
            needed.update(n for n in node.inputs if n)
    graph.nodes = kept[::-1]
    graph.constants = {k: v for k, v in graph.constants.items() if k in needed}


def optimize(graph: Graph, kernel_for, evaluate) -> Graph:
    """Apply all passes in place and return the graph."""
    fold_constants(graph, kernel_for)
    fold_shape_plumbing(graph, evaluate)
    fold_constants(graph, kernel_for)
    remove_noops(graph)
    fuse_patterns(graph)   # written-out LayerNorm / GELU chains -> one node each
    fold_batchnorm(graph)
    fuse_activations(graph)
    eliminate_dead(graph)
    return graph
