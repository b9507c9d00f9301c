"""Decoding stored constants into the arrays kernels compute with.

``Graph.encodings[name]`` says how constant ``name`` is stored:

* ``{"precision": "fp16" | "bf16" | "fp8-...", "scale": s}`` — a float
  format (see :mod:`lowbit.formats.float_formats`), decoded to float32;
* ``{"precision": "intK", "shape": [...]}`` — k-bit integers bit-packed by
  :mod:`lowbit.formats.packing`, decoded to int8;
* ``{"precision": "binary", "shape": [...]}`` — one sign bit per weight
  (1 = −1), dense; decoded to the binary kernels' uint64 words
  (:func:`lowbit.kernels.binary.pack.pack_weights`).
"""
from __future__ import annotations

import numpy as np

from .binary.pack import pack_weights
from ..formats.precision import get as get_precision
from ..formats.float_formats import decode as decode_float
from ..formats.packing import unpack_bits


def decode_constant(value, encoding: dict):
    """The compute-ready array of a stored constant."""
    spec = get_precision(encoding["precision"])
    if spec.kind == "binary":
        shape = tuple(encoding["shape"])
        negative = np.unpackbits(value)[:int(np.prod(shape))].reshape(shape)
        return pack_weights(np.where(negative, -1.0, 1.0).astype(np.float32))
    if spec.is_float:
        return decode_float(value, spec, encoding.get("scale", 1.0))
    return unpack_bits(value, encoding.get("bits", spec.bits), tuple(encoding["shape"]))
