"""Moved to :mod:`lowbit.formats.fixed_point` (numerics sit below the kernels); this name re-exports it."""
from ..formats.fixed_point import *  # noqa: F401,F403
