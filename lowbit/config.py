"""The only home of JIT flags and numeric defaults.

Every Numba kernel in lowbit is compiled through :func:`jit`, so the flags
below are the whole story of how kernels are built:

* ``cache=True`` writes compiled machine code next to the module, so a second
  process starts warm (see ``NUMBA_CACHE_DIR`` to move it).
* ``fastmath`` is off by default: results are deterministic and follow IEEE
  rounding.  Kernels that need reassociation to vectorise a float reduction
  (the fp32 GEMM micro-kernel) ask for ``fast=True``, which enables only the
  ``reassoc`` and ``contract`` flags (no ``nnan``/``ninf``: NaN and inf
  still propagate).  A given binary and input still gives the same result
  every run.
* ``parallel=True`` is requested per kernel (``jit(multithread=True)``); the
  number of threads is set by the executor through ``numba.set_num_threads``.
* ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (unless already set): Numba's
  OpenMP threads then sleep between parallel regions instead of spinning,
  which on a busy 2-core machine kept a spinning pool from starving the
  other thread (measured: a 0.25 ms kernel took 24 ms with spinning threads
  under load).
"""
from __future__ import annotations

import ctypes
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_buffers(mmap_threshold: int = 32 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Ask glibc to recycle freed activation buffers instead of returning them to the OS.

    By default glibc serves every allocation above 128 KiB with its own
    ``mmap`` and unmaps it on free, so each batch's activations (a 256-image
    batch of the seed CNN allocates several 3–13 MB arrays) are page-faulted
    in again; raising ``M_MMAP_THRESHOLD`` (to its 64-bit maximum, 32 MiB)
    and ``M_TRIM_THRESHOLD`` keeps them in the heap (measured: whole-model
    fp32 throughput +15–30%).  Process-wide; skipped on other C libraries
    and when ``LOWBIT_MALLOC_TUNING=0``.  Returns whether it applied.
    """
    if os.environ.get("LOWBIT_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, mmap_threshold)) and bool(libc.mallopt(-1, trim_threshold))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


keep_freed_buffers()

import numba  # noqa: E402  (after the OpenMP setting, which is read when its runtime starts)

CACHE = True
NOGIL = True
FASTMATH_FLAGS = frozenset({"reassoc", "contract"})

#: Default number of images run through the graph at once by the executor.
DEFAULT_BATCH_SIZE = 256

#: Largest tensor (in elements) that load-time constant folding may create: 2**26 floats are 256 MiB.
MAX_FOLDED_ELEMENTS = 1 << 26


def jit(fn=None, *, multithread: bool = False, fast: bool = False):
    """Compile ``fn`` with lowbit's Numba flags.

    Parameters
    ----------
    fn : callable, optional
        The function to compile; when omitted, returns a decorator.
    multithread : bool
        Compile in Numba's parallel mode: ``numba.prange`` loops run on
        several threads.
    fast : bool
        Allow reassociation and FMA contraction of float arithmetic
        (needed for vectorised float reductions).
    """
    options = dict(cache=CACHE, nogil=NOGIL)
    if multithread:
        options["parallel"] = True
    if fast:
        options["fastmath"] = set(FASTMATH_FLAGS)
    decorator = numba.njit(**options)
    return decorator if fn is None else decorator(fn)
