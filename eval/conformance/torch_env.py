"""Import torch and torchvision for the corpus scripts (dev tools, not lowbit dependencies).

torchvision 0.28.0 installed with ``--no-deps`` next to a CPU torch 2.13.0 may ship
compiled ops (nms, roi_align, ...) that do not register against that torch build;
its import then fails inside ``torch.library.register_fake``.  The classification,
segmentation and hand-written models here use none of those ops, so a failed fake
registration is skipped and reported once.
"""
from __future__ import annotations

import functools

import torch


def import_torchvision():
    """Return the ``torchvision`` module, tolerating compiled ops that fail to register."""
    original = torch.library.register_fake
    skipped = []

    @functools.wraps(original)
    def tolerant(op, func=None, /, *args, **kwargs):
        def apply(fn):
            try:
                return original(op, fn, *args, **kwargs)
            except RuntimeError as exc:
                skipped.append(f"{op}: {exc}")
                return fn

        return apply if func is None else apply(func)

    torch.library.register_fake = tolerant
    try:
        import torchvision
    finally:
        torch.library.register_fake = original
    if skipped:
        print(f"note: skipped {len(skipped)} torchvision op registrations (not used by the corpus), "
              f"e.g. {skipped[0].splitlines()[0]}")
    return torchvision
