"""Train a zoo net on the bundled MNIST and export it as float32 ONNX.

Usage::

    python -m models.train NAME [--epochs N] [--out PATH] [--seed S] [--resume]

Writes ``PATH`` (default ``models/NAME.onnx``), a checkpoint ``models/NAME.ckpt.npz`` (+ ``.json``),
and ``models/NAME.train.json`` (history, timing, accuracies) used by the model card.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import numpy as np

from models import NETS

HERE = os.path.dirname(os.path.abspath(__file__))


def load_net_module(name):
    """The module defining net ``name`` (``build`` and ``RECIPE``)."""
    if name not in NETS:
        raise KeyError(f"unknown net {name!r}; expected one of {sorted(NETS)}")
    return importlib.import_module(NETS[name])


def onnx_accuracy(path, x, y, batch_size=1000):
    """Top-1 accuracy of an ONNX model run by onnxruntime (None if it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    preds = np.concatenate([sess.run(None, {"input": x[i:i + batch_size]})[0].argmax(axis=1)
                            for i in range(0, len(x), batch_size)])
    return float((preds == y).mean())


def main(argv=None):
    """Entry point of ``python -m models.train`` (and ``lowbit train``); returns the exit status."""
    from lowbit.data import mnist
    from lowbit.train import evaluate, export_onnx, train
    from lowbit.train.summary import summary

    ap = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(NETS))
    ap.add_argument("--epochs", type=int, help="override the recipe's epochs")
    ap.add_argument("--out", help="ONNX output path (default models/NAME.onnx)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint if present")
    ap.add_argument("--limit", type=int, help="train on the first N images only (smoke runs)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    mod = load_net_module(args.name)
    recipe = dict(mod.RECIPE)
    if args.epochs is not None:
        recipe["epochs"] = args.epochs
    out = args.out or os.path.join(HERE, f"{args.name}.onnx")
    stem = os.path.splitext(out)[0]
    x_train, y_train = mnist("train")
    x_test, y_test = mnist("test")
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    net = mod.build(args.seed)
    t0 = time.perf_counter()
    info = train(net, x_train, y_train, recipe, seed=args.seed, x_test=x_test, y_test=y_test,
                 checkpoint=stem + ".ckpt.npz", resume=args.resume,
                 stream=None if args.quiet else sys.stderr)
    seconds = time.perf_counter() - t0
    export_onnx(net, out, name=args.name, doc=f"lowbit model zoo: {args.name}, float32, MNIST 1x28x28")
    rows = summary(net)
    report = dict(name=args.name, seed=args.seed, recipe=info["recipe"], history=info["history"],
                  train_seconds_this_run=seconds,
                  train_seconds_total=sum(h["seconds"] for h in info["history"]),
                  params=sum(r["params"] for r in rows), macs=sum(r["macs"] for r in rows),
                  test_acc_trainer=evaluate(net, x_test, y_test),
                  test_acc_onnxruntime=onnx_accuracy(out, x_test, y_test),
                  onnx_bytes=os.path.getsize(out), layers=rows)
    with open(stem + ".train.json", "w") as f:
        json.dump(report, f, indent=1, default=list)
    print(f"{args.name}: test accuracy {report['test_acc_trainer']:.4f} (trainer), "
          f"{report['test_acc_onnxruntime']} (onnxruntime); {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
