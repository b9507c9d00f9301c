"""Mixed precision under a budget checked on a validation split.

Search (greedy, guided by per-layer sensitivity):

1. measure each weighted layer's accuracy drop when only it is quantized to
   the narrowest candidate (:mod:`lowbit.evaluate.sensitivity`);
2. start with every weighted layer at the narrowest candidate;
3. while the budget is not met, move the most sensitive layer that can
   still widen one step up the ladder (e.g. int4 → int8 → fp32) and
   measure again.

Each step costs one evaluation; the plan stops at the first configuration
within budget, which is the smallest this ranking reaches.

Everything the search measures (sensitivity, the budget) is measured on a
**validation split** ``x_val``, never on the test set: the test set only
reports the plan found (``test_accuracy``), so that number is not the one
the search was tuned on.  :func:`validation_split` takes the split from the
training side: calibration uses the *first* samples, validation the *last*
ones, and the two must not overlap.

Budgets (exactly one):

* ``max_drop`` — top-1 accuracy drop against fp32 on the labelled split, in points;
* ``min_agreement`` — percent of validation samples whose top-1 equals fp32's
  (no labels needed);
* ``min_sqnr`` — output SQNR against fp32 in dB, ``10·log10(Σ y² / Σ (y − ŷ)²)``
  (no labels needed).
"""
from __future__ import annotations

import json
import sys

import numpy as np

from ..errors import InputError
from .metrics import sqnr_db, top1
from ..formats.precision import get as get_precision
from ..console import Progress
from .sensitivity import sensitivity, weighted_layers

VALIDATION_SIZE = 5000
MIN_VALIDATION = 100


def validation_split(n: int, calibration_size: int, validation_size: int = VALIDATION_SIZE) -> tuple:
    """``(calibration indices, validation indices)`` of ``n`` training-side samples.

    Calibration: the first ``min(calibration_size, n)``; validation: the last
    ``min(validation_size, n - calibration_size)``, so the two are disjoint.

    Raises
    ------
    InputError
        When fewer than :data:`MIN_VALIDATION` samples are left after the calibration ones.
    """
    calibration = np.arange(min(calibration_size, n))
    count = min(validation_size, n - len(calibration))
    if count < MIN_VALIDATION:
        raise InputError(f"{n} training-side samples leave {max(count, 0)} for validation after the "
                         f"{len(calibration)} calibration ones; expected at least {MIN_VALIDATION} "
                         "(give more samples or a smaller --calibration-size)")
    return calibration, np.arange(n - count, n)


def quantize_plan(model, plan: dict, calibration, *, method="minmax", ranges=None):
    """Quantize ``model`` with per-layer precisions ``plan`` ({layer: precision name})."""
    import lowbit

    integer = {name: get_precision(p) for name, p in plan.items()}
    narrowest = min((p for p in integer.values() if p.kind == "int"), key=lambda p: p.bits, default=None)
    if narrowest is None:
        return lowbit.quantize(model, "fp32")
    return lowbit.quantize(model, narrowest, calibration=calibration, method=method, calibration_ranges=ranges,
                           node_precisions=integer)


def _budget(max_drop, min_agreement, min_sqnr) -> tuple:
    given = [(k, v) for k, v in (("max_drop", max_drop), ("min_agreement", min_agreement), ("min_sqnr", min_sqnr))
             if v is not None]
    if len(given) != 1:
        raise InputError(f"give exactly one budget of max_drop, min_agreement, min_sqnr; got {dict(given) or 'none'}")
    return given[0]


