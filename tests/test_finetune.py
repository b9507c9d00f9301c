"""Quantization-aware fine-tuning: STE layers against hand-derived surrogate gradients,
a few training steps, and the trained binary forward pass against lowbit's binary inference."""
import io
import zipfile

import numpy as np
import pytest

import lowbit
from lowbit import finetune as ft
from lowbit.errors import InputError
from lowbit.train import Net, to_onnx, train
from lowbit.train.layers import Affine, Conv, Flatten, MaxPool, ReLU
from lowbit.train.layers.quantized import Quantized
from lowbit.train.loss import softmax_cross_entropy
from lowbit.train.ste import approx_sign_grad, fake_quant_activation, get, sign, sign_grad
from tests.naive import conv_gemm as naive


from tests.naive.gradients import numgrad  # noqa: E402


# ---- STE primitives -------------------------------------------------------------------------------

def test_sign_of_zero_is_plus_one_and_grad_is_hardtanh():
    x = np.array([-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5], np.float32)
    assert sign(x).tolist() == [-1, -1, -1, 1, 1, 1, 1, 1]
    dy = np.arange(1, 9, dtype=np.float32)
    # hardtanh'(x) = 1 on [-1, 1], 0 outside
    assert sign_grad(x, dy).tolist() == [0, 2, 3, 4, 5, 6, 7, 0]


def test_approx_sign_grad_is_the_derivative_of_the_piecewise_quadratic():
    def f(x):  # Bi-Real's ApproxSign, written out piece by piece
        return np.select([x < -1, x < 0, x < 1], [-np.ones_like(x), 2 * x + x * x, 2 * x - x * x], np.ones_like(x))

    x = np.array([-1.7, -1.0 + 1e-3, -0.6, -0.25, -1e-3, 1e-3, 0.3, 0.8, 1.0 - 1e-3, 1.4])
    h = 1e-6
    central = (f(x + h) - f(x - h)) / (2 * h)
    dy = np.linspace(0.5, 2.0, len(x))
    np.testing.assert_allclose(approx_sign_grad(x, dy), dy * central, atol=1e-6)
    assert approx_sign_grad(np.array([0.0]), np.array([1.0]))[0] == 2.0  # the peak, where sign jumps


def test_weight_quantizers_match_their_definitions(rng):
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = 0.0
    flat = w.reshape(3, -1).astype(np.float64)
    alpha = np.abs(flat).mean(axis=1)
    expect = alpha[:, None] * np.where(flat < 0, -1, 1)
    np.testing.assert_allclose(get("binary")(w).reshape(3, -1), expect, rtol=1e-6)
    # ternary: threshold 0.7 mean|W|, scale = mean of the kept magnitudes
    delta = 0.7 * alpha[:, None]
    keep = np.abs(flat) > delta
    a_t = np.array([np.abs(r[k]).mean() for r, k in zip(flat, keep)])
    np.testing.assert_allclose(get("ternary")(w).reshape(3, -1), a_t[:, None] * np.sign(flat) * keep, rtol=1e-6)
    # int4: 7 levels each side of 0, step max|W_m| / 7
    q4 = get("int4")(w).reshape(3, -1)
    step = np.abs(flat).max(axis=1) / 7
    levels = q4 / step[:, None]
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    assert np.abs(q4 - flat).max() <= step.max() / 2 + 1e-6
    with pytest.raises(ValueError, match="int4"):
        get("int9")


def test_activation_fake_quant_grid_and_mask():
    x = np.linspace(-1.5, 3.5, 41).astype(np.float32)
    xq, mask = fake_quant_activation(x, -1.0, 3.0, 2)  # 4 levels on [-1, 3]: step 4/3
    step = 4.0 / 3.0
    assert len(np.unique(xq)) == 4
    assert np.all(np.abs(xq - np.clip(x, -1, 3)) <= step / 2 + 1e-6)
    np.testing.assert_array_equal(mask, (x >= -1) & (x <= 3))


# ---- STE layers: backward equals the surrogate gradient ----------------------------------------

def _surrogate_check(layer, x, fwd, rng, factor=lambda x: np.abs(x) <= 1):
    """Analytic grads of sum(R * layer(x)) vs. the surrogate: d/dx of the float op at (a(x), q(W)) times the
    STE mask, and d/dq(W) for the latent weights, both by central differences of an independent oracle."""
    layer.astype(np.float64)
    y = layer.forward(x, train=True)
    r = rng.standard_normal(y.shape)
    (dx,) = layer.backward(r)
    wq = get("binary")(layer.params["W"])
    xa = np.where(x < 0, -1.0, 1.0)
    b = layer.params["b"]
    np.testing.assert_allclose(y, fwd(xa, wq, b), atol=1e-10)
    dxa = numgrad(lambda: (r * fwd(xa, wq, b)).sum(), xa)
    np.testing.assert_allclose(dx, dxa * factor(x), atol=1e-6)
    dwq = numgrad(lambda: (r * fwd(xa, wq, b)).sum(), wq)
    np.testing.assert_allclose(layer.grads["W"], dwq, atol=1e-6)
    np.testing.assert_allclose(layer.grads["b"], r.sum(axis=tuple(i for i in range(r.ndim) if i != 1)), atol=1e-8)


