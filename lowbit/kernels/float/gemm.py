"""fp32 Gemm and MatMul on a register-blocked dot-product micro-kernel.

Every product here (and in :mod:`lowbit.kernels.float.conv`) is computed as
dot products of *rows*: ``Y[i, j] = sum_k A[i, k] * Bt[j, k]`` with both
operands packed row-major, zero-padded along ``k`` to a multiple of
:data:`K_ALIGN` and along the rows to a multiple of the tile.
:func:`dot_tile` computes a ``TILE_M x TILE_N`` = 4 x 3 block of such dot
products in one pass over ``k``: LLVM vectorises the ``k`` loop 8 lanes wide
and keeps the twelve accumulators in ymm registers (7 loads feed 12 FMAs per
step), then reduces each one horizontally.  The reduction order of an output
element depends only on the padded length, never on the thread count or the
blocking, so results are bit-for-bit reproducible.

Packing and broadcasting are plain numpy copies (O(MK + NK)); the O(MNK)
arithmetic is all in the Numba kernels.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from lowbit.config import jit

#: Rows of the left operand per micro-tile.
TILE_M = 4
#: Rows of the right (transposed) operand per micro-tile.
TILE_N = 3
#: The reduction axis is zero-padded to a multiple of this (one ymm register).
K_ALIGN = 8
# Column tiles handled by one parallel task of the Gemm kernel.
_TILES_PER_TASK = 32
# Products of fewer multiply-adds than this (about a millisecond of work) run
# on the calling thread alone: a helper thread costs a wake-up, and on a busy
# machine takes a core from the caller for little gain.
_PARALLEL_MIN_MACS = 1 << 25


def round_up(n, multiple):
    """Smallest multiple of ``multiple`` that is >= ``n``."""
    return -(-int(n) // multiple) * multiple


def claim(counter):
    """Add 1 to ``counter[0]`` (a 1-element int64 array) and return its old value; atomic in Numba code.

    Parallel kernels hand out work items with it rather than splitting them
    evenly up front: on a busy machine a thread that starts late then does
    fewer items instead of holding up the others.  Which thread computes an
    item never changes the item's result.
    """
    old = int(counter[0])
    counter[0] = old + 1
    return old


class _Helpers:
    """Helper threads for :func:`run_threads`, started on first use (and again in a forked child)."""

    pool = None

    @classmethod
    def get(cls):
        if cls.pool is None:
            cls.pool = ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                          thread_name_prefix="lowbit-kernel")
        return cls.pool

    @classmethod
    def forget(cls):
        cls.pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Helpers.forget)


def run_threads(worker, args, nthreads=None):
    """Run ``worker(*args)`` on the calling thread and on up to ``nthreads - 1`` helper threads.

    ``worker`` is a (nogil) jitted function that claims work items with
    :func:`claim` from a counter in ``args`` until none are left, so any
    number of concurrent calls, one included, does all the work once.  The
    caller never waits for a helper that has not started: on a busy machine a
    woken thread can wait a scheduler slice (several ms) for a core, and
    Numba's parallel regions (a fork-join over all threads) would wait with
    it; here the calling thread does the items itself meanwhile and cancels
    the helpers still queued when it runs out.  It waits only for helpers in
    the middle of an item.  ``nthreads`` defaults to
    ``numba.get_num_threads()`` (set by the executor).
    """
    if nthreads is None:
        nthreads = numba.get_num_threads()
    if nthreads <= 1:
        worker(*args)
        return
    pool = _Helpers.get()
    helpers = [pool.submit(worker, *args) for _ in range(nthreads - 1)]
    try:
        worker(*args)
    finally:
        for helper in helpers:
            if not helper.cancel():
                helper.result()


@intrinsic
def _atomic_increment(typingctx, counter):
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0], array, [zero])
        return builder.atomic_rmw("add", pointer, context.get_constant(types.int64, 1), "monotonic")

    return types.int64(counter), codegen


@overload(claim)
def _claim_jit(counter):
    return lambda counter: _atomic_increment(counter)


@jit(fast=True)
def dot_tile(a, ia, b, ib, k):
    """12 dot products of length ``k``: rows ``a[ia + r*k:]`` (r < 4) with rows ``b[ib + c*k:]`` (c < 3).

    Returns the sums row-major, ``(r0c0, r0c1, r0c2, r1c0, ...)``.
    """
    # Slicing (rather than indexing a[ia + t]) lets LLVM see non-negative
    # indices; with Numba's wraparound check in the way it does not vectorise.
    a0 = a[ia:ia + k]
    a1 = a[ia + k:ia + 2 * k]
    a2 = a[ia + 2 * k:ia + 3 * k]
    a3 = a[ia + 3 * k:ia + 4 * k]
    b0 = b[ib:ib + k]
    b1 = b[ib + k:ib + 2 * k]
    b2 = b[ib + 2 * k:ib + 3 * k]
    s00 = s01 = s02 = s10 = s11 = s12 = np.float32(0)
    s20 = s21 = s22 = s30 = s31 = s32 = np.float32(0)
    for t in range(k):
        x0 = a0[t]
        x1 = a1[t]
        x2 = a2[t]
        x3 = a3[t]
        y0 = b0[t]
        y1 = b1[t]
        y2 = b2[t]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
    return (s00, s01, s02, s10, s11, s12, s20, s21, s22, s30, s31, s32)


@jit
def clamp(v, lo, hi):
    """``min(max(v, lo), hi)`` that lets NaN through."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@jit(fast=True)
