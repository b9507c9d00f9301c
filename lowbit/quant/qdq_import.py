"""Running QDQ models (onnxruntime's quantizer output) on lowbit's integer kernels.

A QDQ model is an fp32 graph whose tensors pass through
``QuantizeLinear → DequantizeLinear`` pairs, with int8 weights behind a
``DequantizeLinear``.  :func:`lower_qdq` reads it back into lowbit's form:

* a DequantizeLinear of a constant becomes the float constant
  ``(q − zp) · s`` and its integer values and scales are kept, so the
  converter reuses them exactly;
* a QuantizeLinear → DequantizeLinear pair on an activation is removed and
  its ``(scale, zero point)`` recorded for that tensor.

The result is an fp32 graph plus fixed quantization parameters, which
:func:`lowbit.quant.convert_int.convert_int` turns into the integer graph.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelLoadError
from ..graph.ir import Graph
from ..graph.passes import rename_uses

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def is_qdq(graph: Graph) -> bool:
    return any(node.op_type in QDQ_OPS for node in graph.nodes)


def _param(graph: Graph, node, index, default=0):
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name:
        return np.asarray(default)
    if name not in graph.constants:
        raise ModelLoadError(f"{node.op_type} node '{node.name}' has a non-constant scale or zero point; "
                             "lowbit needs static quantization parameters")
    return graph.constants[name]


def lower_qdq(graph: Graph) -> tuple:
    """Strip Q/DQ nodes; return ``(graph, activation_qparams, weight_quant)``.

    ``activation_qparams`` maps a float tensor to ``(scale, zero_point, signed)``;
    ``weight_quant`` maps a float constant to ``(q int array, per-channel scales)``.
    """
    qparams, weights = {}, {}
    readers = graph.consumers()
    kept = []
    for node in graph.nodes:
        if node.op_type == "DequantizeLinear" and node.inputs[0] in graph.constants:
            q = graph.constants[node.inputs[0]]
            scale = _param(graph, node, 1).astype(np.float32)
            zp = _param(graph, node, 2, 0)
            axis = node.attrs.get("axis", 1)
            shape = [1] * q.ndim
            if scale.size > 1:
                shape[axis] = scale.size
            value = ((q.astype(np.int64) - zp.astype(np.int64).reshape(shape if zp.size > 1 else ())).astype(np.float32)
                     * scale.reshape(shape))
            graph.constants[node.outputs[0]] = value.astype(np.float32)
            if q.dtype == np.int8 and not np.any(zp) and q.ndim >= 2 and (scale.size == q.shape[0] or scale.size == 1):
                weights[node.outputs[0]] = (q, np.broadcast_to(scale.astype(np.float64), (q.shape[0],)).copy(), axis)
            continue
        kept.append(node)
    graph.nodes = kept
    by_output = {o: n for n in graph.nodes for o in n.outputs}
    for node in list(graph.nodes):
        if node.op_type != "DequantizeLinear":
            continue
        quant = by_output.get(node.inputs[0])
        if quant is None or quant.op_type != "QuantizeLinear":
            raise ModelLoadError(f"DequantizeLinear '{node.name}' does not follow a QuantizeLinear; "
                                 "expected onnxruntime's QDQ format")
        source = quant.inputs[0]
        scale = float(_param(graph, quant, 1))
        zp = _param(graph, quant, 2, np.uint8(0))
        graph.nodes.remove(node)
        producer = next((n for n in graph.nodes if source in n.outputs), None)
        if node.outputs[0] in graph.output_names() and producer is not None:
            # keep the model's output name: the float producer writes it directly
            producer.outputs = [node.outputs[0] if o == source else o for o in producer.outputs]
            rename_uses(graph, source, node.outputs[0])
            source = node.outputs[0]
        else:
            rename_uses(graph, node.outputs[0], source)
        qparams[source] = (scale, int(zp), int(zp.dtype == np.int8))
    for node in list(graph.nodes):
        if node.op_type == "QuantizeLinear":
            if graph.consumers().get(node.outputs[0]):
                raise ModelLoadError(f"QuantizeLinear '{node.name}' feeds something other than a "
                                     "DequantizeLinear; expected onnxruntime's QDQ format")
            graph.nodes.remove(node)
    return graph, qparams, weights
