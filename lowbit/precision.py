"""Moved to :mod:`lowbit.formats.precision` (numerics sit below the kernels); this name re-exports it."""
from .formats.precision import *  # noqa: F401,F403
