"""Seeded weights, BatchNorm re-estimation and the two PyTorch ONNX exporters (corpus tooling).

Needs torch (the ``corpus`` extra), which lowbit itself never imports.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
import warnings

import numpy as np
import onnx
import torch

from images import smooth_images

#: (exporter key, exporter name, opset) for every export.
EXPORTERS = (("ts17", "torchscript", 17), ("dynamo18", "dynamo", 18))


def reestimate_batchnorm(model, shape, batches=20, batch_size=8, seed=1000, mean=None, std=None):
    """Re-estimate every BatchNorm's running statistics on smooth image-like inputs, then ``eval()``.

    Randomly initialised weights with the default statistics (mean 0, var 1)
    give activations that grow or vanish layer by layer; real trained models
    have statistics matching their activations.  Running ``batches`` batches
    in train mode with a cumulative average (``momentum=None``) gives each
    BatchNorm the mean and variance of its input on image-like data.
    """
    bns = [m for m in model.modules() if isinstance(m, nn_batchnorm_types())]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    kwargs = {} if mean is None else {"mean": mean, "std": std}
    with torch.no_grad():
        for i in range(batches if bns else 0):
            model(torch.from_numpy(smooth_images(batch_size, shape, seed=seed + i, **kwargs)))
    return model.eval()


def nn_batchnorm_types():
    return (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def export(model, example, path, exporter, opset, dynamic_hw=False):
    """Export ``model`` with ``exporter`` ("torchscript" or "dynamo") to ``path`` (dynamic batch dim ``N``).

    ``dynamic_hw`` also makes height and width dynamic (multiples of 32 for
    dynamo).  Returns the exporter's captured console output.
    """
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            axes = {0: "N", 2: "H", 3: "W"} if dynamic_hw else {0: "N"}
            torch.onnx.export(model, (example,), path, dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": axes, "output": {0: "N"}},
                              do_constant_folding=True)
        elif exporter == "dynamo":
            dims = {0: torch.export.Dim("N", min=1, max=4096)}
            if dynamic_hw:
                dims[2] = 32 * torch.export.Dim("H32", min=1, max=64)
                dims[3] = 32 * torch.export.Dim("W32", min=1, max=64)
            torch.onnx.export(model, (example,), path, dynamo=True, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamic_shapes=(dims,), external_data=False)
        else:
            raise ValueError(f"unknown exporter {exporter!r}; expected torchscript or dynamo")
    return log.getvalue()


def describe(path) -> dict:
    """Opset, IR version, op-type counts and input shapes of an ONNX file."""
    m = onnx.load(path, load_external_data=False)
    ops = {}
    for node in m.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, "ir_version": m.ir_version, "ops": dict(sorted(ops.items())),
            "bytes": os.path.getsize(path)}


def check_against_torch(model, path, x) -> float:
    """Largest |onnxruntime - torch| / max|torch| over the outputs, for the exported file."""
    import onnxruntime as ort

    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})
    worst = 0.0
    for r, g in zip(refs, got):
        r = r.numpy()
        worst = max(worst, float(np.max(np.abs(r - g)) / max(float(np.max(np.abs(r))), 1e-30)))
    return worst


def export_both(model, name, shape, out_dir, *, dynamic_hw=False, exporters=EXPORTERS, extra=None, log=print,
                verify_batch=2):
    """Export ``model`` (already in eval mode) with every exporter; one manifest entry per exporter.

    A failing exporter gives an entry with ``"status": "export-failed"`` and the
    one-line reason, never an exception.
    """
    entries = []
    x = smooth_images(verify_batch, shape, seed=77, **({} if not extra or "mean" not in extra
                                                      else {"mean": extra["mean"], "std": extra["std"]}))
    for key, exporter, opset in exporters:
        file = f"{name}.{key}.onnx"
        path = os.path.join(out_dir, file)
        entry = {"name": f"{name}/{key}", "family": name, "file": file, "exporter": exporter,
                 "requested_opset": opset, "input_shape": list(shape), "dynamic_hw": dynamic_hw}
        entry.update(extra or {})
        start = time.perf_counter()
        try:
            with torch.no_grad():
                export(model, torch.from_numpy(x), path, exporter, opset, dynamic_hw)
            entry.update(describe(path))
            entry["export_vs_torch"] = check_against_torch(model, path, x)
            entry["status"] = "ok"
            log(f"  {entry['name']}: ok, opset {entry['opset']}, {entry['bytes'] / 1e6:.1f} MB, "
                f"ORT vs torch {entry['export_vs_torch']:.1e} ({time.perf_counter() - start:.0f} s)")
        except Exception as exc:  # noqa: BLE001 - one failing export must not stop the corpus
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            entry.update(status="export-failed", reason=f"{type(exc).__name__}: {reason}")
            if os.path.exists(path):
                os.remove(path)
            log(f"  {entry['name']}: export failed: {entry['reason']}")
        entries.append(entry)
    return entries
