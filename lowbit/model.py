"""The user-facing Model: a Graph plus an Executor, with input checks and a summary."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .console import render_table
from .errors import ExecutionError, InputError
from .graph.ir import Graph, count_params
from .runtime.executor import Executor, fixed_batch


@dataclass
class LayerInfo:
    """One row of :meth:`Model.summary`."""

    name: str
    op: str
    input_shape: tuple
    output_shape: tuple
    params: int
    macs: int
    precision: str
    param_bytes: int
    note: str = ""  # why a node of a quantized model runs in fp32, or how its output is written


class Summary(list):
    """Rows of :class:`LayerInfo`; ``str()`` gives a table with totals."""

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self)

    @property
    def total_macs(self) -> int:
        return sum(row.macs for row in self)

    @property
    def total_bytes(self) -> int:
        return sum(row.param_bytes for row in self)

    def __str__(self) -> str:
        notes = any(r.note for r in self)
        header = ("layer", "op", "input", "output", "params", "MACs", "precision", "bytes") + (("note",) if notes else ())
        fmt_shape = lambda s: "x".join(str(d) for d in s) if s else "-"
        rows = [(r.name, r.op, fmt_shape(r.input_shape), fmt_shape(r.output_shape), f"{r.params:,}",
                 f"{r.macs:,}", r.precision, f"{r.param_bytes:,}") + ((r.note,) if notes else ()) for r in self]
        rows.append(("total", "", "", "", f"{self.total_params:,}", f"{self.total_macs:,}", "",
                     f"{self.total_bytes:,}") + (("",) if notes else ()))
        align = ["right" if i in (4, 5, 7) else "left" for i in range(len(header))]
        return render_table(header, rows, align)


def macs_of(op_type: str, inputs: list, outputs: tuple, attrs: dict, logical_weight_shape=None) -> int:
    """Multiply-accumulates of one node, per call.

    Conv: ``|Y| · C_in/group · prod(kernel)``; ConvTranspose: ``|X| · M/group · prod(kernel)``;
    Gemm/MatMul: ``|Y| · K``;
    every other op counts 0.  Binary nodes count their ±1 multiply-accumulates
    from the logical weight shape (their tensors are packed bits).
    """
    y = outputs[0]
    if logical_weight_shape is not None:
        w_shape = tuple(logical_weight_shape)
        if op_type == "Gemm":
            return int(y.size * int(np.prod(w_shape[1:])))
        positions = int(np.prod(y.shape[1:3])) if y.dtype == np.uint64 else int(np.prod(y.shape[2:]))
        return int(y.shape[0] * positions * int(np.prod(w_shape)))
    if op_type == "Conv":
        w = inputs[1]
        return int(y.size * int(np.prod(w.shape[1:])))
    if op_type == "ConvTranspose":
        # Every input pixel meets the whole kernel of each of its group's output channels.
        x, w = inputs[0], inputs[1]
        return int(x.size * int(np.prod(w.shape[1:])))
    if op_type == "Gemm":
        a = inputs[0]
        k = a.shape[0] if attrs.get("transA", 0) else a.shape[1]
        return int(y.size * k)
    if op_type == "MatMul":
        return int(y.size * inputs[0].shape[-1])
    return 0


class Model:
    """A loaded model, ready to run.

    Parameters
    ----------
    graph : Graph
        The (optimised) graph.
    source : str, optional
        Where it was loaded from, for messages.
    """

    def __init__(self, graph: Graph, source: str | None = None):
        self.graph = graph
        self.source = source
        self._executors = {}

    @property
    def input_names(self) -> list:
        return self.graph.input_names()

    @property
    def output_names(self) -> list:
        return self.graph.output_names()

    def _executor(self, batch_size, threads) -> Executor:
        key = (batch_size, threads)
        if key not in self._executors:
            self._executors[key] = Executor(self.graph, batch_size=batch_size, threads=threads)
        return self._executors[key]

    def check_inputs(self, x) -> dict:
        """Validate ``x`` against the graph inputs and return the feeds dict.

        Float inputs accept any float dtype and are converted to the declared
        one; the leading (batch) dim may be any size (a model with a fixed
        batch runs in chunks of it); other dims must match the model's
        declared static dims.  Several inputs must all hold the same number
        of samples when the model fixes its batch.

        Raises
        ------
        InputError
            Naming the input, the shape or dtype given and the one expected.
        """
        infos = self.graph.inputs
        if isinstance(x, dict):
            unknown = sorted(set(x) - set(self.input_names))
            missing = [i.name for i in infos if i.name not in x]
            if unknown or missing:
                raise InputError(f"inputs {unknown or missing} do not match the model's inputs {self.input_names}; "
                                 "pass a dict with exactly those names")
            given = x
        else:
            if len(infos) != 1:
                raise InputError(f"the model has {len(infos)} inputs {self.input_names}; pass a dict name -> array")
            given = {infos[0].name: x}
        fixed = self.fixed_batch
        feeds = {}
        for info in infos:
            try:
                value = np.asarray(given[info.name])
            except (ValueError, TypeError) as exc:
                raise InputError(f"input '{info.name}' is not an array ({str(exc).splitlines()[0]}); "
                                 f"expected shape {_expected(info, fixed)}") from None
            expected = _expected(info, fixed)
            want = np.dtype(info.dtype) if info.dtype is not None else np.dtype(np.float32)
            if want.kind == "f":
                if value.dtype.kind != "f":
                    raise InputError(f"input '{info.name}' has dtype {value.dtype}; expected float32 "
                                     f"with shape {expected} (scale integer images first, e.g. x / 255)")
            elif value.dtype != want and not np.can_cast(value.dtype, want, casting="same_kind"):
                raise InputError(f"input '{info.name}' has dtype {value.dtype}; expected {want} with shape {expected}")
            if info.shape is not None:
                dims = [None if d is None or d <= 0 else d for d in info.shape]
                wrong_rank = value.ndim != len(dims)
                wrong_dims = not wrong_rank and any(d is not None and d != s
                                                    for d, s in list(zip(dims, value.shape))[1:])
                if wrong_rank or wrong_dims:
                    raise InputError(f"input '{info.name}' has shape {tuple(value.shape)}; expected {expected}")
            feeds[info.name] = np.ascontiguousarray(value, dtype=want)
        if fixed and len({v.shape[0] for v in feeds.values()}) > 1:
            given_sizes = ", ".join(f"'{k}': {v.shape[0]}" for k, v in feeds.items())
            raise InputError(f"inputs hold different numbers of samples ({given_sizes}); expected the same "
                             f"number in every input (the model runs them in chunks of its fixed batch {fixed})")
        return feeds

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model's inputs fix (e.g. 1 for ``[1, 3, 224, 224]``), or None when dynamic.

        Any number of samples still runs: in chunks of this size, the last
        one padded (see :mod:`lowbit.runtime.executor`).
        """
        return fixed_batch(self.graph)

    def run(self, x, *, batch_size: int | None = None, threads: int | None = None, outputs=None):
        """Run the model.

        Parameters
        ----------
        x : ndarray or dict
            float32 NCHW batch for a one-input model, or ``{input name: array}``
            (required when the model has several inputs).
        batch_size : int, optional
            Largest batch run at once (default 256; a model exported with a
            fixed batch always runs in chunks of that size, the last one padded).
        threads : int, optional
            Numba threads (default: all cores).
        outputs : list of str, optional
            Tensor names to return instead of the graph outputs.

        Returns
        -------
        ndarray or dict
            The single output, or ``{name: array}`` when there are several
            (or when ``outputs`` is given).

        Raises
        ------
        InputError
            An input of the wrong rank, shape or dtype, naming it, the shape
            given and the shape expected.
        """
        _check_run_options(batch_size, threads)
        outputs = self._check_outputs(outputs)
        feeds = self.check_inputs(x)
        try:
            result = self._executor(batch_size, threads).run(feeds, outputs=outputs)
        except MemoryError:
            raise ExecutionError(f"out of memory running {len(next(iter(feeds.values()), ()))} sample(s); "
                                 "try a smaller batch_size (or a model with a smaller fixed batch)") from None
        if len(result) == 1 and outputs is None:
            return next(iter(result.values()))
        return result

    def _check_outputs(self, outputs):
        """``outputs`` as a list of tensor names the graph computes (or None)."""
        if outputs is None:
            return None
        if isinstance(outputs, (str, bytes)) or not isinstance(outputs, (list, tuple)) or \
                not all(isinstance(name, str) for name in outputs):
            raise InputError(f"outputs must be a list of tensor names, got {_short(outputs)}")
        known = set(self.graph.constants) | {o for node in self.graph.nodes for o in node.outputs if o} | \
            set(self.input_names)
        unknown = [name for name in outputs if name not in known]
        if unknown:
            raise InputError(f"outputs {unknown[:5]} are not tensors of the model; expected names such as "
                             f"{self.output_names[:5]}")
        return list(outputs)

    def summary(self, x=None) -> Summary:
        """Per-layer op, shapes, params, MACs (per image), precision and parameter bytes.

        Runs one sample through the graph to learn the shapes (a model with a
        fixed batch runs it padded to that batch, and the rows show the shapes
        of the one real sample); pass ``x`` for a model whose input dims are
        not all static.
        """
        if x is None:
            x = {}
            for info in self.graph.inputs:
                if info.shape is None or any(d is None or d <= 0 for d in info.shape[1:]):
                    raise InputError(f"input '{info.name}' has dynamic dims {info.describe_shape()}; "
                                     "pass an example input to summary()")
                dtype = info.dtype if info.dtype is not None else np.float32
                x[info.name] = np.zeros((1,) + tuple(info.shape[1:]), dtype=dtype)
        feeds = self.check_inputs(x)
        if any(v.ndim and not len(v) for v in feeds.values()):
            raise InputError("summary() needs at least one sample; the input given holds none")
        feeds = {k: v[:1] for k, v in feeds.items()}
        rows = Summary()

        def record(node, inputs, results):
            first = next((a for a in inputs if a is not None), None)
            param_bytes = sum(self.graph.constants[n].nbytes for n in node.inputs
                              if n in self.graph.constants and (self.graph.constants[n].ndim > 0 or node.quant))
            rows.append(LayerInfo(node.name, node.label, tuple(np.shape(first)) if first is not None else (),
                                  tuple(np.shape(results[0])), count_params(self.graph, node),
                                  macs_of(node.op_type, inputs, results, node.attrs,
                                          node.quant.get("param_shapes", {}).get(node.inputs[1] if len(node.inputs) > 1
                                                                                 else "")),
                                  node.precision, param_bytes, _note(node)))

        self._executor(None, None).run(feeds, hook=record)
        return rows

    def __repr__(self) -> str:
        return f"Model({os.path.basename(self.source) if self.source else self.graph.name!r}, " \
               f"{len(self.graph.nodes)} nodes, inputs={self.input_names}, outputs={self.output_names})"


