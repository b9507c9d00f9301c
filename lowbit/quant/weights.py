"""The weights of a Conv, Gemm or MatMul node, in the (out, in...) layout quantizers expect."""
from __future__ import annotations

import numpy as np

from ..graph.ir import Graph, Node


def layer_weights(graph: Graph, node: Node) -> tuple:
    """``(W, bias)`` of a weighted node, in float64, output channels on axis 0.

    Conv: ``W`` as stored (M, C/group, kH, kW).  Gemm: ``alpha · B`` as
    (N_out, K) whatever ``transB`` says, bias ``beta · C`` broadcast to
    (N_out,).  MatMul: ``Bᵀ``.  ``bias`` is None when the node has none.
    """
    const = graph.constants
    extra = node.inputs[2] if len(node.inputs) > 2 else ""
    if node.op_type == "Conv":
        return const[node.inputs[1]].astype(np.float64), (const[extra].astype(np.float64) if extra else None)
    if node.op_type == "Gemm":
        b = const[node.inputs[1]].astype(np.float64)
        w = (b if node.attrs.get("transB", 0) else b.T) * node.attrs.get("alpha", 1.0)
        bias = None
        if extra:
            bias = np.broadcast_to(const[extra].reshape(-1).astype(np.float64), (w.shape[0],)) \
                * node.attrs.get("beta", 1.0)
        return w, bias
    return const[node.inputs[1]].astype(np.float64).T, None
