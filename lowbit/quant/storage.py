"""Moved to :mod:`lowbit.kernels.storage` (decoding stored constants into kernel layouts); this name re-exports it."""
from ..kernels.storage import *  # noqa: F401,F403
