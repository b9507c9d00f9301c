"""Numerics: what each precision means, below everything that computes with it.

* :mod:`~lowbit.formats.precision` — the precision specs (name, kind, bits, float layout) and their lookup;
* :mod:`~lowbit.formats.float_formats` — encoding to, decoding from and rounding to fp16, bf16 and fp8;
* :mod:`~lowbit.formats.fixed_point` — requantization multipliers and shifts;
* :mod:`~lowbit.formats.packing` — k-bit integers packed into bytes;
* :mod:`~lowbit.formats.quantizers` — the weight quantizers (k-bit symmetric, ternary, binary).

This package imports nothing of lowbit but :mod:`lowbit.errors` and :mod:`lowbit.config`; kernels, conversion,
training and export stand on it.
"""
