"""Datasets stored as one folder of PNG/JPEG images per class, all of one size: ROOT/<label>/*.png.

Images of any size, streamed in batches with resizing presets: :mod:`lowbit.data.images`.
"""
from __future__ import annotations

import os

import numpy as np

from lowbit.errors import InputError
from lowbit.data.images import IMAGE_EXTENSIONS
from lowbit.data.preprocess import preprocess


def _read_image(path):
    """Decode a PNG or JPEG to uint8 ``(H, W)`` (grayscale) or ``(H, W, 3)`` (alpha dropped)."""
    from lowbit.data.images import UnreadableImage, read_image

    try:
        img = read_image(path)
    except UnreadableImage as e:
        raise InputError(f"cannot read image {path} ({e}); expected an 8-bit PNG or a JPEG") from None
    if img.mode not in ("L", "RGB"):
        img = img.convert("L" if img.mode in ("1", "LA", "I", "I;16", "F") else "RGB")
    return np.asarray(img, dtype=np.uint8)


def load_folder(root, classes=None, mean=None, std=None):
    """Load ``root/<class>/*.png`` (or ``.jpg``) of one shape into float32 NCHW images and int64 labels.

    The label of an image is the index of its folder in ``classes``
    (default: the sub-folder names, sorted; all-digit names sort numerically).

    Parameters
    ----------
    root : str or os.PathLike
    classes : sequence of str, optional
        Sub-folder names in label order.
    mean, std : optional
        Normalisation passed to :func:`lowbit.data.preprocess`.

    Returns
    -------
    x : float32 ``(N, C, H, W)`` (C = 1 for grayscale, 3 for RGB);  y : int64 ``(N,)``
    classes : list of str
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(f"image folder not found: {root}; expected ROOT/<class>/*.png")
    if classes is None:
        classes = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
        classes.sort(key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))
    if not classes:
        raise InputError(f"{root} has no class sub-folders; expected ROOT/<class>/*.png")
    images, ys = [], []
    for label, name in enumerate(classes):
        sub = os.path.join(root, name)
        if not os.path.isdir(sub):
            raise InputError(f"class folder {sub} not found; {root} has {sorted(os.listdir(root))}")
        for f in sorted(os.listdir(sub)):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                images.append(_read_image(os.path.join(sub, f)))
                ys.append(label)
    if not images:
        raise InputError(f"no .png/.jpg images under {root}; expected ROOT/<class>/*.png")
    shapes = {img.shape for img in images}
    if len(shapes) != 1:
        raise InputError(f"images under {root} have different shapes {sorted(shapes)}; expected one shape")
    x = preprocess(np.stack(images), mean=mean, std=std)
    return x, np.asarray(ys, np.int64), list(classes)
