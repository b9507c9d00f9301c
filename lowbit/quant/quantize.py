"""``lowbit.quantize``: calibrate an fp32 model and convert it to a precision."""
from __future__ import annotations

import copy
import time

import numpy as np

from ..errors import InputError
from ..formats.precision import get as get_precision
from .calibrate import METHODS, calibrate
from .convert_float import convert_float


def calibration_batches(model, calibration, batch_size: int = 256):
    """A ``run_batches(observe)`` callable over the calibration data (see :func:`calibrate`).

    ``calibration`` is an array for a one-input model or ``{input name: array}``;
    the executor splits each batch further into the model's fixed batch, if any.
    """
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
    """Shapes of every tensor for one calibration sample.

    A model with a fixed batch runs one full batch of copies of the first
    sample, so these are the shapes its kernels really see.
    """
    shapes = {}
    if calibration is None:
        dynamic = [i.name for i in model.graph.inputs
                   if i.shape is None or any(d is None or d <= 0 for d in i.shape[1:])]
        if dynamic:
            raise InputError(f"inputs {dynamic} have dynamic dims; pass calibration data (sample inputs) "
                             "to learn the tensor shapes")
        calibration = {i.name: np.zeros((1,) + tuple(i.shape[1:]), dtype=i.dtype or np.float32)
                       for i in model.graph.inputs}
    rows = model.fixed_batch or 1
    feeds = {k: np.repeat(v[:1], rows, axis=0) if v.ndim else v for k, v in model.check_inputs(calibration).items()}
    shapes.update({k: v.shape for k, v in feeds.items()})

    def hook(node, inputs, results):
        shapes.update({name: np.shape(value) for name, value in zip(node.outputs, results) if name})

    model._executor(None, None).run(feeds, hook=hook)
    return shapes


def check_calibration(calibration):
    """Reject empty or non-finite calibration data with a one-line error.

    Returns the array, or for several inputs the dict ``{input name: array}``
    (all with the same number of samples).
    """
    if calibration is None:
        return None
    if isinstance(calibration, dict):
        if not calibration:
            raise InputError("calibration data is an empty dict; expected {input name: array of samples}")
        arrays = {name: _check_calibration_array(value, f"calibration data for input '{name}'")
                  for name, value in calibration.items()}
        counts = {name: len(a) for name, a in arrays.items()}
        if len(set(counts.values())) > 1:
            raise InputError(f"calibration arrays hold different numbers of samples {counts}; "
                             "expected the same number for every input")
        return arrays
    return _check_calibration_array(calibration, "calibration data")


def _check_calibration_array(value, label: str) -> np.ndarray:
    try:
        x = np.asarray(value)
    except (ValueError, TypeError):
        raise InputError(f"{label} is not an array; expected an array of samples "
                         "(or a dict input name -> array for a model with several inputs)") from None
    if x.dtype == object:
        raise InputError(f"{label} is not a numeric array; expected an array of samples "
                         "(or a dict input name -> array for a model with several inputs)")
    if x.ndim == 0 or x.size == 0 or x.shape[0] == 0:
        raise InputError(f"{label} is empty; expected at least one sample")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise InputError(f"{label} contains NaN or inf values; expected finite numbers")
    return x


def _first_samples(calibration, count: int):
    if isinstance(calibration, dict):
        return {name: value[:count] for name, value in calibration.items()}
    return calibration[:count]


