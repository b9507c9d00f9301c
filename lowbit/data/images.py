"""Folders of JPEG/PNG images of any size: decoding, preprocessing presets, streamed batches.

A folder is read in one of three layouts:

* ``ROOT/<class>/*.jpg`` — labelled, the class of an image is its sub-folder
  (sorted names; all-digit names sort numerically);
* ``ROOT/*.jpg`` (any depth) with ``labels=FILE`` — lines ``filename label``,
  the filename relative to ROOT, the label a class index or a class name;
* ``ROOT/*.jpg`` (any depth) — unlabelled.

Images are decoded with Pillow, one batch at a time (:class:`ImageBatches`),
so a folder of 50,000 photos never sits in memory.  A file that cannot be
decoded is skipped with a warning line and counted (:attr:`ImageSet.skipped`).

Preprocessing (:class:`Preprocessing`) without a preset resizes every image
straight to the model's input size (no crop), converts to RGB (L for a
1-channel model) and scales to [0, 1]; the ``imagenet`` preset resizes the
shorter side to ``size / 0.875`` (256 for 224), centre-crops ``size`` and
normalises with the ImageNet mean and std.
"""
from __future__ import annotations

import concurrent.futures
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from lowbit.data.preprocess import per_channel
from lowbit.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRESETS = ("imagenet",)
MAX_WARNINGS = 10  # warning lines for skipped files; the rest are only counted


class UnreadableImage(Exception):
    """A file that Pillow cannot decode (corrupt, truncated, not an image)."""


@dataclass(frozen=True)
class Preprocessing:
    """How one decoded image becomes a float32 ``(C, H, W)`` model input.

    .. math:: x_c = \\frac{u_c / 255 - \\mu_c}{\\sigma_c}

    where ``u`` is the resized (and cropped) 8-bit image in RGB order (BGR
    with ``bgr``; L for one channel).  ``mean`` and ``std`` are in the
    order of the channels the model receives, on the [0, 1] scale.

    Parameters
    ----------
    size : (int, int)
        Model input height and width.
    resize : int, optional
        Resize the shorter side to this, keeping the aspect ratio, then crop
        the centre ``size``; ``None`` resizes straight to ``size``.
    mean, std : tuple of float, optional
    bgr : bool
    channels : {1, 3}
    """

    size: tuple
    resize: int | None = None
    mean: tuple | None = None
    std: tuple | None = None
    bgr: bool = False
    channels: int = 3

    def describe(self) -> str:
        """One line, e.g. ``resize to 224x224, RGB, /255``."""
        h, w = self.size
        steps = [f"resize shorter side to {self.resize}, centre crop {h}x{w}" if self.resize else f"resize to {h}x{w}",
                 "L (grayscale)" if self.channels == 1 else ("BGR" if self.bgr else "RGB"), "/255"]
        if self.mean is not None:
            steps.append("mean " + ",".join(f"{v:g}" for v in self.mean))
        if self.std is not None:
            steps.append("std " + ",".join(f"{v:g}" for v in self.std))
        return ", ".join(steps)

    def __call__(self, image) -> np.ndarray:
        """Preprocess a PIL image; returns float32 ``(C, H, W)``."""
        from PIL import Image

        image = image.convert("L" if self.channels == 1 else "RGB")
        h, w = self.size
        if self.resize:
            iw, ih = image.size
            short = min(iw, ih)
            # as torchvision's Resize(int): the long side is truncated, the crop offset rounded
            nw, nh = (self.resize, int(self.resize * ih / short)) if iw <= ih else (int(self.resize * iw / short),
                                                                                    self.resize)
            nw, nh = max(nw, w), max(nh, h)
            image = image.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = int(round((nw - w) / 2.0)), int(round((nh - h) / 2.0))
            image = image.crop((left, top, left + w, top + h))
        elif image.size != (w, h):
            image = image.resize((w, h), Image.Resampling.BILINEAR)
        x = np.asarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        if self.bgr:
            x = x[::-1]
        if self.mean is not None:
            x = x - np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        if self.std is not None:
            x = x / np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        return np.ascontiguousarray(x, dtype=np.float32)


