"""Where the trained models of the zoo live (the repository's models/ folder)."""
from __future__ import annotations

from pathlib import Path

from .errors import LowbitError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "deep_convnet"


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of ``models/<name>.onnx``.

    Raises
    ------
    LowbitError
        When the file is absent (e.g. lowbit installed without its source tree).
    """
    path = MODELS_DIR / f"{name}.onnx"
    if not path.is_file():
        available = sorted(p.stem for p in MODELS_DIR.glob("*.onnx")) if MODELS_DIR.is_dir() else []
        raise LowbitError(f"model {name!r} not found at {path}; available: {available or 'none'} "
                          "(install lowbit from its source tree with pip install -e .)")
    return path
