"""Runs a Graph: a short loop over nodes, one registered kernel each.

Batches larger than ``batch_size`` are split along axis 0, run one after
the other, and the outputs concatenated; each kernel spreads its own work
over ``threads`` Numba threads.  Intermediate tensors are freed after
their last reader.
"""
from __future__ import annotations

import numba
import numpy as np

from ..config import DEFAULT_BATCH_SIZE
from ..errors import ExecutionError
from ..graph.ir import Graph
from ..kernels.registry import kernel_for


class Executor:
    """Runs ``graph`` with the kernels registered for each node's precision.

    Parameters
    ----------
    graph : Graph
        The graph to run; its nodes must be in execution order.
    batch_size : int, optional
        Largest number of samples run through the graph at once.
    threads : int, optional
        Numba threads per kernel (default: all cores).
    """

    def __init__(self, graph: Graph, *, batch_size: int | None = None, threads: int | None = None):
        self.graph = graph
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.threads = threads
        self.kernels = [kernel_for(node.op_type, node.precision) for node in graph.nodes]
        last_reader = {}
        for index, node in enumerate(graph.nodes):
            for name in node.inputs:
                if name:
                    last_reader[name] = index
        keep = set(graph.output_names())
        self.free_after = [[] for _ in graph.nodes]
        for name, index in last_reader.items():
            if name not in keep and name not in graph.constants:
                self.free_after[index].append(name)

    def run(self, feeds: dict, *, outputs=None, hook=None) -> dict:
        """Run the graph on ``feeds`` (name → array); return ``{output name: array}``.

        ``outputs`` selects tensors to return (default: the graph outputs);
        ``hook(node, inputs, results)`` is called after every node.
        """
        names = list(outputs) if outputs is not None else self.graph.output_names()
        batch = _batch_of(feeds)
        previous = numba.get_num_threads()
        if self.threads:
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            if batch is None or batch <= self.batch_size or hook is not None:
                return self._run_once(feeds, names, hook)
            parts = [self._run_once({k: v[start:start + self.batch_size] for k, v in feeds.items()}, names, None)
                     for start in range(0, batch, self.batch_size)]
            return {name: np.concatenate([p[name] for p in parts], axis=0) for name in names}
        finally:
            numba.set_num_threads(previous)

    def _run_once(self, feeds: dict, names: list, hook) -> dict:
        graph = self.graph
        env = dict(graph.constants)
        env.update(feeds)
        wanted = set(names)
        for node, kernel, free in zip(graph.nodes, self.kernels, self.free_after):
            args = [env[name] if name else None for name in node.inputs]
            try:
                result = kernel(*args, **node.attrs)
            except (ValueError, IndexError, TypeError) as exc:
                shapes = [None if a is None else tuple(np.shape(a)) for a in args]
                raise ExecutionError(f"node '{node.name}' ({node.op_type}) failed on input shapes {shapes}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(node.outputs, results):
                if name:
                    env[name] = value
            if hook is not None:
                hook(node, args, results)
            for name in free:
                if name not in wanted:
                    env.pop(name, None)
        missing = [n for n in names if n not in env]
        if missing:
            raise KeyError(f"tensors {missing} were not computed; known: {sorted(env)[:20]}")
        return {name: env[name] for name in names}


def _batch_of(feeds: dict):
    sizes = {np.shape(v)[0] for v in feeds.values() if np.ndim(v) > 0}
    return sizes.pop() if len(sizes) == 1 else None


def evaluate(graph: Graph, feeds: dict, names) -> dict:
    """Run ``graph`` once on ``feeds`` and return the tensors ``names`` (used by graph passes)."""
    return Executor(graph).run(feeds, outputs=names)
