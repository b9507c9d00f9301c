"""Every trainer layer's backward against central-difference gradients (float64)."""
import numpy as np
import pytest

from lowbit.train.layers import (Add, Affine, AvgPool, BatchNorm, Concat, Conv, Dropout, Flatten,
                                 GlobalAvgPool, MaxPool, ReLU)
from lowbit.train.loss import distillation, softmax_cross_entropy


from tests.naive.gradients import numgrad  # noqa: E402


def check_layer(layer, xs, rng, train=True, before_forward=lambda: None, atol=1e-6):
    """Compare analytic input and parameter gradients of sum(forward(xs) * R) with numerical ones."""
    layer.astype(np.float64)
    for k in layer.params:
        layer.params[k] = layer.params[k] + 0.1 * rng.standard_normal(layer.params[k].shape)
    before_forward()
    y = layer.forward(*xs, train=train)
    r = rng.standard_normal(y.shape)

    def objective():
        before_forward()
        return float((layer.forward(*xs, train=train) * r).sum())

    before_forward()
    layer.forward(*xs, train=train)
    dxs = layer.backward(r)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    for x, dx in zip(xs, dxs):
        np.testing.assert_allclose(dx, numgrad(objective, x), atol=atol, rtol=1e-5)
    for k, w in layer.params.items():
        np.testing.assert_allclose(grads[k], numgrad(objective, w), atol=atol, rtol=1e-5)


@pytest.mark.parametrize("stride,pad,groups", [(1, 0, 1), (1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 0, 1),
                                               (1, 1, 2), (2, 1, 3), (1, 3, 1)])
def test_conv_backward(rng, stride, pad, groups):
    layer = Conv(6, 6, 3, rng, stride=stride, pad=pad, groups=groups)
    check_layer(layer, [rng.standard_normal((2, 6, 7, 6))], rng)


def test_conv_backward_1x1_stride2(rng):
    check_layer(Conv(3, 4, 1, rng, stride=2, bias=False), [rng.standard_normal((2, 3, 6, 6))], rng)


@pytest.mark.parametrize("kernel,stride,pad", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_maxpool_backward(rng, kernel, stride, pad):
    # distinct values, so no window has a tie at the maximum
    x = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7).astype(np.float64) * 0.1
    check_layer(MaxPool(kernel, stride, pad), [x], rng)


@pytest.mark.parametrize("kernel,stride,pad", [(2, 2, 0), (3, 1, 1), (3, 2, 0)])
def test_avgpool_backward(rng, kernel, stride, pad):
    check_layer(AvgPool(kernel, stride, pad), [rng.standard_normal((2, 3, 7, 7))], rng)


def test_global_avgpool_backward(rng):
    check_layer(GlobalAvgPool(), [rng.standard_normal((2, 3, 4, 5))], rng)


def test_affine_backward(rng):
    check_layer(Affine(7, 5, rng), [rng.standard_normal((4, 7))], rng)


def test_relu_backward(rng):
    x = rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 0.01] = 0.5  # keep away from the kink
    check_layer(ReLU(), [x], rng)


def test_flatten_backward(rng):
    check_layer(Flatten(), [rng.standard_normal((2, 3, 2, 2))], rng)


@pytest.mark.parametrize("shape", [(6, 3, 4, 4), (8, 5)])
def test_batchnorm_backward_train_mode(rng, shape):
    check_layer(BatchNorm(shape[1]), [rng.standard_normal(shape) * 2 + 1], rng, atol=1e-5)


def test_batchnorm_backward_inference_mode_is_affine(rng):
    layer = BatchNorm(3).astype(np.float64)
    layer.buffers["mean"] = rng.standard_normal(3)
    layer.buffers["var"] = rng.random(3) + 0.5
    x = rng.standard_normal((2, 3, 2, 2))
    y = layer.forward(x)
    expect = (x - layer.buffers["mean"][:, None, None]) / np.sqrt(layer.buffers["var"][:, None, None] + 1e-5)
    np.testing.assert_allclose(y, expect, atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 3, 4, 4), (8, 3)])
