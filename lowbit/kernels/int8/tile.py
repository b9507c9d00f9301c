"""The int8 micro-kernels: register-blocked tiles of exact integer dot products into int32.

Both tiles read activations from ``src``, an int32 array of packed words: the
word at ``offs[q] + p`` holds the reduction group ``q`` of output position
``p`` (consecutive positions are consecutive words; ``offs``, int64, one
entry per group, says where each group starts, so one routine serves an
im2col panel, ``offs[q] = q * stride``, as well as a direct view of a
channel-interleaved input slab, ``offs[q]`` = the tap's offset).  Weights
come as int32 words too, ``kq`` per output channel at ``wpk[w_off + r * kq]``.

* :func:`madd_tile`, pairs: a word is two int16, activations minus their zero
  point, ``(x[2q], x[2q+1])`` (low half first); a weight word is the int16
  pair ``(w[2q], w[2q+1])``.  Each step is ``vpmaddwd``: int16 x int16
  products summed in pairs into int32.
* :func:`madd4_tile`, quads: a word is four *raw* uint8 activations
  ``x[4q..4q+3]`` (low byte first); a weight word four int8.  Each step is
  ``vpdpbusd`` (AVX512-VNNI / AVX-VNNI): four u8 x s8 products summed into
  int32.  The caller subtracts ``zp * sum(w)`` afterwards.

For ``TILE_M`` channels ``r`` and ``nv * LANES`` positions ``c`` (``nv``
vectors, 1 to ``TILE_V``; a full tile is ``TILE_P`` positions)::

    out[o_off + r * o_stride + c] = sum_q  dot(src word offs[q] + p_off + c,  weight word (r, q))

in int32 (wrapping) arithmetic: exact whenever the true sum fits in int32,
since every partial sum of one word (at most 4 * 255 * 128 in magnitude) is
formed in 32 bits and no instruction saturates.  Nothing is bounds-checked:
the callers size ``src``, ``wpk`` and ``out`` for every index above.

Why LLVM IR rather than a Numba loop: LLVM only forms ``vpmaddwd`` from a
plain reduction loop when each widened operand has a single use
(``X86PartialReduction``), which rules out the operand reuse a register tile
needs; written as a Numba loop a 4x3 tile compiles to ``vpmulld`` on widened
lanes at a quarter of the rate.  So the pair tile is emitted as portable LLVM
vector IR: ``sext`` both operands to i32, multiply, add the even and odd
lanes, the generic pattern X86 instruction selection maps to ``vpmaddwd`` (or
``vpdpwssd`` where VNNI exists); elsewhere it is simply correct vector code.
The quad tile calls the ``vpdpbusd`` intrinsic only when Numba's target CPU
has it (:data:`VNNI`); otherwise it is emitted as generic IR too (correct,
not fast: the callers use quads only when :data:`VNNI` is true).

With ``NUMBA_DISABLE_JIT=1`` both tiles are the numpy functions below, so the
calling kernels still run as plain Python.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic, overload

#: Output channels per tile (each one a broadcast weight word).
TILE_M = 4
#: int32 lanes per vector (one ymm register).
LANES = 8
#: Vectors of positions in a full tile.
TILE_V = 3
#: Output positions in a full tile.
TILE_P = TILE_V * LANES


def _target_has_vnni():
    """Whether Numba compiles for a CPU with 256-bit ``vpdpbusd`` (AVX512-VNNI + VL, or AVX-VNNI)."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    on = {f[1:] for f in str(features).split(",") if f.startswith("+")}
    return ("avx512vnni" in on and "avx512vl" in on) or "avxvnni" in on


#: True when the quad tile compiles to ``vpdpbusd`` (the Conv kernel then prefers it).
VNNI = _target_has_vnni()


def _words(src, offs, p_off, kq, width, group):
    """``(kq, width, group)`` int64 values of the packed activation words (numpy form)."""
    idx = offs[:kq, None] + p_off + np.arange(width)[None, :]
    dtype = np.int16 if group == 2 else np.uint8
    return src.view(dtype).reshape(-1, group)[idx].astype(np.int64)


def _numpy_tile(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv, group, wdtype):
    width = min(nv, TILE_V) * LANES
    x = _words(src, offs, p_off, kq, width, group)
    w = wpk[w_off:w_off + TILE_M * kq].view(wdtype).reshape(TILE_M, kq, group).astype(np.int64)
    acc = np.einsum("qpe,rqe->rp", x, w)
    acc = ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)
    for r in range(TILE_M):
        out[o_off + r * o_stride:o_off + r * o_stride + width] = acc[r]


def madd_tile(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv):
    """Pair tile (int16 x int16, ``vpmaddwd``); plain numpy when the JIT is disabled."""
    _numpy_tile(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv, 2, np.int16)


def madd4_tile(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv):
    """Quad tile (uint8 x int8, ``vpdpbusd``); plain numpy when the JIT is disabled."""
    _numpy_tile(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv, 4, np.int8)


