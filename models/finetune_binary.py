"""Fine-tune the zoo's deep CNN into ``models/deep_convnet_binary.lowbit`` (recipe of the model card).

Usage::

    python -m models.finetune_binary [--stages SPEC,...] [--distill λ] [--temperature T] [--workdir DIR] [--out PATH]

The defaults are the recipe of the committed model.

Each stage is ``EPOCHS:LR:SHIFT``: Adam with cosine decay from LR to 1e-6 and random shifts of up
to SHIFT px (:data:`lowbit.finetune.RECIPES`) on the quantized forward pass.  Options follow as
``:NAME``: ``frozen`` (train on frozen BatchNorm statistics), ``constant`` (a constant learning rate),
``ema=D`` (end on the moving average of the weights, decay D) and ``float_weights`` (binary activations
on the latent float weights, the first step of two-step training).  A stage starts from the weights
(and BatchNorm statistics) the previous one ended with, with a fresh optimizer.  ``--distill`` adds
the distillation loss from the fp32 model (``--temperature``).
``lowbit finetune ... --epochs N`` is the one-stage form. Per-stage checkpoints in
``--workdir`` let an interrupted run resume. Writes the ``.lowbit`` and
``<out stem>.finetune.json`` (history, timing, accuracies) used by the card.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_stage(spec):
    """Recipe keys of one stage, ``EPOCHS:LR:SHIFT[:frozen][:constant][:ema=D][:float_weights]``.

    ``float_weights`` is not a recipe key: it switches the binary layers'
    :attr:`~lowbit.train.layers.quantized.Quantized.weights_quantized` off for the stage.

    Raises
    ------
    ValueError
        Naming the stage and the expected form.
    """
    fields = spec.split(":")
    try:
        stage = dict(epochs=int(fields[0]), lr=float(fields[1]), max_shift=int(fields[2]), freeze_batchnorm=False,
                     ema=0.0, float_weights=False)
        for extra in fields[3:]:
            if extra == "frozen":
                stage["freeze_batchnorm"] = True
            elif extra == "float_weights":
                stage["float_weights"] = True
            elif extra == "constant":
                stage["schedule"] = "constant"
            elif extra.startswith("ema="):
                stage["ema"] = float(extra[4:])
            else:
                raise ValueError(extra)
        if stage["epochs"] < 1 or not 0.0 <= stage["ema"] < 1.0:
            raise ValueError(spec)
    except (ValueError, IndexError):
        raise ValueError(f"bad stage {spec!r}; expected EPOCHS:LR:SHIFT[:frozen][:constant][:ema=D][:float_weights], "
                         "EPOCHS >= 1 and 0 <= D < 1, e.g. 8:1e-4:0:frozen:ema=0.999") from None
    return stage


def main(argv=None):
    import lowbit
    from lowbit import finetune as ft
    from lowbit.data import mnist
    from lowbit.train import evaluate, to_onnx, train
    from lowbit.train.layers.quantized import Quantized
    from lowbit.train.ste import SIGN_GRADIENTS

    ap = argparse.ArgumentParser(prog="python -m models.finetune_binary", description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="10:1e-3:1:frozen,10:3e-4:0:frozen,8:1e-4:0:frozen")
    ap.add_argument("--model", default=os.path.join(HERE, "deep_convnet.onnx"))
    ap.add_argument("--out", default=os.path.join(HERE, "deep_convnet_binary.lowbit"))
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "deep_convnet_binary"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distill", type=float, default=0.5,
                    help="weight of the distillation loss from the fp32 model (0: plain cross-entropy)")
    ap.add_argument("--temperature", type=float, default=4.0, help="distillation temperature")
    ap.add_argument("--sign-grad", choices=tuple(SIGN_GRADIENTS), default="hardtanh",
                    help="surrogate gradient of the binary activations (lowbit.train.ste.SIGN_GRADIENTS)")
    args = ap.parse_args(argv)
    try:
        stages = [parse_stage(s) for s in args.stages.split(",")]
    except ValueError as e:
        ap.error(str(e))
    if stages[-1]["float_weights"]:
        ap.error("the last stage must train the binary weights (drop :float_weights from it)")
    os.makedirs(args.workdir, exist_ok=True)

    x, y = mnist("train")
    xt, yt = mnist("test")
    net = ft.qat_net(ft.net_from_onnx(args.model, args.seed), "binary", args.seed, sign_backward=args.sign_grad)
    ft.init_batchnorm(net, x[np.random.default_rng(args.seed).permutation(len(x))[:500]])
    teacher = None
    if args.distill:
        fp32 = lowbit.load(args.model)
        teacher = lambda xb: fp32.run(xb, threads=1)  # noqa: E731
    history, seconds = [], 0.0
    binary_layers = [layer for _, layer, _ in net.nodes if isinstance(layer, Quantized)]
    for k, stage in enumerate(stages, 1):
        stage = dict(stage)
        float_weights = stage.pop("float_weights")
        for layer in binary_layers:
            layer.weights_quantized = not float_weights
        recipe = {**ft.RECIPES["binary"], **stage, "distill": args.distill, "temperature": args.temperature}
        t0 = time.perf_counter()
        info = train(net, x, y, recipe, seed=args.seed + k - 1, x_test=xt, y_test=yt,
                     checkpoint=os.path.join(args.workdir, f"stage{k}.ckpt.npz"), resume=True, stream=sys.stderr,
                     teacher=teacher)
        seconds += time.perf_counter() - t0
        history.append({"stage": k, "recipe": info["recipe"], "float_weights": float_weights,
                        "history": info["history"]})
    own = evaluate(net, xt, yt)
    q = lowbit.quantize(lowbit.load(to_onnx(net, "deep_convnet_binary").SerializeToString()), "binary",
                        calibration=x[:1000])
    lowbit.save(q, args.out)
    acc = float((lowbit.load(args.out).run(xt).argmax(axis=1) == yt).mean())
    report = dict(stages=history, seed=args.seed, distill=args.distill, temperature=args.temperature,
                  sign_grad=args.sign_grad,
                  own_forward_test_acc=own, lowbit_test_acc=acc,
                  train_seconds=sum(e["seconds"] for s in history for e in s["history"]),
                  train_seconds_this_run=seconds)
    with open(os.path.splitext(args.out)[0] + ".finetune.json", "w") as f:
        json.dump(report, f, indent=1)
    print(f"deep_convnet_binary: test accuracy {acc:.4f} (lowbit), {own:.4f} (training forward); {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
