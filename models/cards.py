"""Render the model card ``models/NAME.md`` from the net's module and ``models/NAME.train.json``.

Usage::

    python -m models.cards [NAME ...]      # default: every net that has a .train.json

The test accuracy by lowbit is measured here with ``lowbit.load(path).run(x)`` when that API is
available; otherwise the card says so on a line marked ``TODO(lead)``.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from models import NETS
from models.train import HERE, load_net_module


def lowbit_accuracy(path, x, y, batch_size=1000):
    """(accuracy, seconds) of ``lowbit.load(path).run`` on ``(x, y)``, or (None, reason)."""
    try:
        import lowbit

        model = lowbit.load(path)
        t0 = time.perf_counter()
        preds = np.concatenate([np.asarray(model.run(x[i:i + batch_size])).argmax(axis=1)
                                for i in range(0, len(x), batch_size)])
        return float((preds == y).mean()), time.perf_counter() - t0
    except Exception as e:  # any failure of the (still growing) runtime is reported on the card
        return None, f"{type(e).__name__}: {e}"


def _fmt_recipe(r):
    opt = r["optimizer"] + (f" (momentum {r['momentum']})" if r["optimizer"] == "sgd" else "")
    sched = r["schedule"] + (f" to {r['min_lr']:g}" if r["schedule"] == "cosine" else "")
    aug = []
    if r["max_shift"]:
        aug.append(f"random shifts of up to ±{r['max_shift']} px")
    if r["max_rotate"]:
        aug.append(f"random rotations of up to ±{r['max_rotate']:g}°")
    return (f"{r['epochs']} epochs, batch {r['batch_size']}, {opt}, lr {r['lr']:g}, {sched} schedule "
            f"(per step), weight decay {r['weight_decay']:g}, augmentation: {', '.join(aug) or 'none'}")


def render(name, lowbit_acc=None):
    """The markdown text of the card of ``name``."""
    mod = load_net_module(name)
    with open(os.path.join(HERE, f"{name}.train.json")) as f:
        rep = json.load(f)
    lines = [f"# {name}", "", (mod.__doc__ or "").strip(), "",
             "## Facts", "",
             f"- File: `models/{name}.onnx` ({rep['onnx_bytes'] / 1024:.0f} KiB), float32, ONNX opset 13; "
             "input `input` float32 (N, 1, 28, 28) in [0, 1] (MNIST pixels / 255, no mean/std); "
             "output `logits` (N, 10) (no softmax; argmax = class).",
             f"- Parameters: {rep['params']:,}; multiply-accumulates per image: {rep['macs']:,} "
             f"({rep['macs'] / 1e6:.2f} M).",
             f"- Training recipe: {_fmt_recipe(rep['recipe'])}; seed {rep['seed']}; "
             "softmax cross-entropy; He-normal init; trained on the 60,000 MNIST training images.",
             f"- Training time: {rep['train_seconds_total'] / 60:.1f} min on the 2-core development machine "
             "(sum of the epoch times; the machine was shared with other jobs; OPENBLAS_NUM_THREADS=1, "
             "`nice -n 5`), lowbit's numpy/Numba trainer.",
             "",
             "## Test accuracy (MNIST, 10,000 test images)", "",
             f"- onnxruntime: **{100 * rep['test_acc_onnxruntime']:.2f} %**",
             f"- lowbit trainer (float32 forward): {100 * rep['test_acc_trainer']:.2f} %"]
    if lowbit_acc and lowbit_acc[0] is not None:
        lines.append(f"- lowbit (`lowbit.load(...).run`): **{100 * lowbit_acc[0]:.2f} %**")
    else:
        why = f" ({lowbit_acc[1]})" if lowbit_acc else ""
        lines.append(f"- lowbit (`lowbit.load(...).run`): TODO(lead) not measured{why}; "
                     f"run `python -m models.cards {name}` once `lowbit.load` runs this model.")
    lines += ["", "## Training history", "", "| epoch | train loss | train acc (with dropout/aug) | test acc | lr at end | s |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for h in rep["history"]:
        lines.append(f"| {h['epoch']} | {h['loss']:.4f} | {100 * h['train_acc']:.2f} % | "
                     f"{100 * h.get('test_acc', float('nan')):.2f} % | {h['lr']:.2g} | {h['seconds']:.0f} |")
    if getattr(mod, "NOTES", ""):
        lines += ["", mod.NOTES]
    lines += ["", "The test set was evaluated after each epoch for this table only; the recipe was fixed "
              "before training and not tuned on it.", "",
              "## Reproduce", "", f"    python -m models.train {name} --seed {rep['seed']}", "",
              "(writes the .onnx, a checkpoint `models/NAME.ckpt.npz` + `.json`, and `models/NAME.train.json`; "
              "then `python -m models.cards NAME` rewrites this card.)", "",
              "## Layers", "", "| node | type | output shape | params | MACs |", "| --- | --- | --- | ---: | ---: |"]
    for r in rep["layers"]:
        lines.append(f"| {r['name']} | {r['type']} | {tuple(r['shape'])} | {r['params']:,} | {r['macs']:,} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from lowbit.data import mnist

    names = (argv if argv is not None else sys.argv[1:]) or [
        n for n in NETS if os.path.exists(os.path.join(HERE, f"{n}.train.json"))]
    x, y = mnist("test")
    for name in names:
        acc = lowbit_accuracy(os.path.join(HERE, f"{name}.onnx"), x, y)
        with open(os.path.join(HERE, f"{name}.md"), "w") as f:
            f.write(render(name, acc))
        print(f"{name}: lowbit accuracy {acc[0]}" + ("" if acc[0] is not None else f" ({acc[1]})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
