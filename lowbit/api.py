"""Top-level functions: load a model from a file."""
from __future__ import annotations

import os

from .graph.onnx_import import import_onnx
from .graph.passes import optimize
from .kernels.registry import SUPPORTED_OPS, kernel_for
from .model import Model
from .runtime.executor import evaluate


def load(source, *, optimize_graph: bool = True) -> Model:
    """Load an ONNX model and prepare it to run.

    Parameters
    ----------
    source : str, os.PathLike, bytes or onnx.ModelProto
        Path of an ``.onnx`` file (or its bytes / proto).
    optimize_graph : bool
        Apply the graph passes (constant folding, BatchNorm folding,
        activation fusion); off only for debugging.

    Returns
    -------
    Model

    Raises
    ------
    lowbit.errors.ModelLoadError
        Missing file, not an ONNX model, unsupported opset.
    lowbit.errors.UnsupportedOpError
        The model uses ops lowbit cannot run (all listed at once).
    """
    graph = import_onnx(source, SUPPORTED_OPS)
    if optimize_graph:
        optimize(graph, kernel_for, evaluate)
    label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    return Model(graph, source=label)