def preprocessing_for(input_shape, preset: str | None = None, size=None, mean=None, std=None,
                      bgr: bool = False) -> Preprocessing:
    """The preprocessing for a model input of shape ``input_shape`` (NCHW, ``None`` for a dynamic dim).

    The size comes from ``size`` (an int or ``(H, W)``), else from the
    model's H and W; a model with dynamic H/W needs ``size``.

    Raises
    ------
    InputError
        Dynamic H/W and no ``size``, a ``size`` that contradicts the model,
        an input that is not NCHW with 1 or 3 channels, an unknown preset, or
        mean/std with the wrong number of values.
    """
    shape = tuple(input_shape) if input_shape is not None else (None, None, None, None)
    dims = [None if d is None or d <= 0 else int(d) for d in shape]
    if len(dims) != 4:
        raise InputError(f"the model input has shape {shape}; image folders need an NCHW image input")
    channels = dims[1] or 3
    if channels not in (1, 3):
        hint = " (it looks NHWC; lowbit takes NCHW models)" if dims[3] in (1, 3) else ""
        raise InputError(f"the model input has {channels} channels{hint}; image folders feed 1 (L) or 3 (RGB)")
    model_hw = (dims[2], dims[3])
    if size is not None:
        size = tuple(int(s) for s in np.atleast_1d(size))
        size = size * 2 if len(size) == 1 else size
        if any(m is not None and m != s for m, s in zip(model_hw, size)):
            raise InputError(f"--size {size[0]}x{size[1]} but the model takes {_hw(model_hw)} images")
    elif None in model_hw:
        raise InputError(f"the model input has dynamic height/width {_hw(model_hw)}; "
                         "pass --size H (or HxW) for the image size")
    else:
        size = model_hw
    resize = None
    if preset is not None:
        if preset != "imagenet":
            raise InputError(f"unknown preprocessing preset {preset!r}; expected one of {list(PRESETS)}")
        resize = int(round(min(size) / 0.875))
        if channels == 3:
            preset_mean, preset_std = (IMAGENET_MEAN[::-1], IMAGENET_STD[::-1]) if bgr else (IMAGENET_MEAN,
                                                                                            IMAGENET_STD)
            mean = preset_mean if mean is None else mean
            std = preset_std if std is None else std
        elif mean is None or std is None:
            raise InputError("the imagenet preset's mean/std are per RGB channel but the model takes 1 channel; "
                             "pass --mean and --std")
    if bgr and channels == 1:
        raise InputError("--bgr needs a 3-channel model input; this model takes 1 channel (grayscale)")
    mean = None if mean is None else tuple(float(v) for v in per_channel(mean, channels, "mean").ravel())
    std = None if std is None else tuple(float(v) for v in per_channel(std, channels, "std").ravel())
    if std is not None and min(std) <= 0:
        raise InputError(f"std must be positive; got {std}")
    if mean is not None and len(mean) == 1 and channels == 3:
        mean = mean * 3
    if std is not None and len(std) == 1 and channels == 3:
        std = std * 3
    return Preprocessing(size=size, resize=resize, mean=mean, std=std, bgr=bgr, channels=channels)


def _hw(hw) -> str:
    return "x".join("?" if d is None else str(d) for d in hw)


def read_image(path):
    """Decode an image file with Pillow (fully loaded); raises :class:`UnreadableImage`."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            # palette images may carry transparency: expand it before any conversion
            return image.convert("RGBA") if image.mode == "P" else image
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise UnreadableImage(str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__) from None


def _sort_key(name: str):
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _images_under(folder: str) -> list:
    """Image files under ``folder`` at any depth, relative paths, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        found += [f if rel == "." else os.path.join(rel, f) for f in filenames if _is_image(f)]
    return sorted(found)


@dataclass
class ImageSet:
    """The image files of a folder, their labels (or none) and the files skipped so far."""

    root: str
    files: list
    labels: list | None = None
    classes: list | None = None
    skipped: dict = field(default_factory=dict)
    ignored: int = 0

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def head(self, n: int) -> "ImageSet":
        """The first ``n`` files (skips are shared with this set)."""
        return ImageSet(self.root, self.files[:n], None if self.labels is None else self.labels[:n], self.classes,
                        self.skipped)

    def skip(self, path: str, reason: str, stream="stderr") -> None:
        """Record an unreadable file; the first :data:`MAX_WARNINGS` get a warning line on ``stream``."""
        if path in self.skipped:
            return
        self.skipped[path] = reason
        stream = sys.stderr if stream == "stderr" else stream
        if stream is not None:
            if len(self.skipped) <= MAX_WARNINGS:
                print(f"lowbit: warning: skipped {path}: cannot decode it as an image ({reason})", file=stream)
            elif len(self.skipped) == MAX_WARNINGS + 1:
                print("lowbit: warning: more unreadable files are skipped; the summary counts them", file=stream)


