"""Runs a Graph: a short loop over nodes, one registered kernel each.

Batches larger than ``batch_size`` are split along axis 0, run one after
the other, and the outputs concatenated; each kernel spreads its own work
over ``threads`` Numba threads.  Intermediate tensors are freed after
their last reader.

A graph whose inputs declare a fixed leading dim (``[1, 3, 224, 224]``:
:func:`fixed_batch`) often bakes that batch into constants, e.g. a Reshape
to ``[1, 2048]``, so it runs only on exactly that many samples.  Every batch
then runs in chunks of exactly the fixed size, whatever ``batch_size`` says;
a short last chunk is padded with copies of its last sample and its outputs
cropped back.  A ``hook`` (calibration, summaries) sees every chunk, and in a
padded chunk the padding is cropped from what it sees (see
:meth:`Executor.run`), so observers fed in chunks see the same values as in
one batch.

Nodes at a narrow float precision (fp16, bf16, fp8) run the fp32 kernel on
weights decoded from their storage format; the executor rounds each float
input that comes from a node of another precision (or from the graph
input) and every float output to the node's format, counting overflows per
node in ``Executor.overflow``.
"""
from __future__ import annotations

import numba
import numpy as np

from ..config import DEFAULT_BATCH_SIZE
from ..errors import ExecutionError, InputError
from ..graph.ir import Graph
from ..kernels.float import conv as conv_fp32
from ..kernels.float import pool as pool_fp32
from ..kernels.registry import kernel_for
from ..formats.precision import get as get_precision
from ..formats.float_formats import round_to_format
from ..kernels.storage import decode_constant


