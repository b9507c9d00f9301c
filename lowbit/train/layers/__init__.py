"""Trainable layers: each has forward, backward and its ONNX form."""
from lowbit.train.layers.activation import Dropout, Flatten, ReLU
from lowbit.train.layers.affine import Affine
from lowbit.train.layers.base import Layer
from lowbit.train.layers.batchnorm import BatchNorm
from lowbit.train.layers.conv import Conv
from lowbit.train.layers.merge import Add, Concat
from lowbit.train.layers.pool import AvgPool, GlobalAvgPool, MaxPool

__all__ = ["Add", "Affine", "AvgPool", "BatchNorm", "Concat", "Conv", "Dropout", "Flatten",
           "GlobalAvgPool", "Layer", "MaxPool", "ReLU"]