def search(source, x_val, y_val=None, *, max_drop=None, min_agreement=None, min_sqnr=None, x_test=None,
           y_test=None, ladder=("int4", "int8", "fp32"), calibration=None, method="minmax", batch_size=256,
           threads=None, progress=True) -> dict:
    """Find per-layer precisions within the budget on the validation split.

    Parameters
    ----------
    source : str or Model
        fp32 model.
    x_val, y_val : ndarray
        The validation split (``y_val`` needed for ``max_drop`` only).
    max_drop, min_agreement, min_sqnr : float
        Exactly one budget (see the module docstring).
    x_test, y_test : ndarray, optional
        Test split, only to report the plan found (``test_accuracy``, ``test_drop``).

    Returns
    -------
    dict
        ``{"plan": {layer: precision}, "budget", "within_budget", "validation": {...}, "accuracy", "drop",
        "fp32_accuracy", "steps", "sensitivity", "model"}``; ``accuracy``/``drop`` and the step
        numbers are on the validation split.
    """
    import lowbit

    kind, limit = _budget(max_drop, min_agreement, min_sqnr)
    if kind == "max_drop" and y_val is None:
        raise InputError("max_drop needs validation labels; give min_agreement or min_sqnr for unlabelled data")
    model = lowbit.load(source) if isinstance(source, str) else source
    reference = model.run(x_val, batch_size=batch_size, threads=threads)
    # without labels, rank layers by how much they change fp32's own top-1 (agreement)
    labels = np.asarray(y_val) if kind == "max_drop" else reference.argmax(axis=1)
    base = top1(reference, labels)
    ladder = [get_precision(p).name for p in ladder]
    rows = sensitivity(model, x_val, labels, ladder[0], calibration=calibration, method=method,
                       batch_size=batch_size, threads=threads, progress=progress)
    order = [r["layer"] for r in sorted(rows, key=lambda r: (-r["drop"], r["sqnr_db"]))]
    ranges = lowbit.quantize(model, "int8", calibration=calibration, method=method,
                             nodes_to_exclude=[n.name for n in model.graph.nodes]).graph.metadata["ranges"]
    plan = {layer.name: ladder[0] for layer in weighted_layers(model.graph)}
    steps = []
    bar = Progress(len(plan) * (len(ladder) - 1) + 1, label="mixed precision", stream=sys.stderr if progress else None)
    while True:
        quantized = quantize_plan(model, plan, calibration, method=method, ranges=ranges)
        scores = quantized.run(x_val, batch_size=batch_size, threads=threads)
        accuracy = top1(scores, labels)
        step = {"plan": dict(plan), "accuracy": accuracy, "drop": 100.0 * (base - accuracy),
                "agreement": 100.0 * float(np.mean(scores.argmax(axis=1) == reference.argmax(axis=1))),
                "sqnr_db": sqnr_db(reference, scores)}
        steps.append(step)
        bar.update(1, images=len(x_val))
        met = {"max_drop": step["drop"] <= limit, "min_agreement": step["agreement"] >= limit,
               "min_sqnr": step["sqnr_db"] >= limit}[kind]
        if met:
            break
        widen = next((name for name in order if plan[name] != ladder[-1]), None)
        if widen is None:
            break
        plan[widen] = ladder[ladder.index(plan[widen]) + 1]
    bar.close()
    sizes = {layer.name: int(np.prod(model.graph.constants[layer.inputs[1]].shape)) for layer in weighted_layers(model.graph)}
    bits = {name: get_precision(p).bits for name, p in plan.items()}
    mean_bits = sum(sizes[n] * bits[n] for n in plan) / max(1, sum(sizes.values()))
    last = steps[-1]
    result = {"plan": plan, "mean_weight_bits": mean_bits, "budget": {kind: limit}, "within_budget": met,
              "validation": {"samples": len(x_val), "labelled": kind == "max_drop", "accuracy": last["accuracy"],
                             "fp32_accuracy": base, "drop": last["drop"], "agreement": last["agreement"],
                             "sqnr_db": last["sqnr_db"]},
              "accuracy": last["accuracy"], "drop": last["drop"], "fp32_accuracy": base,
              "max_drop": limit if kind == "max_drop" else None, "steps": steps, "sensitivity": rows,
              "model": quantized}
    if x_test is not None and y_test is not None:
        test_fp32 = top1(model.run(x_test, batch_size=batch_size, threads=threads), y_test)
        test = top1(quantized.run(x_test, batch_size=batch_size, threads=threads), y_test)
        result.update(test_accuracy=test, test_fp32_accuracy=test_fp32, test_drop=100.0 * (test_fp32 - test))
    return result


def plan_json(result: dict) -> str:
    """The result as JSON, without the model (an infinite SQNR, identical outputs, is written as null)."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and not np.isfinite(v) else v

    return json.dumps(clean({k: v for k, v in result.items() if k != "model"}), indent=1)
