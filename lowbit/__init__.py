"""lowbit: reduced-precision inference and quantization for CNNs.

>>> import lowbit
>>> model = lowbit.load("models/deep_convnet.onnx")
>>> probabilities = model.run(x)          # x: float32 NCHW
>>> print(model.summary())
"""
from .api import load, save
from .precision import Precision
from .quant.quantize import quantize
from .errors import InputError, LowbitError, ModelLoadError, UnsupportedOpError
from .model import Model

__version__ = "0.1.0"
__all__ = ["load", "save", "quantize", "Precision", "Model", "LowbitError", "ModelLoadError", "UnsupportedOpError", "InputError", "__version__"]
