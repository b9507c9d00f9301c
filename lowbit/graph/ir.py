"""lowbit's own graph IR: plain dataclasses, no onnx objects.

A :class:`Graph` is a topologically sorted list of :class:`Node` objects whose
inputs and outputs are tensor names.  A name is either a runtime input, a
constant (``Graph.constants``, numpy arrays) or the output of an earlier node.
The empty string stands for an omitted optional input, as in ONNX.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ValueInfo:
    """A graph input or output: name, shape (``None`` for a dynamic dim) and dtype."""

    name: str
    shape: tuple | None
    dtype: np.dtype

    def describe_shape(self) -> str:
        if self.shape is None:
            return "?"
        return "(" + ", ".join("N" if d is None else str(d) for d in self.shape) + ")"


@dataclass
class Node:
    """One operator application.

    ``attrs`` holds ONNX attributes by their ONNX names as plain Python values
    (int, float, str, tuples, numpy arrays); they are passed to the kernel as
    keyword arguments.  ``precision`` names the kernel family the executor
    dispatches to (``"fp32"`` for the float path); ``fused`` lists the op
    types folded into this node by the graph passes; ``quant`` holds the
    executor-level quantization parameters that are not kernel arguments
    (e.g. ``{"output_scale": s}`` for fp8 activations).
    """

    op_type: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    precision: str = "fp32"
    fused: tuple = ()
    quant: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Op type with the names of fused ops, e.g. ``Conv+Relu``."""
        return "+".join((self.op_type,) + tuple(self.fused))


@dataclass
class Graph:
    """A model: nodes in execution order, constants, inputs and outputs.

    ``encodings`` maps a constant stored in a float storage format to
    ``{"precision": name, "scale": s}``: fp16 constants are float16 arrays,
    bf16 are uint16 bit patterns and fp8 are uint8 codes (times ``s``).
    """

    nodes: list
    inputs: list
    outputs: list
    constants: dict
    name: str = "graph"
    opset: int = 0
    metadata: dict = field(default_factory=dict)
    encodings: dict = field(default_factory=dict)

    def producers(self) -> dict:
        """Map each node output name to its node."""
        return {out: node for node in self.nodes for out in node.outputs if out}

    def consumers(self) -> dict:
        """Map each tensor name to the list of nodes that read it."""
        users: dict = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    users.setdefault(name, []).append(node)
        return users

    def output_names(self) -> list:
        return [v.name for v in self.outputs]

    def input_names(self) -> list:
        return [v.name for v in self.inputs]


def count_params(graph: Graph, node: Node) -> int:
    """Number of float constant elements a node reads (its weights and biases).

    Integer constants (shapes, axes, pads) and float scalars (Clip bounds, Pad
    values) are configuration, not parameters; a quantized node lists its
    weight and bias constants in ``node.quant["params"]`` (counted at their
    logical size, however they are packed).
    """
    if "params" in node.quant:
        total = 0
        for name in node.quant["params"]:
            shape = node.quant.get("param_shapes", {}).get(name) or graph.encodings.get(name, {}).get("shape")
            total += int(np.prod(shape)) if shape is not None else graph.constants[name].size
        return int(total)
    return int(sum(graph.constants[name].size for name in node.inputs
                   if name in graph.constants and graph.constants[name].dtype.kind == "f"
                   and graph.constants[name].ndim > 0))


def describe(value: Any) -> str:
    """Short text form of an attribute value, for summaries and errors."""
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    return repr(value)
