"""Per-layer sensitivity: quantize one weighted layer at a time, the rest in fp32.

For each Conv/Gemm/MatMul node it reports the accuracy drop (points) of the
whole model and the SQNR of that layer's output against fp32,
``10·log10(Σ y² / Σ (y − ŷ)²)``, measured on the first ``sqnr_samples``
test samples — the same question onnxruntime's qdq_loss_debug and PyTorch's
Numeric Suite answer: which layer breaks the model.
"""
from __future__ import annotations

import json

import numpy as np

from .metrics import sqnr_db, top1
from .report import write_text
from ..formats.precision import get as get_precision
from ..console import Progress

WEIGHTED = ("Conv", "Gemm", "MatMul")


def weighted_layers(graph) -> list:
    return [n for n in graph.nodes if n.op_type in WEIGHTED and len(n.inputs) > 1 and n.inputs[1] in graph.constants]


def sensitivity(source, x_test, y_test, precision, *, calibration=None, method="minmax", batch_size=256,
                threads=None, sqnr_samples: int = 500, progress=True) -> list:
    """Rows ``{layer, op, accuracy, drop, sqnr_db}`` in graph order.

    Parameters
    ----------
    source : str or Model
        fp32 model.
    precision : str
        The precision each layer is tried at.
    """
    import sys

    import lowbit

    model = lowbit.load(source) if isinstance(source, str) else source
    spec = get_precision(precision)
    layers = weighted_layers(model.graph)
    reference = model.run(x_test, batch_size=batch_size, threads=threads)
    base_accuracy = top1(reference, y_test)
    probe = x_test[:sqnr_samples]
    ranges = None
    if calibration is not None and (spec.scaled or not spec.is_float):
        ranges = lowbit.quantize(model, spec, calibration=calibration, method=method,
                                 nodes_to_exclude=[n.name for n in model.graph.nodes]).graph.metadata.get("ranges")
    everything = [n.name for n in model.graph.nodes]
    bar = Progress(len(layers), label=f"sensitivity {spec.name}", stream=sys.stderr if progress else None)
    rows = []
    for layer in layers:
        output = layer.outputs[0]
        exclude = [name for name in everything if name != layer.name]
        quantized = lowbit.quantize(model, spec, calibration=calibration, method=method, nodes_to_exclude=exclude,
                                    calibration_ranges=ranges)
        scores = quantized.run(x_test, batch_size=batch_size, threads=threads)
        ref_out = model.run(probe, outputs=[output], batch_size=batch_size, threads=threads)[output]
        q_out = quantized.run(probe, outputs=[output], batch_size=batch_size, threads=threads)[output]
        accuracy = top1(scores, y_test)
        rows.append({"layer": layer.name, "op": layer.label, "accuracy": accuracy,
                     "drop": 100.0 * (base_accuracy - accuracy), "sqnr_db": sqnr_db(ref_out, q_out)})
        bar.update(1, images=len(x_test))
    bar.close()
    return rows


def write_sensitivity(rows, precision: str, out_dir) -> list:
    """sensitivity_<precision>.json and .md in ``out_dir``."""
    from pathlib import Path

    out = Path(out_dir)
    write_text(out / f"sensitivity_{precision}.json", json.dumps({"precision": precision, "layers": rows}, indent=1))
    lines = [f"## Per-layer sensitivity to {precision}", "", "| layer | op | accuracy % | drop (pts) | SQNR (dB) |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r['layer']} | {r['op']} | {100 * r['accuracy']:.2f} | {r['drop']:+.2f} | {r['sqnr_db']:.1f} |"
              for r in rows]
    write_text(out / f"sensitivity_{precision}.md", "\n".join(lines) + "\n")
    return [out / f"sensitivity_{precision}.json", out / f"sensitivity_{precision}.md"]
