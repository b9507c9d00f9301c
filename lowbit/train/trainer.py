"""The training loop: shuffled mini-batches, augmentation, schedule, checkpoints."""
from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np

from lowbit.train import optim, schedule
from lowbit.train.augment import random_shift_rotate
from lowbit.train.checkpoint import load_checkpoint, save_checkpoint
from lowbit.train.layers import BatchNorm
from lowbit.train.loss import distillation, softmax_cross_entropy
from lowbit.console import Progress, is_quiet

#: Recipe keys and their defaults.
DEFAULT_RECIPE = dict(epochs=10, batch_size=100, optimizer="adam", lr=1e-3, momentum=0.9,
                      weight_decay=0.0, schedule="cosine", milestones=(), gamma=0.1, min_lr=0.0,
                      warmup=0, max_shift=0, max_rotate=0.0, distill=0.0, temperature=1.0,
                      freeze_batchnorm=False, ema=0.0)


def evaluate(net, x, y, batch_size=500):
    """Top-1 accuracy of ``net`` (inference mode) on ``(x, y)``.

    .. math:: \\text{acc} = \\frac{1}{N} \\sum_n [\\arg\\max_k z_{n,k} = y_n]
    """
    return float((net.predict(x, batch_size).argmax(axis=1) == y).mean())


@contextlib.contextmanager
def swapped_in(params, values):
    """Within the block the arrays ``params`` hold ``values`` (copied in place, restored after)."""
    saved = {k: p.copy() for k, p in params.items()}
    for k, p in params.items():
        np.copyto(p, values[k])
    try:
        yield
    finally:
        for k, p in params.items():
            np.copyto(p, saved[k])


@contextlib.contextmanager
def batchnorm_frozen(net, frozen):
    """Within the block every BatchNorm of ``net`` has ``frozen`` set (see :class:`BatchNorm`)."""
    layers = [layer for _, layer, _ in net.nodes if isinstance(layer, BatchNorm)]
    saved = [layer.frozen for layer in layers]
    for layer in layers:
        layer.frozen = frozen
    try:
        yield
    finally:
        for layer, was in zip(layers, saved):
            layer.frozen = was


def make_optimizer(recipe):
    if recipe["optimizer"] == "sgd":
        return optim.SGD(momentum=recipe["momentum"], weight_decay=recipe["weight_decay"])
    return optim.get(recipe["optimizer"], weight_decay=recipe["weight_decay"])