def test_binary_conv_backward_is_the_ste_surrogate(rng):
    conv = Conv(2, 3, 3, rng, stride=1, pad=1)
    conv.params["b"] = rng.standard_normal(3).astype(np.float32)
    layer = Quantized(conv, "binary", inputs="sign")
    x = 1.5 * rng.standard_normal((2, 2, 5, 5))
    x[0, 0, 0, 0] = 0.0

    def fwd(xa, wq, b):  # zero padding of the binarized input: a padded tap contributes 0
        return naive.conv(xa, wq, b, pads=[1, 1, 1, 1], strides=[1, 1])

    _surrogate_check(layer, x, fwd, rng)


def test_binary_affine_backward_is_the_ste_surrogate(rng):
    aff = Affine(7, 4, rng)
    aff.params["b"] = rng.standard_normal(4).astype(np.float32)
    layer = Quantized(aff, "binary", inputs="sign")
    x = 1.5 * rng.standard_normal((3, 7))
    _surrogate_check(layer, x, lambda xa, wq, b: xa @ wq.T + b, rng)


def test_binary_conv_backward_with_approx_sign(rng):
    conv = Conv(2, 3, 3, rng, stride=2, pad=1)
    conv.params["b"] = rng.standard_normal(3).astype(np.float32)
    layer = Quantized(conv, "binary", inputs="sign", sign_backward="approx")
    x = 1.5 * rng.standard_normal((2, 2, 6, 6))

    def fwd(xa, wq, b):
        return naive.conv(xa, wq, b, pads=[1, 1, 1, 1], strides=[2, 2])

    _surrogate_check(layer, x, fwd, rng, factor=lambda x: np.clip(2 - 2 * np.abs(x), 0, None))
    with pytest.raises(ValueError, match="hardtanh, approx"):
        Quantized(conv, "binary", inputs="sign", sign_backward="tanh")


def test_binary_activations_on_float_weights(rng):
    # weights_quantized=False: sign inputs, latent weights as they are (two-step training, step 1)
    conv = Conv(2, 3, 3, rng, stride=1, pad=1)
    conv.params["b"] = rng.standard_normal(3).astype(np.float32)
    layer = Quantized(conv, "binary", inputs="sign")
    layer.weights_quantized = False
    x = 1.5 * rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    w, b = conv.params["W"].astype(np.float64), conv.params["b"].astype(np.float64)
    xa = np.where(x < 0, -1.0, 1.0)
    expect = naive.conv(xa, w, b, pads=[1, 1, 1, 1], strides=[1, 1])
    np.testing.assert_allclose(layer.forward(x, train=True), expect, rtol=1e-5, atol=1e-5)
    layer.weights_quantized = True
    binary = naive.conv(xa, np.abs(w).mean(axis=(1, 2, 3), keepdims=True) * np.where(w < 0, -1.0, 1.0), b,
                        pads=[1, 1, 1, 1], strides=[1, 1])
    np.testing.assert_allclose(layer.forward(x), binary, rtol=1e-5, atol=1e-5)


def test_kbit_input_ste_masks_out_of_range(rng):
    aff = Affine(5, 2, rng)
    layer = Quantized(aff, "int4", inputs=4)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    layer.forward(x, train=True)  # first batch sets the range to its min/max
    lo, hi = float(layer.buffers["in_lo"][0]), float(layer.buffers["in_hi"][0])
    assert (lo, hi) == (float(x.min()), float(x.max()))
    x2 = 2 * x
    layer.forward(x2, train=True)
    lo2, hi2 = float(layer.buffers["in_lo"][0]), float(layer.buffers["in_hi"][0])
    np.testing.assert_allclose([lo2, hi2], [0.9 * lo + 0.2 * x.min(), 0.9 * hi + 0.2 * x.max()], rtol=1e-5)
    (dx,) = layer.backward(np.ones((8, 2), np.float32))
    inside = (x2 >= lo2) & (x2 <= hi2)
    expect = np.ones((8, 2)) @ get("int4")(layer.params["W"])
    np.testing.assert_allclose(dx, expect * inside, rtol=1e-5, atol=1e-6)


# ---- fine-tuning a tiny net ---------------------------------------------------------------------

