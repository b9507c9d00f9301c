"""Checksums that guard the bundled datasets."""
from __future__ import annotations

import hashlib

from lowbit.data.idx import idx_bytes


def md5_file(path, chunk=1 << 20):
    """Hex md5 of a file's bytes."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def md5_idx(array):
    """Hex md5 of an array serialised as an uncompressed IDX file.

    This matches the published md5s of the original (decompressed) MNIST files,
    so it checks the data even when the .npz container was rebuilt.
    """
    return hashlib.md5(idx_bytes(array)).hexdigest()
