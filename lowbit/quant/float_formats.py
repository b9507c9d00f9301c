"""Moved to :mod:`lowbit.formats.float_formats` (numerics sit below the kernels); this name re-exports it."""
from ..formats.float_formats import *  # noqa: F401,F403
