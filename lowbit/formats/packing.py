"""Bit-packed storage of k-bit integers (k = 1..7).

A value ``q`` in ``[-2^(k-1), 2^(k-1) - 1]`` is stored as the k-bit unsigned
``u = q + 2^(k-1)``; the ``k`` bits of consecutive values are concatenated
most-significant bit first and padded with zeros to whole bytes.  int4
therefore takes two values per byte and int2 four, so a file of k-bit
weights is ``k/8`` the size of int8.
"""
from __future__ import annotations

import numpy as np


def pack_bits(q: np.ndarray, bits: int) -> np.ndarray:
    """Pack integers of ``bits`` bits (two's-complement range) into a uint8 array.

    Raises
    ------
    ValueError
        If a value lies outside ``[-2^(bits-1), 2^(bits-1) - 1]``.
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be 1..8, got {bits}")
    offset = 1 << (bits - 1)
    flat = np.asarray(q, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < -offset or flat.max() > offset - 1):
        raise ValueError(f"values in [{flat.min()}, {flat.max()}] do not fit {bits} bits")
    unsigned = (flat + offset).astype(np.uint8)
    planes = np.unpackbits(unsigned[:, None], axis=1)[:, 8 - bits:]  # MSB-first, keep the low `bits` bits
    return np.packbits(planes.reshape(-1))


def unpack_bits(packed: np.ndarray, bits: int, shape) -> np.ndarray:
    """Inverse of :func:`pack_bits`: int8 array of ``shape``."""
    count = int(np.prod(shape, dtype=np.int64))
    planes = np.unpackbits(np.asarray(packed, dtype=np.uint8))[:count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    values = planes.astype(np.int64) @ weights - (1 << (bits - 1))
    return values.astype(np.int8).reshape(shape)
