"""Reading user-named files safely: regular files only, with a size cap.

A FIFO or a device named as a model would block or never end; a file larger
than any model lowbit can hold would be read whole.  Both are refused with a
one-line :class:`~lowbit.errors.ModelLoadError` before a byte is read.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ModelLoadError

#: Largest model file read into memory (protobuf's own limit is 2 GiB).
MAX_MODEL_BYTES = 2 << 30


def regular_file_size(path, what: str = "model") -> int:
    """The size of ``path`` after checking it names an existing regular file.

    Raises
    ------
    ModelLoadError
        Missing, a directory, or not a regular file (FIFO, socket, device).
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ModelLoadError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise ModelLoadError(f"cannot read {what} file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ModelLoadError(f"expected a {what} file, got a directory: {path}")
    if not stat.S_ISREG(info.st_mode):
        raise ModelLoadError(f"expected a regular {what} file, got a FIFO, socket or device: {path}")
    return info.st_size


def read_regular_file(path, what: str = "model", limit: int = MAX_MODEL_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`regular_file_size`)."""
    size = regular_file_size(path, what)
    if size > limit:
        raise ModelLoadError(f"{what} file {path} is {size:,} bytes; expected at most {limit:,}")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
