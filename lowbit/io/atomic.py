"""Atomic file writes: write to a temporary file beside the target, then rename."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..errors import LowbitError


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path in ``target``'s folder; rename it to ``target`` on success.

    On any error the temporary file is removed, so no partial output is left.

    Raises
    ------
    LowbitError
        When the target's folder does not exist or is not writable.
    """
    if not str(target) or str(target).endswith(("/", os.sep)):
        raise LowbitError(f"cannot write {str(target)!r}: expected a file name")
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise LowbitError(f"cannot write {target}: folder {folder} does not exist")
    if target.is_dir():
        raise LowbitError(f"cannot write {target}: it is a directory; expected a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=folder)
    except OSError as exc:
        raise LowbitError(f"cannot write {target}: {exc.strerror}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise LowbitError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_npy(array, target) -> None:
    """``numpy.save`` to ``target`` atomically."""
    import numpy as np

    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def save_npz(arrays: dict, target) -> None:
    """``numpy.savez`` of ``arrays`` to ``target`` atomically."""
    import numpy as np

    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