def scan_folder(root, labels=None) -> ImageSet:
    """List the images of ``root`` (see the module docstring for the layouts).

    Parameters
    ----------
    root : str or os.PathLike
    labels : str or os.PathLike, optional
        A text file of lines ``filename label`` (``#`` comments and blank
        lines ignored).  Class indices are used as they are; class names
        become indices in sorted order.

    Raises
    ------
    InputError
        No folder, no images, a folder mixing images with class sub-folders,
        or a labels file that cannot be read or names files that are missing.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(f"image folder not found: {root}")
    if labels is not None:
        return _scan_with_labels_file(root, os.fspath(labels))
    entries = sorted(os.listdir(root))
    top = [e for e in entries if _is_image(e) and os.path.isfile(os.path.join(root, e))]
    subdirs = [e for e in entries if not e.startswith(".") and os.path.isdir(os.path.join(root, e))]
    class_files = {d: _images_under(os.path.join(root, d)) for d in subdirs}
    classes = sorted((d for d, fs in class_files.items() if fs), key=_sort_key)
    if top and classes:
        raise InputError(f"{root} holds both images and class sub-folders {classes[:3]}...; expected "
                         "ROOT/<class>/*.jpg (labelled) or images without class folders (unlabelled)")
    if top:
        return ImageSet(root, [os.path.join(root, f) for f in _images_under(root)])
    if not classes:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    files, ys = [], []
    for index, name in enumerate(classes):
        for f in class_files[name]:
            files.append(os.path.join(root, name, f))
            ys.append(index)
    return ImageSet(root, files, ys, classes)


def _scan_with_labels_file(root: str, path: str) -> ImageSet:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels file {path} ({exc}); expected lines 'filename label'") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise InputError(f"{path} line {number}: {line[:60]!r}; expected 'filename label'")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise InputError(f"labels file {path} names no images; expected lines 'filename label'")
    names = [label for _, label in pairs]
    if all(n.isdigit() for n in names):
        ys, classes = [int(n) for n in names], None
    else:
        classes = sorted(set(names), key=_sort_key)
        index = {c: i for i, c in enumerate(classes)}
        ys = [index[n] for n in names]
    files = [os.path.join(root, name) for name, _ in pairs]
    missing = [name for (name, _), full in zip(pairs, files) if not os.path.isfile(full)]
    if missing:
        raise InputError(f"{len(missing)} file(s) named in {path} are not in {root}, e.g. {missing[0]!r}")
    listed = {os.path.normpath(f) for f in files}
    ignored = sum(1 for f in _images_under(root) if os.path.normpath(os.path.join(root, f)) not in listed)
    return ImageSet(root, files, ys, classes, ignored=ignored)


class ImageBatches:
    """Preprocessed batches of an :class:`ImageSet`, decoded when iterated.

    Iterating yields ``(x, y)``: float32 ``(B, C, H, W)`` and int64 ``(B,)``
    labels (``None`` when unlabelled).  Unreadable files are skipped (and
    recorded in the set); a batch is never empty.  The iterable can be
    iterated again (it decodes again).

    Parameters
    ----------
    images : ImageSet
    preprocessing : Preprocessing
    batch_size : int
    workers : int, optional
        Decoding threads (Pillow releases the GIL while decoding and resizing).
    warn : file, optional
        Where warning lines for skipped files go (default: ``sys.stderr`` when
        they happen; None: silent).
    """

    def __init__(self, images: ImageSet, preprocessing: Preprocessing, batch_size: int = 64, workers=None,
                 warn="stderr"):
        self.images, self.preprocessing, self.batch_size = images, preprocessing, max(1, int(batch_size))
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.warn = warn

    def __len__(self) -> int:
        """Number of files (an upper bound on the samples: unreadable ones are skipped)."""
        return len(self.images.files)

    @property
    def labelled(self) -> bool:
        return self.images.labelled

    def _load(self, path: str):
        try:
            return self.preprocessing(read_image(path))
        except UnreadableImage as exc:
            return exc
        except Exception as exc:  # a decoded image that Pillow still cannot convert or resize
            return UnreadableImage(f"{type(exc).__name__}: {exc}")

    def __iter__(self):
        files, labels = self.images.files, self.images.labels
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
            for start in range(0, len(files), self.batch_size):
                chunk = files[start:start + self.batch_size]
                xs, ys = [], []
                for i, value in enumerate(pool.map(self._load, chunk)):
                    if isinstance(value, UnreadableImage):
                        self.images.skip(chunk[i], str(value), self.warn)
                        continue
                    xs.append(value)
                    if labels is not None:
                        ys.append(labels[start + i])
                if xs:
                    yield np.stack(xs), (None if labels is None else np.asarray(ys, np.int64))

    def arrays(self, limit_bytes: int | None = None) -> tuple:
        """Every batch concatenated: ``(x, y)`` (``y`` None when unlabelled).

        ``limit_bytes`` caps the float32 array this builds (an InputError
        suggesting ``--limit`` when the folder would not fit).
        """
        if limit_bytes is not None:
            h, w = self.preprocessing.size
            need = len(self) * self.preprocessing.channels * h * w * 4
            if need > limit_bytes:
                raise InputError(f"{len(self):,} images of {self.preprocessing.channels}x{h}x{w} need "
                                 f"{need / 2**30:.1f} GiB in memory (cap {limit_bytes / 2**30:.1f} GiB); "
                                 "pass --limit N")
        xs, ys = [], []
        for x, y in self:
            xs.append(x)
            ys.append(y)
        if not xs:
            raise InputError(f"none of the {len(self)} image file(s) under {self.images.root} could be decoded")
        x = np.concatenate(xs)
        return x, (None if ys[0] is None else np.concatenate(ys))
