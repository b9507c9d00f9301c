"""Checks of the arguments of :func:`lowbit.quantize`, before anything is computed.

Each bad argument raises :class:`~lowbit.errors.InputError` with one line naming
the argument, what was given and what was expected, so that a typo never
surfaces as a ``TypeError`` deep inside calibration or conversion.
"""
from __future__ import annotations

import math
import numbers

from ..errors import InputError

#: Keyword options of the integer / ternary converter (:func:`lowbit.quant.convert_int.convert_int`)
#: and of the binary one; float formats take none of them, and ignore those the sweep passes to every
#: precision.
INT_OPTIONS = ("activation_type", "first_layer", "last_layer", "activation_bits", "node_precisions",
               "fixed_weights", "fixed_qparams")
BINARY_OPTIONS = ("first_layer", "last_layer")
LAYER_CHOICES = {"int": ("quantized", "int8", "fp32"), "ternary": ("quantized", "int8", "fp32"),
                 "binary": ("binary", "fp32")}


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_model(model) -> None:
    """``model`` is a float :class:`~lowbit.model.Model` (not a path, not an already-quantized model)."""
    from ..model import Model

    if not isinstance(model, Model):
        path_like = isinstance(model, (str, bytes)) or hasattr(model, "__fspath__")
        hint = " (load it first: lowbit.load(path))" if path_like else ""
        raise InputError(f"model must be a lowbit Model, got {type(model).__name__}{hint}")
    stored = model.graph.metadata.get("precision", "fp32")
    if stored not in (None, "fp32"):
        raise InputError(f"model is already quantized ({stored}); expected the float32 model from lowbit.load")


def check_arguments(spec, *, method, calibration_size, nodes_to_exclude, percentile, calibration_ranges,
                    options: dict) -> dict:
    """Raise :class:`InputError` naming the first bad argument of :func:`lowbit.quantize`; return the
    options with precision names in ``node_precisions`` looked up."""
    from .calibrate import METHODS

    if not isinstance(method, str) or method not in METHODS:
        raise InputError(f"unknown calibration method {_describe(method)}; expected one of {', '.join(METHODS)}")
    if calibration_size is not None and (not _is_int(calibration_size) or calibration_size < 1):
        raise InputError(f"calibration_size must be a positive integer or None, got {_describe(calibration_size)}")
    if not isinstance(percentile, numbers.Real) or isinstance(percentile, bool) or \
            not (math.isfinite(percentile) and 0 < percentile <= 100):
        raise InputError(f"percentile must be a number in (0, 100], got {_describe(percentile)}")
    if nodes_to_exclude is not None:
        if isinstance(nodes_to_exclude, (str, bytes)) or not hasattr(nodes_to_exclude, "__iter__") or \
                not all(isinstance(n, str) for n in nodes_to_exclude):
            raise InputError(f"nodes_to_exclude must be a list of node names or op types, got "
                             f"{_describe(nodes_to_exclude)}")
    if calibration_ranges is not None:
        _check_ranges(calibration_ranges)
    return _check_options(spec, options)


def _check_ranges(ranges) -> None:
    if not isinstance(ranges, dict):
        raise InputError(f"calibration_ranges must be a dict tensor name -> (lo, hi), got {type(ranges).__name__}")
    for name, value in ranges.items():
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise InputError(f"calibration_ranges[{_describe(name)}] is {_describe(value)}; expected a pair "
                             "(lo, hi) of numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise InputError(f"calibration_ranges[{_describe(name)}] is ({lo}, {hi}); expected finite lo <= hi")


def _check_options(spec, options: dict) -> dict:
    known = INT_OPTIONS if spec.kind in ("int", "ternary") else BINARY_OPTIONS if spec.kind == "binary" else ()
    everything = set(INT_OPTIONS)
    unknown = sorted(set(options) - everything)
    if unknown:
        raise InputError(f"quantize() got unknown option(s) {', '.join(unknown)}; expected "
                         f"{', '.join(INT_OPTIONS)} (integer precisions) or first_layer/last_layer (binary)")
    if spec.kind not in ("int", "ternary", "binary"):
        return options  # float formats: the converter takes no options
    for key in ("first_layer", "last_layer"):
        value = options.get(key)
        choices = LAYER_CHOICES[spec.kind]
        if value is not None and (not isinstance(value, str) or value not in choices + (spec.name,)):
            raise InputError(f"{key} must be one of {', '.join(choices)} for {spec.name}, got {_describe(value)}")
    unused = sorted(k for k in options if k not in known)
    if unused:
        raise InputError(f"option(s) {', '.join(unused)} do not apply to {spec.name}")
    if spec.kind == "binary":
        return options
    unused = sorted(k for k in options if k not in known)
    if unused:
        raise InputError(f"option(s) {', '.join(unused)} do not apply to {spec.name}")
    value = options.get("activation_type", "uint8")
    if value not in ("uint8", "int8"):
        raise InputError(f"activation_type must be 'uint8' or 'int8', got {_describe(value)}")
    bits = options.get("activation_bits")
    if bits is not None and (not _is_int(bits) or not 2 <= bits <= 8):
        raise InputError(f"activation_bits must be an integer from 2 to 8, got {_describe(bits)}")
    plan = options.get("node_precisions")
    if plan is not None:
        from ..formats.precision import Precision, get

        if not isinstance(plan, dict):
            raise InputError(f"node_precisions must be a dict node name -> precision, got {type(plan).__name__}")
        for name, value in plan.items():
            if not isinstance(value, (str, Precision)):
                raise InputError(f"node_precisions[{_describe(name)}] is {_describe(value)}; expected a precision name")
            try:
                get(value)
            except ValueError as exc:
                raise InputError(f"node_precisions[{_describe(name)}]: {exc}") from None
        options = {**options, "node_precisions": {name: get(value) for name, value in plan.items()}}
    return options
