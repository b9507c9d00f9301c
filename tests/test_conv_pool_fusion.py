"""Conv + 2x2 MaxPool fusion: the kernel (``conv(..., max_pool_2x2=True)``) and
the executor's choice of which node pairs to fuse.  The oracle is the unfused
pair: the fused result must be the same bits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lowbit
from lowbit.kernels.float import conv as conv_module
from lowbit.kernels.float.conv import conv
from lowbit.kernels.float.pool import max_pool
from lowbit.runtime.executor import Executor
from tests.graphs import _GraphBuilder


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((5, 16, 14, 14), (32, 16, 3, 3), dict(pads=[1, 1, 1, 1], clip_min=0.0)),  # Winograd, fused
    ((3, 16, 8, 8), (16, 16, 3, 3), dict(pads=[2, 2, 2, 2], clip_max=0.5)),     # Winograd, fused
    ((2, 16, 7, 7), (16, 16, 3, 3), dict(pads=[1, 1, 1, 1])),                   # odd output, fused
    ((2, 16, 4, 5), (16, 16, 3, 3), dict()),                                    # 2x3 output, fused
    ((3, 256, 6, 6), (256, 256, 3, 3), dict(pads=[1, 1, 1, 1])),                # too few tiles: conv, then pool
    ((3, 3, 9, 9), (16, 3, 3, 3), dict(pads=[1, 1, 1, 1])),                     # direct 3x3, then pool
    ((2, 4, 9, 9), (8, 4, 5, 5), dict(pads=[2, 2, 2, 2], strides=[1, 1])),      # im2col, then pool
])
def test_fused_equals_conv_then_pool(rng, monkeypatch, x_shape, w_shape, attrs):
    monkeypatch.setattr(conv_module, "_WINOGRAD_MIN_TILES", 1)  # the small Winograd cases too
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    x[0, 0, 2, 3] = np.nan  # NaN takes the same path through both
    fused = conv(x, w, b, max_pool_2x2=True, **attrs)
    expect = max_pool(conv(x, w, b, **attrs), kernel_shape=[2, 2], strides=[2, 2])
    assert fused.shape == expect.shape
    assert np.array_equal(fused, expect, equal_nan=True)


def test_fused_pool_on_an_empty_batch():
    y = conv(np.zeros((0, 16, 6, 6), np.float32), np.zeros((16, 16, 3, 3), np.float32), pads=[1, 1, 1, 1],
             max_pool_2x2=True)
    assert y.shape == (0, 16, 3, 3)


def test_fused_pool_needs_2d():
    with pytest.raises(ValueError, match="2-D"):
        conv(np.zeros((1, 2, 5), np.float32), np.zeros((2, 2, 3), np.float32), max_pool_2x2=True)


def conv_pool_model(pool_attrs, extra_reader=False, seed=0):
    g = _GraphBuilder(seed)
    x = g.relu(g.conv("input", 16, 16, 3, pad=1))
    y = g.op("MaxPool", [x], **pool_attrs)
    if extra_reader:
        y = g.op("Add", [g.op("GlobalMaxPool", [x]), g.op("GlobalMaxPool", [y])])
    return g.model("conv_pool", "input", [16, 8, 8], [(y, 4)])


@pytest.mark.parametrize("pool_attrs, extra_reader, fused", [
    (dict(kernel_shape=[2, 2], strides=[2, 2]), False, True),
    (dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], ceil_mode=0), False, True),
    (dict(kernel_shape=[2, 2], strides=[2, 2]), True, False),               # the conv output has another reader
    (dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]), False, False),
    (dict(kernel_shape=[3, 3], strides=[2, 2]), False, False),
    (dict(kernel_shape=[2, 2], strides=[1, 1]), False, False),
    (dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), False, False),
])
def test_executor_fuses_only_exact_pairs(rng, pool_attrs, extra_reader, fused):
    model = lowbit.load(conv_pool_model(pool_attrs, extra_reader).SerializeToString())
    executor = Executor(model.graph)
    assert any(executor.fused_pool) == fused
    x = rng.standard_normal((6, 16, 8, 8)).astype(np.float32)
    plain = Executor(model.graph)
    plain.fused_pool = [False] * len(plain.fused_pool)
    feeds = model.check_inputs(x)
    name = model.output_names[0]
    assert np.array_equal(executor.run(feeds)[name], plain.run(feeds)[name])


def test_fusion_steps_aside_when_the_conv_output_is_asked_for(rng):
    model = lowbit.load(conv_pool_model(dict(kernel_shape=[2, 2], strides=[2, 2])).SerializeToString())
    conv_out = model.graph.nodes[0].outputs[0]
    x = rng.standard_normal((3, 16, 8, 8)).astype(np.float32)
    both = model.run(x, outputs=[conv_out, model.output_names[0]])
    assert both[conv_out].shape == (3, 16, 8, 8)
    expect = max_pool(both[conv_out], kernel_shape=[2, 2], strides=[2, 2])
    assert np.array_equal(both[model.output_names[0]], expect)
    seen = []
    Executor(model.graph).run(model.check_inputs(x), hook=lambda node, a, r: seen.append(node.op_type))
    assert seen == ["Conv", "MaxPool"]


def test_seed_cnn_fuses_its_three_conv_pool_pairs():
    model = lowbit.load(Path(__file__).resolve().parents[1] / "models" / "deep_convnet.onnx")
    executor = Executor(model.graph)
    fused = [node.name for node, f in zip(model.graph.nodes, executor.fused_pool) if f]
    assert fused == ["conv2", "conv4", "conv6"]