def _note(node) -> str:
    """The summary's note: why a node was left in fp32 at conversion, or how an integer node writes its output."""
    if "fallback" in node.quant:
        return f"fp32 fallback: {node.quant['fallback']}"
    if "output" in node.quant:
        return f"output: {node.quant['output']}"
    return ""


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_run_options(batch_size, threads) -> None:
    """``batch_size`` and ``threads``: None or an integer >= 1 (not a bool)."""
    for name, value in (("batch_size", batch_size), ("threads", threads)):
        if value is None:
            continue
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or not 1 <= value < 2 ** 31:
            raise InputError(f"{name} must be a positive integer (below 2**31) or None, got {_short(value)}")


def _expected(info, fixed) -> str:
    """The shape an input accepts, for messages: ``(N, 3, 224, 224)`` with a note on the batch."""
    if info.shape is None:
        return "? (not declared by the model)"
    dims = ["N" if i == 0 else "?" if d is None or d <= 0 else str(d) for i, d in enumerate(info.shape)]
    note = f"; the model's fixed batch of {fixed} runs in chunks" if fixed else ""
    if not dims:
        return "() (a scalar)"
    unknown = ", ? = any size" if "?" in dims else ""
    return "(" + ", ".join(dims) + f") (N = any batch size{unknown}{note})"
