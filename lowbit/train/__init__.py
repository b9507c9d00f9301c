"""A small numpy + Numba training engine: layers with backward, optimizers, schedules,
augmentation, checkpoints and ONNX export.

Data flow: ``Net`` (named layers) --train()--> trained weights --export_onnx()--> float32 ONNX.
"""
from lowbit.train.export import export_onnx, to_onnx
from lowbit.train.loss import softmax_cross_entropy
from lowbit.train.net import Net
from lowbit.train.trainer import DEFAULT_RECIPE, evaluate, train

__all__ = ["DEFAULT_RECIPE", "Net", "evaluate", "export_onnx", "softmax_cross_entropy", "to_onnx", "train"]