def train(net, x_train, y_train, recipe, seed=0, x_test=None, y_test=None, checkpoint=None,
          resume=False, stream=sys.stderr, max_steps=None, teacher=None):
    """Train ``net`` in place with mini-batch gradient descent on softmax cross-entropy.

    Every epoch reshuffles the data; batches are optionally augmented; the learning
    rate follows the recipe's schedule per step. Seeded: the same seed, recipe and
    data give the same weights. With ``checkpoint`` a checkpoint is written after each
    epoch; ``resume=True`` continues from it (bit-identical to an uninterrupted run).

    Parameters
    ----------
    net : lowbit.train.net.Net
    x_train, y_train : numpy.ndarray
        float32 ``(N, C, H, W)`` and int ``(N,)``.
    recipe : dict
        Overrides of :data:`DEFAULT_RECIPE`; ``freeze_batchnorm=True`` trains with every
        BatchNorm normalising by its running statistics, which stay fixed
        (:func:`batchnorm_frozen`). ``ema`` = :math:`d \\in (0, 1)` keeps an exponential moving
        average of the trainable parameters, started from their values at the start,

        .. math:: \\bar\\theta_0 = \\theta_0, \\quad
                  \\bar\\theta_t = d\\,\\bar\\theta_{t-1} + (1 - d)\\,\\theta_t

        after every optimizer step :math:`t`; the per-epoch test accuracy is that of
        :math:`\\bar\\theta`, and the net ends with :math:`\\theta = \\bar\\theta` (buffers such
        as BatchNorm statistics are not averaged). With binary weights the average smooths
        the sign flips of the latent weights near zero.
    seed : int
        Seeds shuffling and augmentation (the net's own seed covers init and dropout).
    x_test, y_test : numpy.ndarray, optional
        Evaluated after each epoch.
    checkpoint : str, optional
        Path of the .npz checkpoint (sidecar ``.json`` beside it).
    stream : file or None
        Where the progress bar goes.
    max_steps : int, optional
        Stop after this many steps in total (for tests).
    teacher : callable, optional
        ``teacher(xb) -> logits`` of a reference model on the (augmented) batch. With
        recipe ``distill`` = :math:`\\lambda > 0` the loss is
        :math:`(1 - \\lambda)\\,L_{CE} + \\lambda\\,L_{KD}` (:func:`lowbit.train.loss.distillation`
        at recipe ``temperature``).

    Returns
    -------
    dict
        ``history`` (per-epoch loss, train acc, test acc, seconds) and the final ``recipe``.
    """
    r = {**DEFAULT_RECIPE, **recipe}
    lam = float(r["distill"])
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"recipe distill must lie in [0, 1]; got {lam}")
    if lam and teacher is None:
        raise ValueError("recipe distill > 0 needs a teacher")
    decay = float(r["ema"])
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"recipe ema must lie in [0, 1); got {decay}")
    n, bs = len(x_train), r["batch_size"]
    steps_per_epoch = n // bs
    total = r["epochs"] * steps_per_epoch
    lr_at = schedule.get(r["schedule"], r["lr"], total, steps_per_epoch, r["milestones"], r["gamma"],
                         r["min_lr"], r["warmup"])
    opt = make_optimizer(r)
    shuffle_ss, aug_ss = np.random.SeedSequence([seed, 1]).spawn(2)
    shuffle_rng, aug_rng = np.random.default_rng(shuffle_ss), np.random.default_rng(aug_ss)
    info = {"epoch": 0, "step": 0, "history": [], "recipe": {k: (list(v) if isinstance(v, tuple) else v)
                                                             for k, v in r.items()}, "seed": seed}
    average = {k: v.copy() for k, v in net.parameters().items()} if decay else None
    if resume and checkpoint and os.path.exists(checkpoint):
        info = load_checkpoint(checkpoint, net, opt, average)
        shuffle_rng.bit_generator.state = info["rng"]["shuffle"]
        aug_rng.bit_generator.state = info["rng"]["augment"]
        net.dropout_rng.bit_generator.state = info["rng"]["dropout"]
    params = net.parameters()
    step = info["step"]
    with batchnorm_frozen(net, bool(r["freeze_batchnorm"])):
        for epoch in range(info["epoch"], r["epochs"]):
            t0 = time.perf_counter()
            order = shuffle_rng.permutation(n)
            bar = Progress(steps_per_epoch, f"epoch {epoch + 1}/{r['epochs']}", stream)
            loss_sum, correct, seen = 0.0, 0, 0
            for b in range(steps_per_epoch):
                idx = order[b * bs:(b + 1) * bs]
                xb, yb = x_train[idx], y_train[idx]
                if r["max_shift"] or r["max_rotate"]:
                    xb = random_shift_rotate(xb, aug_rng, r["max_shift"], r["max_rotate"])
                logits = net.forward(xb, train=True)
                loss, dlogits = softmax_cross_entropy(logits, yb)
                if lam:
                    kd, dkd = distillation(logits, teacher(xb), r["temperature"])
                    loss, dlogits = (1 - lam) * loss + lam * kd, (1 - lam) * dlogits + lam * dkd
                net.backward(dlogits)
                opt.step(params, net.gradients(), lr_at(step))
                if average is not None:
                    for k, p in params.items():
                        average[k] += (1.0 - decay) * (p - average[k])
                step += 1
                loss_sum += loss * len(yb)
                correct += int((logits.argmax(axis=1) == yb).sum())
                seen += len(yb)
                bar.update(1, len(yb), loss=loss_sum / seen, acc=correct / seen)
                if max_steps is not None and step >= max_steps:
                    break
            bar.close()
            entry = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
                     "seconds": time.perf_counter() - t0, "lr": lr_at(step - 1)}
            if x_test is not None:
                with swapped_in(params, average) if average is not None else contextlib.nullcontext():
                    entry["test_acc"] = evaluate(net, x_test, y_test)
            info["history"].append(entry)
            if stream and not is_quiet():
                stream.write(" ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in entry.items()) + "\n")
                stream.flush()
            info.update(epoch=epoch + 1, step=step, rng={"shuffle": shuffle_rng.bit_generator.state,
                                                         "augment": aug_rng.bit_generator.state,
                                                         "dropout": net.dropout_rng.bit_generator.state})
            if checkpoint:
                save_checkpoint(checkpoint, net, opt, info, average)
            if max_steps is not None and step >= max_steps:
                break
    if average is not None:
        for k, p in params.items():
            np.copyto(p, average[k])
    return info
