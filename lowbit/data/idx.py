"""The IDX format of the original MNIST files (raw or gzip-compressed).

An IDX file is a big-endian header -- two zero bytes, a type code, the
number of dimensions, then one uint32 per dimension -- followed by the data.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from lowbit.errors import InputError

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read an IDX file (``.gz`` or raw) into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        File name; gzip is detected from the magic bytes ``1f 8b``.

    Returns
    -------
    numpy.ndarray
        Shape from the header, native byte order.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"IDX file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise InputError(f"{path} is a damaged gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise InputError(f"{path} is not an IDX file; expected a header 00 00 <type> <ndim>")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path} is truncated: header needs {header} bytes, file has {len(raw)}")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(f"{path} holds {len(raw) - header} data bytes; its header {shape} expects {expected}")
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write a uint8 array as a raw IDX file (used by tests and checksums)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(idx_bytes(array))


def idx_bytes(array):
    """The IDX serialisation of a uint8 array: header then data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def load_idx(images_path, labels_path, mean=None, std=None):
    """Load an IDX image file and its IDX label file.

    Parameters
    ----------
    images_path, labels_path : str or os.PathLike
        uint8 images ``(N, H, W)`` and uint8 labels ``(N,)``.
    mean, std : optional
        Normalisation passed to :func:`lowbit.data.preprocess`.

    Returns
    -------
    x : float32 ``(N, 1, H, W)``;  y : int64 ``(N,)``
    """
    from lowbit.data.preprocess import labels, preprocess

    images = read_idx(images_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise InputError(f"{images_path} holds {images.dtype} {images.shape}; expected uint8 (N, H, W)")
    x = preprocess(images, mean=mean, std=std)
    return x, labels(read_idx(labels_path), count=x.shape[0])