class Executor:
    """Runs ``graph`` with the kernels registered for each node's precision.

    Parameters
    ----------
    graph : Graph
        The graph to run; its nodes must be in execution order.
    batch_size : int, optional
        Largest number of samples run through the graph at once (default 256);
        a graph with a fixed batch always runs in chunks of that batch.
    threads : int, optional
        Numba threads per kernel (default: all cores).
    """

    def __init__(self, graph: Graph, *, batch_size: int | None = None, threads: int | None = None):
        self.graph = graph
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.fixed_batch = fixed_batch(graph)
        self.threads = threads
        self.kernels = [kernel_for(node.op_type, _kernel_kind(node.precision)) for node in graph.nodes]
        self.constants = {name: decode_constant(value, graph.encodings[name]) if name in graph.encodings else value
                          for name, value in graph.constants.items()}
        producer_precision = {out: node.precision for node in graph.nodes for out in node.outputs}
        # Per node: its float format (or None) and which inputs must be rounded on entry.
        self.formats, self.round_inputs = [], []
        for node in graph.nodes:
            fmt = get_precision(node.precision)
            if fmt.is_float and fmt.name != "fp32":
                self.formats.append(fmt)
                self.round_inputs.append([i for i, name in enumerate(node.inputs)
                                          if name and name not in graph.constants
                                          and producer_precision.get(name) != node.precision])
            else:
                self.formats.append(None)
                self.round_inputs.append([])
        self.overflow = {}
        last_reader, readers = {}, {}  # tensor -> index of its last reader, number of nodes reading it
        for index, node in enumerate(graph.nodes):
            for name in set(node.inputs):
                if name:
                    last_reader[name] = index
                    readers[name] = readers.get(name, 0) + 1
        keep = set(graph.output_names())
        self.free_after = [[] for _ in graph.nodes]
        for name, index in last_reader.items():
            if name not in keep and name not in graph.constants:
                self.free_after[index].append(name)
        # fused_pool[i]: node i is a Conv that also computes node i + 1, a MaxPool (see the module docstring).
        self.fused_pool = [i + 1 < len(graph.nodes) and self._fusable(i, readers, keep)
                           for i in range(len(graph.nodes))]

    def _fusable(self, index, readers, keep) -> bool:
        conv, pool = self.graph.nodes[index], self.graph.nodes[index + 1]
        attrs = pool.attrs
        return (self.kernels[index] is conv_fp32.conv and self.formats[index] is None
                and self.kernels[index + 1] is pool_fp32.max_pool and self.formats[index + 1] is None
                and len([o for o in conv.outputs if o]) == 1 and len([o for o in pool.outputs if o]) == 1
                and pool.inputs[0] == conv.outputs[0] and readers.get(conv.outputs[0]) == 1
                and conv.outputs[0] not in keep
                and list(attrs.get("kernel_shape", ())) == [2, 2] and list(attrs.get("strides", ())) == [2, 2]
                and not any(attrs.get("pads") or ()) and attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
                and list(attrs.get("dilations") or [1, 1]) == [1, 1] and not attrs.get("ceil_mode", 0)
                and len(self.constants.get(conv.inputs[1], np.empty(0)).shape) == 4)

    def run(self, feeds: dict, *, outputs=None, hook=None) -> dict:
        """Run the graph on ``feeds`` (name → array); return ``{output name: array}``.

        ``outputs`` selects tensors to return (default: the graph outputs);
        ``hook(node, inputs, results)`` is called after every node, once per
        chunk when the batch is split.  In a padded chunk (fixed-batch graphs
        only) the hook sees every non-constant array whose leading dim is the
        padded batch cropped to the real samples, except integer vectors
        (shape values such as a Shape output); a batch axis elsewhere than
        axis 0 keeps its padding.
        """
        names = list(outputs) if outputs is not None else self.graph.output_names()
        batch = _batch_of(feeds)
        chunk = self.fixed_batch or self.batch_size
        previous = numba.get_num_threads()
        if self.threads:
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            if batch is None or batch == chunk or (batch < chunk and not self.fixed_batch):
                return self._run_once(feeds, names, hook)
            if batch == 0:
                raise InputError(f"the inputs {sorted(feeds)} hold no samples; expected at least one")
            parts = []
            for start in range(0, batch, chunk):
                part = {k: v[start:start + chunk] for k, v in feeds.items()}
                real = min(chunk, batch - start)
                if real == chunk:
                    parts.append(self._run_once(part, names, hook))
                    continue
                part = {k: _pad_rows(v, chunk) for k, v in part.items()}
                cropped = None if hook is None else _cropping_hook(hook, real, chunk, self.graph.constants)
                result = self._run_once(part, names, cropped)
                parts.append({k: _crop_rows(v, real, chunk, vectors=True) for k, v in result.items()})
            if len(parts) == 1:
                return parts[0]
            return {name: np.concatenate([p[name] for p in parts], axis=0) for name in names}
        finally:
            numba.set_num_threads(previous)

    def _run_once(self, feeds: dict, names: list, hook) -> dict:
        graph = self.graph
        env = dict(self.constants)
        env.update(feeds)
        wanted = set(names)
        skip = False
        for index, (node, kernel, free, fmt, to_round) in enumerate(zip(graph.nodes, self.kernels, self.free_after,
                                                                        self.formats, self.round_inputs)):
            if skip:  # a MaxPool computed by the Conv before it
                skip = False
                for name in free:
                    if name not in wanted:
                        env.pop(name, None)
                continue
            args = [env[name] if name else None for name in node.inputs]
            attrs, outputs = node.attrs, node.outputs
            if self.fused_pool[index] and hook is None and node.outputs[0] not in wanted:
                attrs, outputs = {**attrs, "max_pool_2x2": True}, graph.nodes[index + 1].outputs
                skip = True
            for i in to_round:
                if args[i].dtype == np.float32:
                    args[i] = self._round(node, fmt, args[i], node.quant.get("input_scales", {}).get(node.inputs[i]))
            try:
                result = kernel(*args, **attrs)
            except (ValueError, IndexError, TypeError) as exc:
                shapes = [None if a is None else tuple(np.shape(a)) for a in args]
                raise ExecutionError(f"node '{node.name}' ({node.op_type}) failed on input shapes {shapes}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            results = result if isinstance(result, tuple) else (result,)
            if fmt is not None:
                results = tuple(self._round(node, fmt, r, node.quant.get("output_scale"))
                                if isinstance(r, np.ndarray) and r.dtype == np.float32 else r for r in results)
            for name, value in zip(outputs, results):
                if name:
                    env[name] = value
            if hook is not None:
                hook(node, args, results)
            for name in free:
                if name not in wanted:
                    env.pop(name, None)
        missing = [n for n in names if n not in env]
        if missing:
            raise ExecutionError(f"tensors {missing} were not computed by any node")
        return {name: env[name] for name in names}


    def _round(self, node, fmt, value, scale):
        rounded, count = round_to_format(value, fmt, scale or 1.0)
        if count:
            self.overflow[node.name] = self.overflow.get(node.name, 0) + count
        return rounded


def _kernel_kind(precision: str) -> str:
    """Registry key of a precision: float formats compute with the fp32 kernels; int2..int8 and ternary
    weights with the int8 ones."""
    kind = get_precision(precision).kind
    return {"float": "fp32", "int": "int8", "ternary": "int8"}.get(kind, precision)


def fixed_batch(graph: Graph) -> int | None:
    """The batch size every input of ``graph`` fixes, or None when the batch is dynamic.

    It is fixed when every input declares a shape whose leading dim is one
    and the same positive number; a dim that is unknown (``None``, or -1 / 0
    from an older file) makes it dynamic.
    """
    dims = set()
    for info in graph.inputs:
        if not info.shape or info.shape[0] is None or info.shape[0] <= 0:
            return None
        dims.add(int(info.shape[0]))
    return dims.pop() if len(dims) == 1 else None


def _pad_rows(value, rows: int):
    """``value`` extended along axis 0 to ``rows`` with copies of its last row (zeros if it has none)."""
    value = np.asarray(value)
    if value.ndim == 0 or len(value) >= rows:
        return value
    if len(value):
        filler = np.repeat(value[-1:], rows - len(value), axis=0)
    else:
        filler = np.zeros((rows,) + value.shape[1:], dtype=value.dtype)
    return np.concatenate([value, filler], axis=0)


def _crop_rows(value, real: int, padded: int, vectors: bool):
    """The first ``real`` rows of an array whose leading dim is ``padded``; anything else unchanged.

    Integer vectors are shape values (Shape, Gather of a shape) rather than
    one entry per sample; they are cropped only when ``vectors`` is set (graph
    outputs, which are concatenated along axis 0 anyway).
    """
    if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != padded:
        return value
    if value.ndim == 1 and value.dtype.kind not in "fc" and not vectors:
        return value
    return value[:real]


def _cropping_hook(hook, real: int, padded: int, constants: dict):
    """``hook`` seeing a padded chunk's tensors cropped to its ``real`` samples (constants as they are)."""
    def cropped(node, inputs, results):
        inputs = [value if not name or name in constants else _crop_rows(value, real, padded, vectors=False)
                  for name, value in zip(node.inputs, inputs)]
        hook(node, inputs, tuple(_crop_rows(r, real, padded, vectors=False) for r in results))

    return cropped


def _batch_of(feeds: dict):
    sizes = {np.shape(v)[0] for v in feeds.values() if np.ndim(v) > 0}
    return sizes.pop() if len(sizes) == 1 else None


def evaluate(graph: Graph, feeds: dict, names) -> dict:
    """Run ``graph`` once on ``feeds`` and return the tensors ``names`` (used by graph passes)."""
    return Executor(graph).run(feeds, outputs=names)
