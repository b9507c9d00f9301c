"""Moved to :mod:`lowbit.formats.packing` (numerics sit below the kernels); this name re-exports it."""
from ..formats.packing import *  # noqa: F401,F403
