"""``lowbit.quantize``: calibrate an fp32 model and convert it to a precision."""
from __future__ import annotations

import copy
import time

import numpy as np

from ..errors import InputError
from ..precision import get as get_precision
from .calibrate import METHODS, calibrate
from .convert_float import convert_float


def calibration_batches(model, calibration, batch_size: int = 256):
    """A ``run_batches(observe)`` callable over the calibration array (see :func:`calibrate`)."""
    feeds_all = model.check_inputs(calibration)
    n = len(next(iter(feeds_all.values())))
    executor = model._executor(None, None)

    def run_batches(observe):
        for start in range(0, n, batch_size):
            feeds = {k: v[start:start + batch_size] for k, v in feeds_all.items()}
            for name, value in feeds.items():
                observe(name, value)

            def hook(node, inputs, results):
                for name, value in zip(node.outputs, results):
                    observe(name, value)

            executor.run(feeds, hook=hook)

    return run_batches


def sample_shapes(model, calibration) -> dict:
    """Shapes of every tensor for one calibration sample."""
    shapes = {}
    if calibration is None:
        calibration = {i.name: np.zeros((1,) + tuple(i.shape[1:]), dtype=i.dtype or np.float32)
                       for i in model.graph.inputs}
    feeds = {k: v[:1] for k, v in model.check_inputs(calibration).items()}
    shapes.update({k: v.shape for k, v in feeds.items()})

    def hook(node, inputs, results):
        shapes.update({name: np.shape(value) for name, value in zip(node.outputs, results) if name})

    model._executor(None, None).run(feeds, hook=hook)
    return shapes


def check_calibration(calibration) -> np.ndarray:
    """Reject empty or non-finite calibration data with a one-line error."""
    if calibration is None:
        return None
    x = np.asarray(calibration)
    if x.size == 0 or x.shape[0] == 0:
        raise InputError("calibration data is empty; expected at least one sample")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise InputError("calibration data contains NaN or inf values; expected finite numbers")
    return x


def quantize(model, precision, calibration=None, *, method: str = "minmax", calibration_size: int | None = 1000,
             nodes_to_exclude=(), percentile: float = 99.99, calibration_ranges: dict | None = None, **options):
    """Quantize a float32 model.

    Parameters
    ----------
    model : Model
        A float32 model from :func:`lowbit.load`.
    precision : str or Precision
        fp32, fp16, bf16, fp8-e4m3, fp8-e5m2 (int8 and below: see the integer path).
    calibration : ndarray, optional
        float32 NCHW samples for the activation ranges (needed for fp8 and integers).
    method : {"minmax", "percentile", "entropy", "mse"}
    calibration_size : int, optional
        Use at most this many calibration samples (the first ones).
    nodes_to_exclude : iterable of str
        Node names or op types left in fp32.
    calibration_ranges : dict, optional
        ``{tensor: (lo, hi)}`` from an earlier call (``model.graph.metadata["ranges"]``),
        to skip calibrating again.

    Returns
    -------
    Model
        The converted model; ``model.graph.metadata["calibration_seconds"]`` says how long
        calibration took.
    """
    from ..model import Model

    try:
        spec = get_precision(precision)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    calibration = check_calibration(calibration)
    if calibration is not None and calibration_size:
        calibration = calibration[:calibration_size]
    exclude = frozenset(nodes_to_exclude)
    start = time.perf_counter()
    ranges = None
    needs_ranges = spec.scaled or spec.kind in ("int", "ternary")
    if needs_ranges and calibration_ranges is not None:
        ranges = calibration_ranges
    elif needs_ranges:
        if calibration is None:
            raise InputError(f"{spec.name} needs calibration data (an array of sample inputs)")
        names = {n for node in model.graph.nodes for n in node.inputs + node.outputs if n}
        names |= set(model.input_names)
        ranges = calibrate(calibration_batches(model, calibration), names, method=method,
                           percentile=percentile, bits=spec.bits if not spec.is_float else 8)
    seconds = time.perf_counter() - start
    if spec.name == "fp32":
        graph = copy.deepcopy(model.graph)
    elif spec.is_float:
        graph = convert_float(model.graph, spec, ranges, exclude)
    elif spec.kind == "binary":
        from .convert_binary import convert_binary

        graph = convert_binary(model.graph, spec, exclude=exclude, **options)
    else:
        from .convert_int import convert_int

        graph = convert_int(model.graph, spec, ranges, shapes=sample_shapes(model, calibration),
                            exclude=exclude, **options)
        if options.get("node_precisions"):
            graph.metadata["precision"] = "mixed"
    graph.metadata["calibration_seconds"] = seconds
    if ranges is not None:
        graph.metadata["ranges"] = {k: [float(v[0]), float(v[1])] for k, v in ranges.items()}
    graph.metadata["calibration_method"] = method if needs_ranges else None
    return Model(graph, source=model.source)
