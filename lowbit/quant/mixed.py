"""Mixed precision under an accuracy budget.

Search (greedy, guided by per-layer sensitivity):

1. measure each weighted layer's accuracy drop when only it is quantized to
   the narrowest candidate (:mod:`lowbit.quant.sensitivity`);
2. start with every weighted layer at the narrowest candidate;
3. while the model's drop exceeds ``max_drop`` points, move the most
   sensitive layer that can still widen one step up the ladder
   (e.g. int4 → int8 → fp32) and measure again.

Each step costs one evaluation; the plan stops at the first configuration
within budget, which is the smallest this ranking reaches.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from ..evaluate.metrics import top1
from ..precision import get as get_precision
from ..progress import Progress
from .sensitivity import sensitivity, weighted_layers


def quantize_plan(model, plan: dict, calibration, *, method="minmax", ranges=None):
    """Quantize ``model`` with per-layer precisions ``plan`` ({layer: precision name})."""
    import lowbit

    integer = {name: get_precision(p) for name, p in plan.items()}
    narrowest = min((p for p in integer.values() if p.kind == "int"), key=lambda p: p.bits, default=None)
    if narrowest is None:
        return lowbit.quantize(model, "fp32")
    return lowbit.quantize(model, narrowest, calibration=calibration, method=method, calibration_ranges=ranges,
                           node_precisions=integer)


def search(source, x_test, y_test, *, max_drop: float, ladder=("int4", "int8", "fp32"), calibration=None,
           method="minmax", batch_size=256, threads=None, progress=True) -> dict:
    """Find per-layer precisions whose accuracy drop is at most ``max_drop`` points.

    Returns
    -------
    dict
        ``{"plan": {layer: precision}, "accuracy", "drop", "fp32_accuracy", "steps", "sensitivity"}``.
    """
    import lowbit

    model = lowbit.load(source) if isinstance(source, str) else source
    base = top1(model.run(x_test, batch_size=batch_size, threads=threads), y_test)
    ladder = [get_precision(p).name for p in ladder]
    rows = sensitivity(model, x_test, y_test, ladder[0], calibration=calibration, method=method,
                       batch_size=batch_size, threads=threads, progress=progress)
    order = [r["layer"] for r in sorted(rows, key=lambda r: (-r["drop"], r["sqnr_db"]))]
    ranges = lowbit.quantize(model, "int8", calibration=calibration, method=method,
                             nodes_to_exclude=[n.name for n in model.graph.nodes]).graph.metadata["ranges"]
    plan = {layer.name: ladder[0] for layer in weighted_layers(model.graph)}
    steps = []
    bar = Progress(len(plan) * (len(ladder) - 1) + 1, label="mixed precision", stream=sys.stderr if progress else None)
    while True:
        quantized = quantize_plan(model, plan, calibration, method=method, ranges=ranges)
        accuracy = top1(quantized.run(x_test, batch_size=batch_size, threads=threads), y_test)
        drop = 100.0 * (base - accuracy)
        steps.append({"plan": dict(plan), "accuracy": accuracy, "drop": drop})
        bar.update(1, images=len(x_test))
        if drop <= max_drop:
            break
        widen = next((name for name in order if plan[name] != ladder[-1]), None)
        if widen is None:
            break
        plan[widen] = ladder[ladder.index(plan[widen]) + 1]
    bar.close()
    sizes = {layer.name: int(np.prod(model.graph.constants[layer.inputs[1]].shape)) for layer in weighted_layers(model.graph)}
    bits = {name: get_precision(p).bits for name, p in plan.items()}
    mean_bits = sum(sizes[n] * bits[n] for n in plan) / max(1, sum(sizes.values()))
    return {"plan": plan, "mean_weight_bits": mean_bits, "accuracy": accuracy, "drop": drop, "fp32_accuracy": base, "max_drop": max_drop,
            "within_budget": drop <= max_drop, "steps": steps, "sensitivity": rows, "model": quantized}


def plan_json(result: dict) -> str:
    keep = {k: v for k, v in result.items() if k != "model"}
    return json.dumps(keep, indent=1)
