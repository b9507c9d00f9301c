"""Datasets stored as .npz files with keys x_train, y_train, x_test, y_test."""
from __future__ import annotations

import os
import zipfile

import numpy as np

from lowbit.errors import InputError
from lowbit.data.preprocess import labels, preprocess

SPLITS = ("train", "test")


def read_npz(path, keys):
    """Read the named arrays of an .npz file, without pickle.

    Parameters
    ----------
    path : str or os.PathLike
        The .npz file.
    keys : sequence of str
        Keys that must be present.

    Returns
    -------
    dict of str to numpy.ndarray
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"dataset file not found: {path}; expected an .npz file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise InputError(f"{path} is not a readable .npz file (no zip header); expected a numpy .npz archive")
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in keys if k not in d.files]
            if missing:
                raise InputError(f"{path} lacks key(s) {missing}; it has {sorted(d.files)}")
            return {k: d[k] for k in keys}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(f"{path} is not a readable .npz file ({e}); expected a numpy .npz archive") from None
    except ValueError as e:  # object arrays need pickle, which is refused
        raise InputError(f"{path} holds arrays that need pickle ({e}); expected plain numeric arrays") from None


def load_npz(path, split="test", mean=None, std=None):
    """Load one split of an .npz dataset as float32 NCHW images and int64 labels.

    Images are converted with :func:`lowbit.data.preprocess`
    (:math:`x = (u/255 - \\mu)/\\sigma` for uint8).

    Parameters
    ----------
    path : str or os.PathLike
        File with keys ``x_<split>`` and ``y_<split>``.
    split : {"train", "test"}
    mean, std : float or sequence of float, optional
        Normalisation passed to :func:`preprocess`.

    Returns
    -------
    x : numpy.ndarray
        float32 ``(N, C, H, W)``.
    y : numpy.ndarray
        int64 ``(N,)``.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    d = read_npz(path, [f"x_{split}", f"y_{split}"])
    x = preprocess(d[f"x_{split}"], mean=mean, std=std)
    y = labels(d[f"y_{split}"], count=x.shape[0])
    return x, y
