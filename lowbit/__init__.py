"""lowbit: reduced-precision inference and quantization for CNNs.

>>> import lowbit
>>> model = lowbit.load("models/deep_convnet.onnx")
>>> probabilities = model.run(x)          # x: float32 NCHW
>>> print(model.summary())

The public names are imported on first use, so ``import lowbit`` (and the
``lowbit`` command's start-up, where Ctrl-C must exit cleanly) does not load
Numba and the kernels until they are needed.
"""
from .errors import InputError, LowbitError, ModelLoadError, UnsupportedOpError

__version__ = "0.1.0"
__all__ = ["load", "save", "quantize", "Precision", "Model", "LowbitError", "ModelLoadError", "UnsupportedOpError",
           "InputError", "__version__"]

_LAZY = {"load": ("api", "load"), "save": ("api", "save"), "quantize": ("quant.quantize", "quantize"),
         "Precision": ("precision", "Precision"), "Model": ("model", "Model")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lowbit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