def _gemm_tasks(ap, bt, cb, y, t0, t1, m, n, mp, np_, kp, alpha, has_c, lo, hi):
    # ap: (batch, mp, kp), bt: (batch, np_, kp), y and cb: (batch, m, n), all
    # flat.  Task t covers TILE_M rows of A and up to _TILES_PER_TASK column
    # tiles of one product.
    row_blocks = mp // TILE_M
    col_tiles = np_ // TILE_N
    col_chunks = (col_tiles + _TILES_PER_TASK - 1) // _TILES_PER_TASK
    for task in range(t0, t1):
        bi = task // (row_blocks * col_chunks)
        rest = task % (row_blocks * col_chunks)
        i = (rest // col_chunks) * TILE_M
        chunk = rest % col_chunks
        jt_end = min(col_tiles, (chunk + 1) * _TILES_PER_TASK)
        ia = (bi * mp + i) * kp
        for jt in range(chunk * _TILES_PER_TASK, jt_end):
            j = jt * TILE_N
            s = dot_tile(ap, ia, bt, (bi * np_ + j) * kp, kp)
            for r in range(TILE_M):
                if i + r < m:
                    for c in range(TILE_N):
                        if j + c < n:
                            o = (bi * m + i + r) * n + j + c
                            v = alpha * s[r * TILE_N + c]
                            if has_c:
                                v += cb[o]
                            y[o] = clamp(v, lo, hi)


@jit
def _gemm_serial(ap, bt, cb, y, tasks, m, n, mp, np_, kp, alpha, has_c, lo, hi):
    _gemm_tasks(ap, bt, cb, y, 0, tasks, m, n, mp, np_, kp, alpha, has_c, lo, hi)


@jit
def _gemm_worker(ap, bt, cb, y, tasks, m, n, mp, np_, kp, alpha, has_c, lo, hi, step, counter):
    # Groups of `step` tasks, claimed as threads come free (see run_threads).
    items = (tasks + step - 1) // step
    while True:
        item = claim(counter)
        if item >= items:
            break
        _gemm_tasks(ap, bt, cb, y, item * step, min(tasks, (item + 1) * step),
                    m, n, mp, np_, kp, alpha, has_c, lo, hi)


def _pack_rows(mat, rows_to, k_to):
    """Copy the last two axes of ``mat`` (``..., rows, k``) into a zero-padded float32 array."""
    out = np.zeros(mat.shape[:-2] + (rows_to, k_to), dtype=np.float32)
    out[..., :mat.shape[-2], :mat.shape[-1]] = mat
    return out


def _batched_product(a, bt, c=None, alpha=1.0, clip_min=-math.inf, clip_max=math.inf):
    """``alpha * a @ bt.T (+ c)``, clamped, for ``a`` (B, M, K), ``bt`` (B, N, K), ``c`` (B, M, N) or None."""
    batch, m, k = a.shape
    n = bt.shape[1]
    y = np.empty((batch, m, n), dtype=np.float32)
    if y.size == 0:
        return y
    if k == 0:
        y[...] = 0.0
        if c is not None:
            y += c
        return np.clip(y, clip_min, clip_max).astype(np.float32)
    kp = round_up(k, K_ALIGN)
    mp = round_up(m, TILE_M)
    np_ = round_up(n, TILE_N)
    ap = _pack_rows(a, mp, kp)
    bp = _pack_rows(bt, np_, kp)
    has_c = c is not None
    cb = np.ascontiguousarray(c, dtype=np.float32).reshape(-1) if has_c else np.zeros(1, np.float32)
    tasks = batch * (mp // TILE_M) * -(-(np_ // TILE_N) // _TILES_PER_TASK)
    args = (ap.reshape(-1), bp.reshape(-1), cb, y.reshape(-1), tasks, m, n, mp, np_, kp,
            np.float32(alpha), has_c, np.float32(clip_min), np.float32(clip_max))
    nthreads = numba.get_num_threads()
    if nthreads == 1 or tasks == 1 or batch * mp * np_ * kp < _PARALLEL_MIN_MACS:
        _gemm_serial(*args)
    else:
        run_threads(_gemm_worker, args + (max(1, tasks // (8 * nthreads)), np.zeros(1, dtype=np.int64)),
                    nthreads)
    return y


def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0,
         clip_min=-math.inf, clip_max=math.inf):
    """ONNX Gemm in fp32, with lowbit's fused clamp.

    ``Y = clip(alpha * A' @ B' + beta * C, clip_min, clip_max)`` where
    ``A' = A.T if transA else A`` (M, K), ``B' = B.T if transB else B`` (K, N),
    and ``C`` is unidirectionally broadcast to (M, N).

    Parameters
    ----------
    a, b : ndarray
        2-D float32 operands.
    c : ndarray or None
        Optional addend, broadcastable to (M, N).
    alpha, beta : float
        Scales of the product and of ``C``.
    transA, transB : int
        Transpose ``A`` / ``B`` first.
    clip_min, clip_max : float
        Fused activation bounds (a fused ReLU is ``clip_min=0``).

    Returns
    -------
    ndarray
        float32 (M, N), C-contiguous.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"Gemm expects 2-D A and B, got shapes {a.shape} and {b.shape}")
    a2 = a.T if transA else a
    bt = b if transB else b.T
    m, k = a2.shape
    n, kb = bt.shape
    if k != kb:
        raise ValueError(f"Gemm inner dimensions differ: A' is {a2.shape}, B' is {bt.shape[::-1]}"
                         f" (transA={transA}, transB={transB})")
    cm = None
    if c is not None and beta != 0:
        c = np.asarray(c, dtype=np.float32)
        try:
            cm = np.broadcast_to(c, (m, n))
        except ValueError:
            raise ValueError(f"Gemm C of shape {c.shape} does not broadcast to (M, N) = {(m, n)}") from None
        cm = (np.float32(beta) * cm).astype(np.float32)
    y = _batched_product(a2[None], bt[None], None if cm is None else cm[None], alpha, clip_min, clip_max)
    return y[0]


def matmul(a, b):
    """ONNX MatMul (numpy ``matmul`` semantics).

    ``Y[..., i, j] = sum_k A[..., i, k] * B[..., k, j]`` with the batch axes
    broadcast numpy-style; a 1-D ``A`` is a row (its axis removed from the
    result), a 1-D ``B`` a column.  float32 (and float16, computed in
    float32) runs on the GEMM micro-kernel; float64 and the integer types
    of the spec (int32, int64, uint32, uint64; wrapping like the C types)
    run through ``numpy.matmul`` in their own dtype.

    Parameters
    ----------
    a, b : ndarray
        Operands of one dtype, at least 1-D.

    Returns
    -------
    ndarray
        The operands' dtype, C-contiguous.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"MatMul operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"MatMul inner dimensions differ: A is {a.shape}, B is {b.shape}")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"MatMul batch axes do not broadcast: A is {a.shape}, B is {b.shape}") from None
    if a.dtype != b.dtype and not (a.dtype.kind == b.dtype.kind == "f"):
        raise ValueError(f"MatMul operands must have one dtype, got {a.dtype} and {b.dtype}")
    if a.dtype.kind in "iu" or a.dtype == np.float64:
        return np.ascontiguousarray(np.matmul(a, b))
    if a.dtype.kind != "f":
        raise ValueError(f"MatMul: expected float or integer operands, got {a.dtype} and {b.dtype}")
    y = _matmul_fp32(a.astype(np.float32, copy=False), b.astype(np.float32, copy=False))
    return y if a.dtype == np.float32 else y.astype(a.dtype)


def _matmul_fp32(a, b):
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    n = b2.shape[-1]
    batch_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    batch = math.prod(batch_shape)
    if math.prod(b2.shape[:-2]) == 1:
        # One shared right operand: fold the batch into the rows of one product.
        a3 = np.broadcast_to(a2, batch_shape + (m, k)).reshape(1, batch * m, k)
        y = _batched_product(a3, b2.reshape(k, n).T[None]).reshape(batch_shape + (m, n))
    else:
        a3 = np.broadcast_to(a2, batch_shape + (m, k)).reshape(batch, m, k)
        bt3 = np.swapaxes(np.broadcast_to(b2, batch_shape + (k, n)), -1, -2).reshape(batch, n, k)
        y = _batched_product(a3, bt3).reshape(batch_shape + (m, n))
    if a.ndim == 1:
        y = y[..., 0, :]
    if b.ndim == 1:
        y = y[..., 0]
    # (np.ascontiguousarray would turn a 0-d result into shape (1,).)
    return y if y.flags.c_contiguous else y.copy()
