"""Moved to :mod:`lowbit.formats.quantizers` (numerics sit below the kernels); this name re-exports it."""
from ..formats.quantizers import *  # noqa: F401,F403
