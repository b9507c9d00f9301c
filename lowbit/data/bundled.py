"""The MNIST dataset bundled with lowbit (lowbit/data/mnist.npz), checked on load."""
from __future__ import annotations

import os

import numpy as np

from lowbit.errors import InputError
from lowbit.data.checksums import md5_file, md5_idx
from lowbit.data.npz import SPLITS, read_npz
from lowbit.data.preprocess import labels, preprocess

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist.npz")
FILE_MD5 = "1645a3b44f673782419eaed6fa02cb86"
#: md5 of each array serialised as the original uncompressed IDX file.
ARRAY_MD5 = {
    "x_train": "6bbc9ace898e44ae57da46a324031adb",
    "y_train": "a25bea736e30d166cdddb491f175f624",
    "x_test": "2646ac647ad5339dbf082846283269ea",
    "y_test": "27ae3e4e09519cfbb04c329615203637",
}
#: Mean and std of x_train / 255.
MEAN, STD = 0.1306604762738429, 0.3081078

_verified = set()


def verify(path=PATH):
    """Check an MNIST .npz against the known checksums.

    The file md5 is tried first; a rebuilt container (different zip timestamps)
    passes when every array's IDX md5 matches instead.

    Raises
    ------
    InputError
        When the file is missing or its contents differ from MNIST.
    """
    path = os.fspath(path)
    if path in _verified:
        return
    if not os.path.isfile(path):
        raise InputError(f"bundled MNIST not found at {path}; reinstall lowbit")
    if md5_file(path) != FILE_MD5:
        arrays = read_npz(path, list(ARRAY_MD5))
        bad = [k for k, md5 in ARRAY_MD5.items() if md5_idx(arrays[k]) != md5]
        if bad:
            raise InputError(f"{path} fails its checksum: array(s) {bad} differ from MNIST; "
                             f"expected file md5 {FILE_MD5}")
    _verified.add(path)


def mnist(split="test", mean=None, std=None, raw=False):
    """The bundled MNIST split, checksum-verified.

    Parameters
    ----------
    split : {"train", "test"}
    mean, std : optional
        Normalisation after :math:`x = u / 255` (see :data:`MEAN`, :data:`STD`).
    raw : bool
        Return the uint8 ``(N, 28, 28)`` images instead of float32 NCHW.

    Returns
    -------
    x : numpy.ndarray
        float32 ``(N, 1, 28, 28)`` in [0, 1] (or uint8 when ``raw``).
    y : numpy.ndarray
        int64 ``(N,)``.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    verify(PATH)
    d = read_npz(PATH, [f"x_{split}", f"y_{split}"])
    images, y = d[f"x_{split}"], labels(d[f"y_{split}"])
    if raw:
        return images, y
    return preprocess(images, mean=mean, std=std), y
