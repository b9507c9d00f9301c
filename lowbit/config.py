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

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402  (after the OpenMP setting, which is read when its runtime starts)

CACHE = True
NOGIL = True
FASTMATH_FLAGS = frozenset({"reassoc", "contract"})

#: Default number of images run through the graph at once by the executor.
DEFAULT_BATCH_SIZE = 256


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