def tiny_float_net(seed=0):
    net = Net(seed, (1, 12, 12))
    rng = net.init_rng
    net.add("conv1", Conv(1, 4, 3, rng, pad=1))
    net.add("relu1", ReLU())
    net.add("conv2", Conv(4, 8, 3, rng, pad=1))
    net.add("relu2", ReLU())
    net.add("pool1", MaxPool(2))
    net.add("conv3", Conv(8, 8, 3, rng, pad=1))
    net.add("relu3", ReLU())
    net.add("pool2", MaxPool(2))
    net.add("flatten", Flatten())
    net.add("fc1", Affine(8 * 3 * 3, 16, rng))
    net.add("relu4", ReLU())
    net.add("fc2", Affine(16, 3, rng))
    return net


def tiny_data(n=240, seed=0):
    """Three classes of 12x12 images: a bright bar, horizontal, vertical or diagonal, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = 0.2 * rng.random((n, 1, 12, 12)).astype(np.float32)
    for i, c in enumerate(y):
        k = rng.integers(2, 10)
        if c == 0:
            x[i, 0, k, 1:11] += 1.0
        elif c == 1:
            x[i, 0, 1:11, k] += 1.0
        else:
            x[i, 0, np.arange(12), np.arange(12)] += 1.0
    return x, y


@pytest.fixture(scope="module")
def tiny_onnx():
    x, y = tiny_data()
    net = tiny_float_net()
    train(net, x, y, dict(epochs=3, batch_size=20, lr=3e-3), stream=None)
    return to_onnx(net, "tiny")


def test_binary_restructure(tiny_onnx):
    net = ft.qat_net(ft.net_from_onnx(tiny_onnx), "binary")
    kinds = [(n, type(layer).__name__) for n, layer, _ in net.nodes]
    assert kinds == [("conv1", "Conv"), ("relu1_bn", "BatchNorm"), ("conv2", "Quantized"), ("conv2_bn", "BatchNorm"),
                     ("pool1", "MaxPool"), ("conv3", "Quantized"), ("conv3_bn", "BatchNorm"), ("pool2", "MaxPool"),
                     ("flatten", "Flatten"), ("fc1", "Quantized"), ("fc1_bn", "BatchNorm"), ("relu4", "ReLU"),
                     ("fc2", "Affine")]
    assert {layer.sign_backward for _, layer, _ in net.nodes if isinstance(layer, Quantized)} == {"hardtanh"}
    approx = ft.qat_net(ft.net_from_onnx(tiny_onnx), "binary", sign_backward="approx")
    assert {layer.sign_backward for _, layer, _ in approx.nodes if isinstance(layer, Quantized)} == {"approx"}


def test_init_batchnorm_averages_batch_statistics(rng):
    from lowbit.train.layers import BatchNorm

    net = Net(0, (3, 4, 4))
    bn = BatchNorm(3)
    net.add("bn", bn)
    x = (rng.standard_normal((30, 3, 4, 4)) * [[[[1.0]], [[2.0]], [[0.5]]]] + 3.0).astype(np.float32)
    ft.init_batchnorm(net, x, batch_size=10)
    batches = [x[i:i + 10].astype(np.float64) for i in (0, 10, 20)]
    means = [b.mean(axis=(0, 2, 3)) for b in batches]
    variances = [b.var(axis=(0, 2, 3), ddof=1) for b in batches]
    np.testing.assert_allclose(bn.buffers["mean"], np.mean(means, axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.buffers["var"], np.mean(variances, axis=0), rtol=1e-5)
    assert bn.momentum == 0.9 and bn.cache is None


@pytest.mark.parametrize("precision", ["binary", "int2"])
def test_a_few_steps_lower_the_loss(tiny_onnx, precision):
    x, y = tiny_data(seed=1)
    net = ft.qat_net(ft.net_from_onnx(tiny_onnx), precision)
    ft.init_batchnorm(net, x)

    def loss():
        return softmax_cross_entropy(net.forward(x), y)[0]

    before = loss()
    train(net, x, y, {**ft.RECIPES[precision], "epochs": 4, "batch_size": 20, "lr": 3e-3, "max_shift": 0},
          stream=None)
    assert loss() < 0.8 * before


def _tensors(path):
    with zipfile.ZipFile(path) as z:
        with np.load(io.BytesIO(z.read("tensors.npz")), allow_pickle=False) as d:
            return {k: d[k] for k in d.files}


def test_binary_forward_matches_lowbit_inference_and_no_latent_floats_are_saved(tiny_onnx, tmp_path):
    x, y = tiny_data(seed=2)
    net = ft.qat_net(ft.net_from_onnx(tiny_onnx), "binary")
    ft.init_batchnorm(net, x)
    train(net, x, y, {**ft.RECIPES["binary"], "epochs": 3, "batch_size": 20, "lr": 3e-3}, stream=None)
    q = lowbit.quantize(lowbit.load(to_onnx(net, "tiny_binary").SerializeToString()), "binary", calibration=x)
    ours = net.predict(x[:64])
    theirs = q.run(x[:64])
    # sums of +-1 products are exact; only the float order of the folded BatchNorm differs
    np.testing.assert_allclose(theirs, ours, rtol=1e-3, atol=1e-3)
    path = tmp_path / "tiny.lowbit"
    lowbit.save(q, path)
    shapes = {layer.params["W"].shape for _, layer, _ in net.nodes if isinstance(layer, Quantized)}
    floats = [(k, v.shape) for k, v in _tensors(path).items() if v.dtype == np.float32 and v.shape in shapes]
    assert floats == []
    np.testing.assert_allclose(lowbit.load(path).run(x[:64]), theirs, rtol=1e-6, atol=1e-6)


def test_finetune_end_to_end_and_errors(tiny_onnx):
    x, y = tiny_data(n=100, seed=3)
    q = ft.finetune(tiny_onnx, "ternary", x, y, epochs=1, progress=False)
    assert q.graph.metadata["finetune"]["precision"] == "ternary"
    assert q.run(x[:4]).shape == (4, 3)
    kd = ft.finetune(tiny_onnx, "binary", x, y, epochs=1, progress=False, distill=0.5, temperature=2.0)
    assert kd.graph.metadata["finetune"]["recipe"]["distill"] == 0.5
    assert kd.graph.metadata["finetune"]["recipe"]["temperature"] == 2.0
    with pytest.raises(InputError, match="expected one of"):
        ft.finetune(tiny_onnx, "int3", x, y, epochs=1)
    with pytest.raises(InputError, match="expects"):
        ft.finetune(tiny_onnx, "binary", np.zeros((4, 1, 10, 10), np.float32), y[:4], epochs=1)


@pytest.mark.parametrize("precision, sign_grad", [("int4", None), ("binary", "approx")])
def test_main_finetune_writes_the_output(tiny_onnx, tmp_path, precision, sign_grad):
    import argparse

    import onnx

    x, y = tiny_data(n=100, seed=4)
    model, data, out = tmp_path / "tiny.onnx", tmp_path / "d.npz", tmp_path / f"tiny_{precision}.lowbit"
    onnx.save(tiny_onnx, model)
    np.savez(data, x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    args = argparse.Namespace(model=str(model), precision=precision, data=str(data), epochs=1, output=str(out), seed=0,
                              ema=0.9, sign_grad=sign_grad)
    assert ft.main_finetune(args) == 0
    q = lowbit.load(out)
    assert q.run(x[:3]).shape == (3, 3)
    assert q.graph.metadata["finetune"]["recipe"]["ema"] == 0.9
    assert q.graph.metadata["finetune"]["sign_backward"] == (sign_grad or "hardtanh")
    # binary trains on frozen BatchNorm statistics (the int4 tiny net has no BatchNorm to freeze)
    assert q.graph.metadata["finetune"]["recipe"]["freeze_batchnorm"] == (precision == "binary")
    with pytest.raises(InputError, match=".lowbit"):
        ft.main_finetune(argparse.Namespace(**{**vars(args), "output": str(tmp_path / "x.onnx")}))


def test_finetune_binary_stage_specs():
    from models.finetune_binary import parse_stage

    assert parse_stage("10:1e-3:1") == dict(epochs=10, lr=1e-3, max_shift=1, freeze_batchnorm=False, ema=0.0,
                                            float_weights=False)
    assert parse_stage("8:1e-4:0:frozen:ema=0.999") == dict(epochs=8, lr=1e-4, max_shift=0,
                                                            freeze_batchnorm=True, ema=0.999, float_weights=False)
    assert parse_stage("10:1e-3:1:float_weights")["float_weights"] is True
    assert parse_stage("10:5e-5:0:frozen:constant")["schedule"] == "constant"
    for bad in ("8:1e-4", "8:1e-4:0:froze", "x:1e-4:0", "8:1e-4:0:ema=high", "8:1e-4:0:ema=1", "0:1e-4:0"):
        with pytest.raises(ValueError, match="EPOCHS:LR:SHIFT"):
            parse_stage(bad)


def test_finetune_binary_last_stage_must_train_binary_weights(capsys):
    from models.finetune_binary import main

    with pytest.raises(SystemExit) as e:
        main(["--stages", "2:1e-3:1,2:1e-3:1:float_weights"])
    assert e.value.code == 2 and "last stage" in capsys.readouterr().err
