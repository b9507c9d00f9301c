"""Export a trained net as a float32 ONNX model (inference form)."""
from __future__ import annotations

import os

import onnx
from onnx import TensorProto, helper

from lowbit.train.layers import Dropout

OPSET = 13


def to_onnx(net, name="lowbit_net", doc=""):
    """Build the ONNX model of ``net`` in inference mode.

    Dropout is omitted (it is the identity at inference), BatchNorm becomes ``BatchNormalization`` with the
    running statistics. Input ``"input"`` is float32 ``(N, C, H, W)`` with a symbolic
    batch; the single output ``"logits"`` is float32 ``(N, classes)`` (no softmax).

    Returns
    -------
    onnx.ModelProto
    """
    nodes, inits = [], []
    alias = {}  # a Dropout's output is its input
    for node_name, layer, inputs in net.nodes:
        if isinstance(layer, Dropout):
            alias[node_name] = alias.get(inputs[0], inputs[0])
    rename = {net.INPUT: "input", alias.get(net.output, net.output): "logits"}

    def onnx_name(t):
        t = alias.get(t, t)
        return rename.get(t, t)

    for node_name, layer, inputs in net.nodes:
        if isinstance(layer, Dropout):
            continue
        ns, ts = layer.onnx([onnx_name(i) for i in inputs], onnx_name(node_name), node_name)
        nodes += ns
        inits += ts
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *net.input_shape])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", None])
    graph = helper.make_graph(nodes, name, [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="lowbit.train", doc_string=doc)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def export_onnx(net, path, name="lowbit_net", doc=""):
    """Write :func:`to_onnx` to ``path`` atomically; return the model."""
    model = to_onnx(net, name, doc)
    tmp = os.fspath(path) + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, path)
    return model
