"""Compatibility name: the progress bar lives in :mod:`lowbit.console` (drawn by rich).

Kept only because modules maintained elsewhere still import ``lowbit.progress``;
new code imports :class:`lowbit.console.Progress`.
"""
from .console import Progress

__all__ = ["Progress"]
