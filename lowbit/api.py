"""Top-level functions: load, save."""
from __future__ import annotations

import os

from .graph.onnx_import import import_onnx
from .graph.passes import optimize
from .io import container
from .kernels.registry import SUPPORTED_OPS, kernel_for
from .model import Model
from .runtime.executor import evaluate


def load(source, *, optimize_graph: bool = True) -> Model:
    """Load an ONNX model or a ``.lowbit`` file and prepare it to run.

    Parameters
    ----------
    source : str, os.PathLike, bytes or onnx.ModelProto
        Path of an ``.onnx`` or ``.lowbit`` file (or ONNX bytes / proto).
    optimize_graph : bool
        Apply the graph passes to an ONNX model (constant folding, BatchNorm
        folding, activation fusion); off only for debugging.

    Returns
    -------
    Model

    Raises
    ------
    lowbit.errors.ModelLoadError
        Missing file, not an ONNX/.lowbit model, unsupported opset.
    lowbit.errors.UnsupportedOpError
        The model uses ops lowbit cannot run (all listed at once).
    """
    label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if label is not None and container.is_container(label):
        return Model(container.load_graph(label), source=label)
    graph = import_onnx(source, SUPPORTED_OPS)
    if optimize_graph:
        optimize(graph, kernel_for, evaluate)
    return Model(graph, source=label)


def save(model: Model, path) -> None:
    """Save ``model`` (any precision) as a ``.lowbit`` file, atomically.

    The file is a zip of ``graph.json`` and ``tensors.npz`` holding the
    tensors in their storage formats; it is read back by :func:`load`.
    """
    container.save_graph(model.graph, path)
