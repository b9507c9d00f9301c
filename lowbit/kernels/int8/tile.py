"""The int8 micro-kernel: a register-blocked tile of exact int16 x int16 -> int32 dot products.

Operands (both produced by the callers' packing code):

* ``src`` (int16): activations minus their zero point, in 32-bit pairs: the
  pair of reduction indices ``(2q, 2q+1)`` at output position ``p`` is the
  int16 pair at ``src[2 * (offs[q] + p)]``.  Consecutive positions are
  consecutive pairs; ``offs`` (int64, one entry per ``q``) says where each
  reduction pair starts, so one routine serves both an im2col panel
  (``offs[q] = q * stride``) and a direct view of a channel-pair-interleaved
  input slab (``offs[q]`` = the tap's offset).
* ``wpk`` (int32): the weights, one 32-bit word per pair ``(w[m, 2q], w[m, 2q+1])``
  (an int16 array viewed as int32), ``kq`` words per output channel.

:func:`madd_tile` computes, for ``TILE_M`` channels ``r`` and ``TILE_P``
positions ``c``::

    out[o_off + r * o_stride + c] = sum_q  src[2 * (offs[q] + p_off + c)]     * w[r, 2q]
                                       + src[2 * (offs[q] + p_off + c) + 1] * w[r, 2q + 1]

with ``w[r]`` the ``kq`` words at ``wpk[w_off + r * kq]``, in int32
(wrapping) arithmetic.  The sum is exact whenever the true sum fits in
int32: every product is at most 255 * 128 in magnitude, and a pair of them
is formed in 32 bits.  Nothing is bounds-checked: the callers size ``src``,
``wpk`` and ``out`` for every index above.

Why LLVM IR rather than a Numba loop: the exact AVX2 route is ``vpmaddwd``
(int16 pairs multiplied and summed into int32, no saturation).  LLVM only
forms it from a plain reduction loop when each widened operand has a single
use (``X86PartialReduction``), which rules out the operand reuse a register
tile needs; written as a Numba loop a 4x3 tile compiles to ``vpmulld`` on
widened lanes at a quarter of the rate.  So the tile is emitted directly as
portable LLVM vector IR: ``sext`` both operands to i32, multiply, add the
even and odd lanes.  That is the generic pattern X86 instruction selection
maps to ``vpmaddwd`` (or, where VNNI exists, to ``vpdpwssd``, which also
folds the accumulate); on any other target it is simply correct vector code.
No target intrinsic is used, so the kernel runs (and stays exact) on every
CPU Numba supports.

With ``NUMBA_DISABLE_JIT=1`` :func:`madd_tile` is the numpy function below,
so the calling kernels still run as plain Python.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

#: Output channels per tile (each one a broadcast weight pair).
TILE_M = 4
#: int32 lanes per vector (one ymm register).
LANES = 8
#: Vectors of positions per tile.
TILE_V = 3
#: Output positions per tile.
TILE_P = TILE_V * LANES


def madd_tile(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride):
    """Plain numpy version of the tile (used when the JIT is disabled)."""
    pos = 2 * (offs[:kq, None] + p_off + np.arange(TILE_P)[None, :])
    x = np.stack([src[pos], src[pos + 1]], axis=-1).astype(np.int64)
    w = wpk[w_off:w_off + TILE_M * kq].view(np.int16).reshape(TILE_M, kq, 2).astype(np.int64)
    acc = np.einsum("qpe,rqe->rp", x, w).astype(np.int32)
    for r in range(TILE_M):
        out[o_off + r * o_stride:o_off + r * o_stride + TILE_P] = acc[r]


@intrinsic
def _madd_tile_ir(typingctx, src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride):
    ok = (isinstance(src, types.Array) and src.dtype == types.int16
          and isinstance(offs, types.Array) and offs.dtype == types.int64
          and isinstance(wpk, types.Array) and wpk.dtype == types.int32
          and isinstance(out, types.Array) and out.dtype == types.int32
          and all(isinstance(t, types.Integer) for t in (p_off, w_off, kq, o_off, o_stride)))
    if not ok:
        return None
    sig = types.void(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)

    def codegen(context, builder, signature, args):
        i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
        acc_t = ir.VectorType(i32, LANES)
        pairs_t = ir.VectorType(i16, 2 * LANES)
        wide_t = ir.VectorType(i32, 2 * LANES)
        sty = signature.args

        def data(i):
            return context.make_array(sty[i])(context, builder, args[i]).data

        def as_i64(i):
            return context.cast(builder, args[i], sty[i], types.int64)

        src_ptr, offs_ptr, wpk_ptr, out_ptr = data(0), data(1), data(3), data(6)
        p_off_v, w_off_v, kq_v, o_off_v, o_stride_v = (as_i64(i) for i in (2, 4, 5, 7, 8))
        const = lambda v: ir.Constant(i64, v)
        even = ir.Constant(acc_t, [2 * i for i in range(LANES)])
        odd = ir.Constant(acc_t, [2 * i + 1 for i in range(LANES)])
        splat = ir.Constant(acc_t, [0] * LANES)
        # Accumulators live in allocas; LLVM's SROA turns them into registers.
        accs = [[cgutils.alloca_once_value(builder, ir.Constant(acc_t, [0] * LANES))
                 for _ in range(TILE_V)] for _ in range(TILE_M)]
        with cgutils.for_range(builder, kq_v) as loop:
            q = loop.index
            # int16 index of the pair (2q, 2q+1) at position p_off.
            start = builder.load(builder.gep(offs_ptr, [q], inbounds=True), align=8)
            base = builder.mul(builder.add(start, p_off_v), const(2))
            xs = []
            for v in range(TILE_V):
                ptr = builder.gep(src_ptr, [builder.add(base, const(2 * LANES * v))], inbounds=True)
                x = builder.load(builder.bitcast(ptr, pairs_t.as_pointer()), align=2)
                xs.append(builder.sext(x, wide_t))
            for r in range(TILE_M):
                idx = builder.add(builder.add(w_off_v, builder.mul(kq_v, const(r))), q)
                word = builder.load(builder.gep(wpk_ptr, [idx], inbounds=True), align=4)
                wb = builder.insert_element(ir.Constant(acc_t, ir.Undefined), word, ir.Constant(i32, 0))
                wb = builder.sext(builder.bitcast(builder.shuffle_vector(wb, wb, splat), pairs_t), wide_t)
                for v in range(TILE_V):
                    prod = builder.mul(xs[v], wb)
                    pair_sum = builder.add(builder.shuffle_vector(prod, prod, even),
                                           builder.shuffle_vector(prod, prod, odd))
                    builder.store(builder.add(builder.load(accs[r][v]), pair_sum), accs[r][v])
        for r in range(TILE_M):
            for v in range(TILE_V):
                idx = builder.add(builder.add(o_off_v, builder.mul(o_stride_v, const(r))), const(v * LANES))
                ptr = builder.bitcast(builder.gep(out_ptr, [idx], inbounds=True), acc_t.as_pointer())
                builder.store(builder.load(accs[r][v]), ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@overload(madd_tile)
def _madd_tile_overload(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride):
    def impl(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride):
        _madd_tile_ir(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)
    return impl
