"""Dataset loaders (npz, IDX, image folders), preprocessing and the bundled MNIST.

Every loader returns float32 NCHW images and int64 labels; every problem with
the data raises :class:`lowbit.errors.InputError` with a one-line message.
"""
from lowbit.data.folder import load_folder
from lowbit.data.idx import load_idx, read_idx
from lowbit.data.bundled import mnist, verify as verify_mnist
from lowbit.data.npz import load_npz, read_npz
from lowbit.data.preprocess import labels, preprocess

__all__ = ["load_folder", "load_idx", "load_npz", "mnist", "preprocess", "labels", "read_idx", "read_npz",
           "verify_mnist"]
