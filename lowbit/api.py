"""Top-level functions: load, save."""
from __future__ import annotations

import os

from .graph.onnx_import import import_onnx, read_model
from .graph.passes import optimize
from .io import container
from .kernels.registry import SUPPORTED_OPS, kernel_for
from .model import Model
from .precision import get as get_precision
from .quant.convert_int import convert_int
from .quant.qdq_import import QDQ_OPS, is_qdq, lower_qdq
from .quant.qonnx_import import lower_qonnx, qonnx_graph, read_qonnx
from .quant.quantize import sample_shapes
from .errors import ModelLoadError, ModelSaveError
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
    _check_source(source)
    if not isinstance(optimize_graph, bool):
        raise ModelLoadError(f"optimize_graph must be True or False, got {optimize_graph!r}")
    label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if label is not None and container.is_container(label):
        return _load_container(label)
    try:
        proto, read_label = read_model(source)   # regular files only; external data inside the model's folder
        qonnx = read_qonnx(proto)
        if qonnx is not None:
            return _load_qonnx(qonnx, label)
        graph = import_onnx(proto, SUPPORTED_OPS | set(QDQ_OPS), label=read_label)
        if is_qdq(graph):
            return _load_qdq(graph, label)
        if optimize_graph:
            optimize(graph, kernel_for, evaluate)
    except MemoryError:
        raise ModelLoadError(f"{label or 'the model'}: out of memory while preparing the model (a constant or a "
                             "shape probe is too large)") from None
    return Model(graph, source=label)


def _check_source(source) -> None:
    """A path, bytes or an onnx.ModelProto; anything else is refused in one line."""
    import onnx

    if isinstance(source, (bytes, bytearray, onnx.ModelProto)):
        return
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes) or not path or "\0" in path:
            raise ModelLoadError(f"model path {path!r} is not a usable file name; expected the path of an .onnx "
                                 "or .lowbit file")
        return
    raise ModelLoadError(f"cannot load a model from a {type(source).__name__}; expected the path of an .onnx or "
                         ".lowbit file, its bytes, or an onnx.ModelProto")


def _load_container(label) -> Model:
    """A ``.lowbit`` file, checked down to its kernels: every node must find a kernel for its
    precision and every stored constant must decode, before the model is handed out."""
    model = Model(container.load_graph(label), source=label)
    try:
        model._executor(None, None)   # built (and kept) now: the first run with default settings reuses it
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        message = str(exc.args[0]) if exc.args else type(exc).__name__
        raise ModelLoadError(f"{label}: {message.splitlines()[0] if message else type(exc).__name__}") from None
    return model


def _load_qdq(graph, label) -> Model:
    """A QDQ model runs on the integer kernels with the quantization parameters it carries."""
    graph, qparams, weights = lower_qdq(graph)
    optimize(graph, kernel_for, evaluate)
    fp32 = Model(graph, source=label)
    shapes = sample_shapes(fp32, None) if all(i.shape and None not in i.shape[1:] for i in graph.inputs) else {}
    signed = {p[2] for p in qparams.values()}
    int_graph = convert_int(graph, get_precision("int8"), {}, shapes=shapes, fixed_qparams=qparams,
                            fixed_weights=weights, activation_type="int8" if signed == {1} else "uint8")
    int_graph.metadata["source_format"] = "onnx-qdq"
    return Model(int_graph, source=label)


def _load_qonnx(proto, label) -> Model:
    """A QONNX model (Quant/BipolarQuant nodes) runs on the integer or binary kernels it describes."""
    lowered, lowering = lower_qonnx(proto, label or "the model")
    graph = import_onnx(lowered, SUPPORTED_OPS)

    def shapes():
        if not all(i.shape and None not in i.shape[1:] for i in graph.inputs):
            return {}
        probe = import_onnx(lowered, SUPPORTED_OPS)
        optimize(probe, kernel_for, evaluate)
        return sample_shapes(Model(probe), None)

    qgraph = qonnx_graph(graph, lowering, shapes=shapes() if not lowering.bipolar else {},
                         optimize_fn=lambda g: optimize(g, kernel_for, evaluate), label=label or "the model")
    return Model(qgraph, source=label)


def save(model: Model, path) -> None:
    """Save ``model`` (any precision) as a ``.lowbit`` file, atomically.

    The file is a zip of ``graph.json`` and ``tensors.npz`` holding the
    tensors in their storage formats; it is read back by :func:`load`.
    """
    if not isinstance(model, Model):
        raise ModelSaveError(f"save() takes a lowbit Model (from lowbit.load or lowbit.quantize), "
                             f"got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes) or not os.fspath(path):
        raise ModelSaveError(f"save() needs a file path for the .lowbit file, got {path!r}")
    container.save_graph(model.graph, path)
