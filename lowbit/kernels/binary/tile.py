"""Register tile of the binary conv: LANES output positions x TMC output channels.

The conv kernels keep the input as uint64 words laid out so that consecutive
output positions of a row read consecutive words for every (tap, word) ``q``:
``x[x_off + offs[q] + p]`` is the input word of position ``p`` (see
:mod:`lowbit.kernels.binary.conv`).  For ``q`` in ``range(nq)`` the tile loads
that run of LANES words once, XORs it with each of TMC broadcast weight words
``wt[w_off + q * TMC + c]``, and adds ``llvm.ctpop`` of the result into TMC
``<LANES x i64>`` accumulators that stay in registers for the whole reduction::

    cnt[c][p] = sum_q popcount(x[x_off + offs[q] + p] ^ wt[w_off + q * TMC + c])

and ends with ``dot[c][p] = base[base_off + c * base_stride + p] - 2 * cnt[c][p]``
(``base`` holds ``T * C`` plus the border correction).  Two endings:

* :func:`tile_dots` stores ``dot`` as int32 to ``out[o_off + c * o_stride + p]``
  for ``c < n_ch`` (an NCHW row: positions are contiguous);
* :func:`tile_sign_bits` ORs ``((dot[c][p] < thr[m0 + c]) XOR flip[m0 + c]) << ((m0 + c) % 64)``
  into ``bits[p]`` for every ``c`` (the packed sign bits of the next layer).

Written as a Numba loop, LLVM keeps the accumulators in memory (the reduction
over ``q`` is outside the vectorised loop), so the tile is emitted as portable
LLVM vector IR.  X86 maps the vector ctpop to ``vpopcntq`` where AVX-512
VPOPCNTDQ exists and to a ``vpshufb`` nibble lookup on AVX2.  With
``NUMBA_DISABLE_JIT=1`` both functions are the numpy versions below.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from lowbit.config import jit

#: Output positions per tile: the int64 lanes of one vector (a zmm register).
LANES = 8
#: Output channels per tile (accumulator vectors).  4 measured faster than 8 or 16 on
#: Zen 4 (AVX-512) and than 8 on AVX2, where 8 accumulators of 2 ymm each spill.
TMC = 4


def _counts_numpy(x, x_off, offs, nq, wt, w_off):
    """``cnt[c, p]`` of the tile, in plain numpy."""
    words = x[x_off + offs[:nq, None] + np.arange(LANES)[None, :]]  # (nq, LANES)
    w = wt[w_off:w_off + nq * TMC].reshape(nq, TMC)
    xor = words[:, None, :] ^ w[:, :, None]  # (nq, TMC, LANES)
    return np.bitwise_count(xor).sum(axis=0, dtype=np.int64)


def _dots_numpy(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride):
    cnt = _counts_numpy(x, x_off, offs, nq, wt, w_off)
    rows = base_off + base_stride * np.arange(TMC)[:, None] + np.arange(LANES)[None, :]
    return base[rows] - 2 * cnt


def tile_dots(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, out, o_off, o_stride, n_ch):
    """Plain numpy version (used when the JIT is disabled)."""
    dot = _dots_numpy(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride)
    for c in range(n_ch):
        out[o_off + c * o_stride:o_off + c * o_stride + LANES] = dot[c]


def tile_sign_bits(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, thr, flip, m0, bits):
    """Plain numpy version (used when the JIT is disabled)."""
    dot = _dots_numpy(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride)
    for c in range(TMC):
        neg = (dot[c] < thr[m0 + c]) ^ (flip[m0 + c] != 0)
        bits[:LANES] |= neg.astype(np.uint64) << np.uint64((m0 + c) % 64)


def _is_array(t, dtype):
    """A contiguous 1-D array of ``dtype`` (the tile reads it through its data pointer)."""
    return isinstance(t, types.Array) and t.dtype == dtype and t.ndim == 1 and t.layout == "C"


def _ints(*ts):
    return all(isinstance(t, types.Integer) for t in ts)


class _Emitter:
    """Shared IR for both tiles: argument access and the accumulation."""

    def __init__(self, context, builder, signature, args):
        self.context, self.builder, self.sty, self.args = context, builder, signature.args, args
        self.i64 = ir.IntType(64)
        self.vec = ir.VectorType(self.i64, LANES)

    def data(self, i):
        return self.context.make_array(self.sty[i])(self.context, self.builder, self.args[i]).data

    def int(self, i):
        return self.context.cast(self.builder, self.args[i], self.sty[i], types.int64)

    def const(self, v):
        return ir.Constant(self.i64, v)

    def splat(self, scalar):
        b = self.builder
        one = b.insert_element(ir.Constant(self.vec, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))

    def load_vec(self, ptr, index):
        """``<LANES x i64>`` at ``ptr[index:index + LANES]`` (unaligned)."""
        b = self.builder
        return b.load(b.bitcast(b.gep(ptr, [index], inbounds=True), self.vec.as_pointer()), align=8)

    def dots(self):
        """The TMC ``dot[c]`` vectors, from the first nine arguments of both tiles."""
        b = self.builder
        x_ptr, offs_ptr, wt_ptr, base_ptr = self.data(0), self.data(2), self.data(4), self.data(6)
        x_off, nq, w_off, base_off, base_stride = (self.int(i) for i in (1, 3, 5, 7, 8))
        ctpop = cgutils.get_or_insert_function(b.module, ir.FunctionType(self.vec, [self.vec]),
                                               f"llvm.ctpop.v{LANES}i64")
        # Accumulators live in allocas; LLVM's SROA turns them into registers.
        accs = [cgutils.alloca_once_value(b, ir.Constant(self.vec, [0] * LANES)) for _ in range(TMC)]
        with cgutils.for_range(b, nq) as loop:
            q = loop.index
            off = b.load(b.gep(offs_ptr, [q], inbounds=True), align=8)
            xv = self.load_vec(x_ptr, b.add(x_off, off))
            w_base = b.add(w_off, b.mul(q, self.const(TMC)))
            for c in range(TMC):
                w = b.load(b.gep(wt_ptr, [b.add(w_base, self.const(c))], inbounds=True), align=8)
                counts = b.call(ctpop, [b.xor(xv, self.splat(w))])
                b.store(b.add(b.load(accs[c]), counts), accs[c])
        out = []
        for c in range(TMC):
            base = self.load_vec(base_ptr, b.add(base_off, b.mul(base_stride, self.const(c))))
            out.append(b.sub(base, b.shl(b.load(accs[c]), self.splat(self.const(1)))))
        return out


@intrinsic
def _tile_dots_ir(typingctx, x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, out, o_off,
                  o_stride, n_ch):
    if not (_is_array(x, types.uint64) and _is_array(offs, types.int64) and _is_array(wt, types.uint64)
            and _is_array(base, types.int64) and _is_array(out, types.int32)
            and _ints(x_off, nq, w_off, base_off, base_stride, o_off, o_stride, n_ch)):
        return None
    sig = types.void(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, out, o_off, o_stride, n_ch)

    def codegen(context, builder, signature, args):
        e = _Emitter(context, builder, signature, args)
        dots = e.dots()
        out_ptr, o_off_v, o_stride_v, n_ch_v = e.data(9), e.int(10), e.int(11), e.int(12)
        vec32 = ir.VectorType(ir.IntType(32), LANES)
        for c, dot in enumerate(dots):
            with builder.if_then(builder.icmp_signed("<", e.const(c), n_ch_v), likely=True):
                idx = builder.add(o_off_v, builder.mul(o_stride_v, e.const(c)))
                ptr = builder.bitcast(builder.gep(out_ptr, [idx], inbounds=True), vec32.as_pointer())
                builder.store(builder.trunc(dot, vec32), ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tile_sign_bits_ir(typingctx, x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, thr, flip,
                       m0, bits):
    if not (_is_array(x, types.uint64) and _is_array(offs, types.int64) and _is_array(wt, types.uint64)
            and _is_array(base, types.int64) and _is_array(thr, types.int64)
            and _is_array(flip, types.int64) and _is_array(bits, types.uint64)
            and _ints(x_off, nq, w_off, base_off, base_stride, m0)):
        return None
    sig = types.void(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, thr, flip, m0, bits)

    def codegen(context, builder, signature, args):
        e = _Emitter(context, builder, signature, args)
        dots = e.dots()
        thr_ptr, flip_ptr, m0_v, bits_ptr = e.data(9), e.data(10), e.int(11), e.data(12)
        ptr = builder.bitcast(builder.gep(bits_ptr, [e.const(0)], inbounds=True), e.vec.as_pointer())
        word = builder.load(ptr, align=8)
        for c, dot in enumerate(dots):
            m = builder.add(m0_v, e.const(c))
            t = builder.load(builder.gep(thr_ptr, [m], inbounds=True), align=8)
            f = builder.load(builder.gep(flip_ptr, [m], inbounds=True), align=8)
            neg = builder.xor(builder.zext(builder.icmp_signed("<", dot, e.splat(t)), e.vec), e.splat(f))
            shift = builder.and_(m, e.const(63))
            word = builder.or_(word, builder.shl(neg, e.splat(shift)))
        builder.store(word, ptr, align=8)
        return context.get_dummy_value()

    return sig, codegen


@overload(tile_dots, inline="always")
def _tile_dots_overload(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, out, o_off, o_stride,
                        n_ch):
    def impl(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, out, o_off, o_stride, n_ch):
        _tile_dots_ir(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, out, o_off, o_stride, n_ch)
    return impl


@overload(tile_sign_bits, inline="always")
def _tile_sign_bits_overload(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, thr, flip, m0,
                             bits):
    def impl(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, thr, flip, m0, bits):
        _tile_sign_bits_ir(x, x_off, offs, nq, wt, w_off, base, base_off, base_stride, thr, flip, m0, bits)
    return impl


@jit(multithread=True)
def conv_kernel(xf, offs, wt, base, row_class, hp, row_len, sh, wo_pad, m_pad, n_chunks, out):
    """int32 dots into ``out`` (N, M, oH, oW); the layout arguments come from ``conv._prepare``.

    Tasks are ``n_chunks`` contiguous runs of (image, output row); per row,
    blocks of TMC channels, then runs of LANES positions (a partial last run
    goes through ``scratch``).
    """
    n_img, m_out, ho, wo = out.shape
    outf = out.reshape(-1)
    nq = offs.size
    total = n_img * ho
    for chunk in prange(n_chunks):
        scratch = np.empty(TMC * LANES, dtype=np.int32)
        for task in range(chunk * total // n_chunks, (chunk + 1) * total // n_chunks):
            n = task // ho
            oh = task - n * ho
            x_row = (n * hp + oh * sh) * row_len
            rc = row_class[oh]
            for m0 in range(0, m_pad, TMC):
                n_ch = min(TMC, m_out - m0)
                for ow0 in range(0, wo, LANES):
                    base_off = (rc * m_pad + m0) * wo_pad + ow0
                    if ow0 + LANES <= wo:
                        tile_dots(xf, x_row + ow0, offs, nq, wt, m0 * nq, base, base_off, wo_pad,
                                  outf, ((n * m_out + m0) * ho + oh) * wo + ow0, ho * wo, n_ch)
                    else:  # last, partial run of the row
                        tile_dots(xf, x_row + ow0, offs, nq, wt, m0 * nq, base, base_off, wo_pad,
                                  scratch, 0, LANES, n_ch)
                        for c in range(n_ch):
                            for p in range(wo - ow0):
                                out[n, m0 + c, oh, ow0 + p] = scratch[c * LANES + p]


@jit(multithread=True)
def conv_sign_kernel(xf, offs, wt, base, row_class, hp, row_len, sh, wo_pad, m_pad, n_chunks,
                      thresholds, flip, out):
    """Packed sign bits into ``out`` (N, oH, oW, ceil(M / 64)); see :func:`conv_kernel`.

    Per run of LANES positions and output word, the tiles of the word's 64
    channels OR their bits into ``bits``, which is then stored whole.
    """
    n_img, ho, wo, out_words = out.shape
    nq = offs.size
    total = n_img * ho
    for chunk in prange(n_chunks):
        bits = np.empty(LANES, dtype=np.uint64)
        for task in range(chunk * total // n_chunks, (chunk + 1) * total // n_chunks):
            n = task // ho
            oh = task - n * ho
            x_row = (n * hp + oh * sh) * row_len
            rc = row_class[oh]
            for ow0 in range(0, wo, LANES):
                for k in range(out_words):
                    for p in range(LANES):
                        bits[p] = 0
                    for m0 in range(64 * k, min(64 * k + 64, m_pad), TMC):
                        tile_sign_bits(xf, x_row + ow0, offs, nq, wt, m0 * nq, base,
                                       (rc * m_pad + m0) * wo_pad + ow0, wo_pad, thresholds, flip, m0, bits)
                    for p in range(min(LANES, wo - ow0)):
                        out[n, oh, ow0 + p, k] = bits[p]
