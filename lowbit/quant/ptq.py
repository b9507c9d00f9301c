"""The post-training algorithms of :func:`lowbit.quantize`, in the order they run.

::

    fp32 graph ─equalize─▶ equalized fp32 graph (exact; :mod:`lowbit.quant.equalize`)
               ─calibrate─▶ activation ranges of the equalized graph (minmax/percentile/entropy/mse)
               ─adaround──▶ learned weight rounding, layer by layer (:mod:`lowbit.quant.adaround`)
               ─bias correction─▶ biases that cancel the mean error (:mod:`lowbit.quant.bias_correction`)
               ─convert──▶ integer graph

Each step is off by default; with all off, :func:`lowbit.quantize` is unchanged.
What ran is recorded in ``graph.metadata["post_training"]`` (saved in the
``.lowbit`` file and shown by ``lowbit inspect``).
"""
from __future__ import annotations

import time

from ..errors import InputError


def check_options(spec, calibration, calibration_ranges, equalize, bias_correction, adaround) -> None:
    """One-line errors for post-training options that cannot apply."""
    for label, value in (("equalize", equalize), ("bias_correction", bias_correction)):
        if not isinstance(value, bool):
            raise InputError(f"{label} must be True or False, got {value!r}")
    if not isinstance(adaround, (bool, dict)):
        raise InputError(f"adaround must be True, False or a dict of settings, got {adaround!r}")
    # bias correction and AdaRound act on integer weights; other precisions ignore them (so that one
    # sweep over precisions can pass the same options to all)
    needs = [n for n, on in (("bias_correction", bias_correction), ("adaround", adaround)) if on]
    if needs and spec.kind in ("int", "ternary") and calibration is None:
        raise InputError(f"{' and '.join(needs)} need calibration data (an array of sample inputs)")
    if equalize and calibration_ranges is not None:
        raise InputError("equalize changes the activation ranges; calibrate again instead of passing "
                         "calibration_ranges")


def equalize_model(model, calibration):
    """``(equalized Model, metadata entry)``."""
    from ..model import Model
    from .equalize import equalize

    start = time.perf_counter()
    graph, info = equalize(model.graph, calibration=calibration)
    info["seconds"] = time.perf_counter() - start
    return Model(graph, source=model.source), info


def refine(graph, calibration, convert, fixed_weights, *, bias_correction: bool, adaround) -> tuple:
    """AdaRound then bias correction; returns ``(fp32 graph, fixed weights, metadata entries)``."""
    entries = {}
    fixed = dict(fixed_weights or {})
    if adaround:
        from .adaround import adaround as learn_rounding

        settings = adaround if isinstance(adaround, dict) else {}
        try:
            fixed, entries["adaround"] = learn_rounding(graph, calibration, convert, fixed_weights=fixed, **settings)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    if bias_correction:
        from .bias_correction import correct_biases

        start = time.perf_counter()
        graph, info = correct_biases(graph, calibration, lambda g: convert(g, fixed))
        info["seconds"] = time.perf_counter() - start
        entries["bias_correction"] = info
    return graph, fixed, entries