def _pair_dot(builder, acc, x, w):
    """``acc + (even + odd lanes of sext(x) * sext(w))`` for x, w: <8 x i32> holding int16 pairs."""
    i16, i32 = ir.IntType(16), ir.IntType(32)
    halves, wide = ir.VectorType(i16, 2 * LANES), ir.VectorType(i32, 2 * LANES)
    prod = builder.mul(builder.sext(builder.bitcast(x, halves), wide),
                       builder.sext(builder.bitcast(w, halves), wide))
    even = builder.shuffle_vector(prod, prod, ir.Constant(ir.VectorType(i32, LANES), list(range(0, 2 * LANES, 2))))
    odd = builder.shuffle_vector(prod, prod, ir.Constant(ir.VectorType(i32, LANES), list(range(1, 2 * LANES, 2))))
    return builder.add(acc, builder.add(even, odd))


def _quad_dot_generic(builder, acc, x, w):
    """``acc + sum of each 4 lanes of zext(x bytes) * sext(w bytes)`` in plain IR."""
    i8, i32 = ir.IntType(8), ir.IntType(32)
    quarter, wide = ir.VectorType(i8, 4 * LANES), ir.VectorType(i32, 4 * LANES)
    prod = builder.mul(builder.zext(builder.bitcast(x, quarter), wide),
                       builder.sext(builder.bitcast(w, quarter), wide))
    lane = ir.VectorType(i32, LANES)
    parts = [builder.shuffle_vector(prod, prod, ir.Constant(lane, [4 * i + j for i in range(LANES)])) for j in range(4)]
    return builder.add(acc, builder.add(builder.add(parts[0], parts[1]), builder.add(parts[2], parts[3])))


def _quad_dot_vnni(builder, acc, x, w):
    """``vpdpbusd acc, x (u8), w (s8)`` (non-saturating)."""
    vec = ir.VectorType(ir.IntType(32), LANES)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                        "llvm.x86.avx512.vpdpbusd.256")
    return builder.call(fn, [acc, x, w])


def _tile_intrinsic(nv, dot):
    """An intrinsic computing a TILE_M x (nv * LANES) tile with the word product ``dot``."""

    @intrinsic
    def tile_ir(typingctx, src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride):
        ok = (all(isinstance(a, types.Array) and a.dtype == types.int32 for a in (src, wpk, out))
              and isinstance(offs, types.Array) and offs.dtype == types.int64
              and all(isinstance(t, types.Integer) for t in (p_off, w_off, kq, o_off, o_stride)))
        if not ok:
            return None
        sig = types.void(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)

        def codegen(context, builder, signature, args):
            i32, i64 = ir.IntType(32), ir.IntType(64)
            vec = ir.VectorType(i32, LANES)
            sty = signature.args

            def data(i):
                return context.make_array(sty[i])(context, builder, args[i]).data

            def as_i64(i):
                return context.cast(builder, args[i], sty[i], types.int64)

            src_ptr, offs_ptr, wpk_ptr, out_ptr = data(0), data(1), data(3), data(6)
            p_off_v, w_off_v, kq_v, o_off_v, o_stride_v = (as_i64(i) for i in (2, 4, 5, 7, 8))
            const = lambda v: ir.Constant(i64, v)
            splat = ir.Constant(vec, [0] * LANES)
            # Accumulators live in allocas; LLVM's SROA turns them into registers.
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(vec, [0] * LANES)) for _ in range(nv)]
                    for _ in range(TILE_M)]
            with cgutils.for_range(builder, kq_v) as loop:
                q = loop.index
                start = builder.load(builder.gep(offs_ptr, [q], inbounds=True), align=8)
                base = builder.add(start, p_off_v)
                xs = []
                for v in range(nv):
                    ptr = builder.gep(src_ptr, [builder.add(base, const(LANES * v))], inbounds=True)
                    xs.append(builder.load(builder.bitcast(ptr, vec.as_pointer()), align=4))
                for r in range(TILE_M):
                    idx = builder.add(builder.add(w_off_v, builder.mul(kq_v, const(r))), q)
                    word = builder.load(builder.gep(wpk_ptr, [idx], inbounds=True), align=4)
                    wb = builder.insert_element(ir.Constant(vec, ir.Undefined), word, ir.Constant(i32, 0))
                    wb = builder.shuffle_vector(wb, wb, splat)
                    for v in range(nv):
                        builder.store(dot(builder, builder.load(accs[r][v]), xs[v], wb), accs[r][v])
            for r in range(TILE_M):
                row = builder.add(o_off_v, builder.mul(o_stride_v, const(r)))
                for v in range(nv):
                    ptr = builder.gep(out_ptr, [builder.add(row, const(v * LANES))], inbounds=True)
                    builder.store(builder.load(accs[r][v]), builder.bitcast(ptr, vec.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile_ir


_pair_1, _pair_2, _pair_3 = (_tile_intrinsic(nv, _pair_dot) for nv in (1, 2, 3))
_quad_dot = _quad_dot_vnni if VNNI else _quad_dot_generic
_quad_1, _quad_2, _quad_3 = (_tile_intrinsic(nv, _quad_dot) for nv in (1, 2, 3))


@overload(madd_tile)
def _madd_tile_overload(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv):
    def impl(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv):
        if nv >= 3:
            _pair_3(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)
        elif nv == 2:
            _pair_2(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)
        else:
            _pair_1(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)
    return impl


@overload(madd4_tile)
def _madd4_tile_overload(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv):
    def impl(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride, nv):
        if nv >= 3:
            _quad_3(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)
        elif nv == 2:
            _quad_2(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)
        else:
            _quad_1(src, offs, p_off, wpk, w_off, kq, out, o_off, o_stride)
    return impl