def quantize(model, precision, calibration=None, *, method: str = "minmax", calibration_size: int | None = 1000,
             nodes_to_exclude=(), percentile: float = 99.99, calibration_ranges: dict | None = None,
             equalize: bool = False, bias_correction: bool = False, adaround=False, **options):
    """Quantize a float32 model.

    Parameters
    ----------
    model : Model
        A float32 model from :func:`lowbit.load`.
    precision : str or Precision
        fp32, fp16, bf16, fp8-e4m3, fp8-e5m2 (int8 and below: see the integer path).
    calibration : ndarray or dict, optional
        float32 NCHW samples for the activation ranges (needed for fp8 and integers);
        ``{input name: array}`` for a model with several inputs.  A model with a
        fixed batch is calibrated in chunks of it.
    method : {"minmax", "percentile", "entropy", "mse"}
    calibration_size : int, optional
        Use at most this many calibration samples (the first ones).
    nodes_to_exclude : iterable of str
        Node names or op types left in fp32.
    calibration_ranges : dict, optional
        ``{tensor: (lo, hi)}`` from an earlier call (``model.graph.metadata["ranges"]``),
        to skip calibrating again.
    equalize : bool
        Cross-layer equalization and high-bias absorption first (:mod:`lowbit.quant.equalize`).
    bias_correction : bool
        Empirical bias correction (:mod:`lowbit.quant.bias_correction`).
    adaround : bool or dict
        Learned weight rounding (:mod:`lowbit.quant.adaround`); a dict overrides its settings.
        Both act on integer weights (int2..int8, ternary); other precisions ignore them.
        The order is :mod:`lowbit.quant.ptq`'s; ``graph.metadata["post_training"]`` records what ran.
    **options
        For the integer path: ``activation_type``, ``first_layer``, ``last_layer``,
        ``activation_bits``, ``node_precisions`` (see :func:`lowbit.quant.convert_int.convert_int`).

    Returns
    -------
    Model
        The converted model; ``model.graph.metadata["calibration_seconds"]`` says how long
        calibration took.
    """
    from ..model import Model
    from . import ort_names
    from .arguments import check_arguments, check_model

    check_model(model)
    method, nodes_to_exclude, options = ort_names.translate(model, method, nodes_to_exclude, options)
    try:
        spec = get_precision(precision)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    options = check_arguments(spec, method=method, calibration_size=calibration_size, percentile=percentile,
                              nodes_to_exclude=nodes_to_exclude, calibration_ranges=calibration_ranges, options=options)
    nodes_to_exclude = () if nodes_to_exclude is None else nodes_to_exclude
    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    calibration = check_calibration(calibration)
    if calibration is not None and calibration_size:
        calibration = _first_samples(calibration, calibration_size)
    exclude = frozenset(nodes_to_exclude)
    start = time.perf_counter()
    post_training = {}
    if equalize or bias_correction or adaround:
        from . import ptq

        ptq.check_options(spec, calibration, calibration_ranges, equalize, bias_correction, adaround)
        if equalize:
            model, post_training["equalize"] = ptq.equalize_model(model, calibration)
    ranges = None
    needs_ranges = spec.scaled or spec.kind in ("int", "ternary")
    if needs_ranges and calibration_ranges is not None:
        ranges = calibration_ranges
    elif needs_ranges:
        if calibration is None:
            raise InputError(f"{spec.name} needs calibration data (an array of sample inputs)")
        names = {n for node in model.graph.nodes for n in node.inputs + node.outputs if n}
        names |= set(model.input_names)
        # mse targets the activation bits: explicit, else the weight bits of int-k, else 8 (ternary, fp8)
        bits = options.get("activation_bits") or (spec.bits if spec.kind == "int" else 8)
        ranges = calibrate(calibration_batches(model, calibration), names, method=method,
                           percentile=percentile, bits=bits)
    seconds = time.perf_counter() - start
    if spec.name == "fp32":
        graph = copy.deepcopy(model.graph)
    elif spec.is_float:
        graph = convert_float(model.graph, spec, ranges, exclude)
    elif spec.kind == "binary":
        from .convert_binary import convert_binary

        graph = convert_binary(model.graph, spec, exclude=exclude,
                               **{k: v for k, v in options.items() if k != "activation_bits"})
    else:
        from .convert_int import convert_int

        shapes = sample_shapes(model, calibration)
        source = model.graph
        if bias_correction or adaround:
            from . import ptq

            def convert(g, fixed):
                return convert_int(g, spec, ranges, shapes=shapes, exclude=exclude, **{**options, "fixed_weights": fixed})

            source, fixed, entries = ptq.refine(source, calibration, convert, options.get("fixed_weights"),
                                                bias_correction=bias_correction, adaround=adaround)
            options = {**options, "fixed_weights": fixed}
            post_training.update(entries)
        graph = convert_int(source, spec, ranges, shapes=shapes, exclude=exclude, **options)
        if options.get("node_precisions"):
            graph.metadata["precision"] = "mixed"
    graph.metadata["calibration_seconds"] = seconds
    if ranges is not None:
        graph.metadata["ranges"] = {k: [float(v[0]), float(v[1])] for k, v in ranges.items()}
    graph.metadata["calibration_method"] = method if needs_ranges else None
    if options.get("activation_bits"):
        post_training["activation_bits"] = int(options["activation_bits"])
    if post_training:
        graph.metadata["post_training"] = post_training
    return Model(graph, source=model.source)
