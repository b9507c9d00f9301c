"""Learning-rate schedules as functions of the step number."""
from __future__ import annotations

import math


def constant(base_lr):
    """.. math:: \\eta(t) = \\eta_0"""
    return lambda step: base_lr


def step_decay(base_lr, milestones, gamma=0.1):
    """Multiply by ``gamma`` at each milestone step.

    .. math:: \\eta(t) = \\eta_0 \\, \\gamma^{|\\{m : m \\le t\\}|}
    """
    ms = sorted(milestones)
    return lambda step: base_lr * gamma ** sum(step >= m for m in ms)


def cosine(base_lr, total_steps, min_lr=0.0, warmup=0):
    """Linear warm-up then cosine decay to ``min_lr`` at ``total_steps``.

    .. math:: \\eta(t) = \\eta_{min} + \\tfrac12 (\\eta_0 - \\eta_{min})
              \\left(1 + \\cos \\frac{\\pi (t - t_w)}{T - t_w}\\right)
    """
    def lr(step):
        if step < warmup:
            return base_lr * (step + 1) / warmup
        frac = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * frac))
    return lr


def get(kind, base_lr, total_steps, steps_per_epoch, milestones=(), gamma=0.1, min_lr=0.0, warmup=0):
    """Build a schedule by name: ``"constant"``, ``"step"`` (milestones in epochs) or ``"cosine"``."""
    if kind == "constant":
        return constant(base_lr)
    if kind == "step":
        return step_decay(base_lr, [m * steps_per_epoch for m in milestones], gamma)
    if kind == "cosine":
        return cosine(base_lr, total_steps, min_lr, warmup)
    raise ValueError(f"unknown schedule {kind!r}; expected constant, step or cosine")