def test_batchnorm_frozen_trains_on_the_running_statistics(rng, shape):
    layer = BatchNorm(3).astype(np.float64)
    layer.buffers["mean"] = rng.standard_normal(3)
    layer.buffers["var"] = rng.random(3) + 0.5
    layer.frozen = True
    before = {k: v.copy() for k, v in layer.buffers.items()}
    x = rng.standard_normal(shape) * 2 + 1
    assert np.array_equal(layer.forward(x, train=True), layer.forward(x))  # the inference-mode output
    assert all(np.array_equal(layer.buffers[k], before[k]) for k in before)  # statistics unchanged
    check_layer(layer, [x], rng, atol=1e-6)  # gradients: numerical differences


def test_dropout_backward_with_fixed_mask(rng):
    layer = Dropout(0.3, None)

    def reseed():
        layer.rng = np.random.default_rng(7)

    check_layer(layer, [rng.standard_normal((4, 6))], rng, before_forward=reseed)


def test_dropout_statistics_and_inference_identity():
    layer = Dropout(0.5, np.random.default_rng(0))
    x = np.ones((200, 100), np.float32)
    y = layer.forward(x, train=True)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs(y.mean() - 1.0) < 0.02
    assert layer.forward(x, train=False) is x


def test_add_backward(rng):
    check_layer(Add(), [rng.standard_normal((2, 3, 2, 2)) for _ in range(3)], rng)


def test_concat_backward(rng):
    check_layer(Concat(), [rng.standard_normal((2, c, 3, 3)) for c in (1, 4, 2)], rng)


def test_softmax_cross_entropy_gradient(rng):
    z = rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    _, dz = softmax_cross_entropy(z, y)
    np.testing.assert_allclose(dz, numgrad(lambda: softmax_cross_entropy(z, y)[0], z), atol=1e-8)


def test_softmax_cross_entropy_value():
    # uniform logits: loss = log K
    loss, _ = softmax_cross_entropy(np.zeros((3, 10)), np.array([0, 5, 9]))
    assert np.isclose(loss, np.log(10))


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_gradient(rng, temperature):
    z, t = rng.standard_normal((5, 4)), 3 * rng.standard_normal((5, 4))
    _, dz = distillation(z, t, temperature)
    np.testing.assert_allclose(dz, numgrad(lambda: distillation(z, t, temperature)[0], z), atol=1e-8)


def test_distillation_value():
    # KL(q || p) by hand for one row; zero when student and teacher agree (up to a shift of the logits).
    z, t = np.array([[0.0, 1.0, 2.0]]), np.array([[2.0, 0.0, 0.0]])
    p = np.exp(z / 2) / np.exp(z / 2).sum()
    q = np.exp(t / 2) / np.exp(t / 2).sum()
    assert np.isclose(distillation(z, t, 2.0)[0], 4 * np.sum(q * np.log(q / p)))
    loss, grad = distillation(t + 5.0, t, 3.0)
    assert abs(loss) < 1e-12 and np.abs(grad).max() < 1e-12
    with pytest.raises(ValueError, match="temperature"):
        distillation(z, t, 0.0)


def test_conv_forward_matches_direct_loops(rng):
    layer = Conv(4, 6, 3, rng, stride=2, pad=1, groups=2).astype(np.float64)
    layer.params["b"] = rng.standard_normal(6)
    x = rng.standard_normal((2, 4, 5, 5))
    y = layer.forward(x)
    W, b = layer.params["W"], layer.params["b"]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expect = np.zeros((2, 6, 3, 3))
    for n in range(2):
        for o in range(6):
            g = o // 3
            for h in range(3):
                for w in range(3):
                    patch = xp[n, 2 * g:2 * g + 2, 2 * h:2 * h + 3, 2 * w:2 * w + 3]
                    expect[n, o, h, w] = (patch * W[o]).sum() + b[o]
    np.testing.assert_allclose(y, expect, atol=1e-12)
