"""The training loop, optimizers, schedules, augmentation, checkpoints and ONNX export."""
import io
import json

import numpy as np
import pytest

from lowbit.train import Net, export_onnx, train
from lowbit.train import optim, schedule
from lowbit.train.augment import random_shift_rotate, warp
from lowbit.train.checkpoint import load_checkpoint, save_checkpoint
from lowbit.train.layers import (Add, Affine, AvgPool, BatchNorm, Concat, Conv, Dropout, Flatten,
                                 GlobalAvgPool, MaxPool, ReLU)
from lowbit.console import Progress


def tiny_net(seed=0):
    net = Net(seed, (1, 8, 8))
    rng = net.init_rng
    net.add("conv", Conv(1, 4, 3, rng, pad=1))
    net.add("relu", ReLU())
    net.add("pool", MaxPool(2))
    net.add("flat", Flatten())
    net.add("drop", Dropout(0.2, net.dropout_rng))
    net.add("fc", Affine(64, 3, rng))
    return net


def tiny_data(n=60, seed=0):
    # three separable classes: a bright row, column or diagonal
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.random((n, 1, 8, 8)).astype(np.float32) * 0.3
    for i, c in enumerate(y):
        if c == 0:
            x[i, 0, 3, :] += 1
        elif c == 1:
            x[i, 0, :, 3] += 1
        else:
            x[i, 0, np.arange(8), np.arange(8)] += 1
    return x, y.astype(np.int64)


RECIPE = dict(epochs=5, batch_size=10, optimizer="adam", lr=1e-2, schedule="cosine", max_shift=1, max_rotate=5.0)


def test_loss_falls():
    x, y = tiny_data()
    info = train(tiny_net(), x, y, RECIPE, seed=0, stream=None)
    losses = [h["loss"] for h in info["history"]]
    assert losses[-1] < 0.7 * losses[0]


def test_distillation_pulls_the_student_towards_the_teacher():
    # A teacher that always answers class 2: with distill=1 the labels are ignored and the
    # student learns to answer 2; with distill=0 it learns the labels.
    x, y = tiny_data()
    teacher = lambda xb: np.tile(np.array([0.0, 0.0, 8.0], np.float32), (len(xb), 1))  # noqa: E731
    kd = tiny_net()
    train(kd, x, y, {**RECIPE, "distill": 1.0, "temperature": 2.0}, seed=0, stream=None, teacher=teacher)
    assert (kd.predict(x).argmax(axis=1) == 2).mean() > 0.9
    plain = tiny_net()
    train(plain, x, y, RECIPE, seed=0, stream=None, teacher=teacher)
    assert (plain.predict(x).argmax(axis=1) == y).mean() > 0.9
    with pytest.raises(ValueError, match="teacher"):
        train(tiny_net(), x, y, {**RECIPE, "distill": 0.5}, seed=0, stream=None)


def test_freeze_batchnorm_keeps_the_running_statistics():
    x, y = tiny_data()
    net = Net(0, (1, 8, 8))
    net.add("conv", Conv(1, 4, 3, net.init_rng, pad=1))
    bn = BatchNorm(4)
    net.add("bn", bn)
    net.add("relu", ReLU())
    net.add("flat", Flatten())
    net.add("fc", Affine(256, 3, net.init_rng))
    train(net, x, y, {**RECIPE, "epochs": 1}, seed=0, stream=None)
    stats = {k: v.copy() for k, v in bn.buffers.items()}
    gamma = bn.params["gamma"].copy()
    train(net, x, y, {**RECIPE, "epochs": 2, "freeze_batchnorm": True}, seed=0, stream=None)
    assert all(np.array_equal(bn.buffers[k], stats[k]) for k in stats)
    assert not np.array_equal(bn.params["gamma"], gamma)  # the affine part still learns
    assert bn.frozen is False


def test_ema_ends_on_the_average_of_the_step_by_step_weights():
    # Oracle: the same seeded run stopped after k = 0..K steps gives the weights θ_k;
    # the average is then folded by hand, θ̄_0 = θ_0, θ̄_k = d θ̄_{k-1} + (1 - d) θ_k.
    x, y = tiny_data()
    d, steps = 0.8, 9
    recipe = {**RECIPE, "epochs": 2}
    thetas = [tiny_net().parameters()]
    for k in range(1, steps + 1):
        net = tiny_net()
        train(net, x, y, recipe, seed=2, stream=None, max_steps=k)
        thetas.append(net.parameters())
    expected = {n: v.astype(np.float64) for n, v in thetas[0].items()}
    for theta in thetas[1:]:
        expected = {n: d * expected[n] + (1 - d) * theta[n] for n in expected}
    averaged = tiny_net()
    train(averaged, x, y, {**recipe, "ema": d}, seed=2, stream=None, max_steps=steps)
    for n, v in averaged.parameters().items():
        np.testing.assert_allclose(v, expected[n], rtol=1e-5, atol=1e-6)
        assert not np.allclose(v, thetas[-1][n], rtol=1e-3, atol=1e-4)  # not the last weights


def test_ema_test_accuracy_is_that_of_the_averaged_weights():
    x, y = tiny_data()
    xt, yt = tiny_data(40, seed=1)
    net = tiny_net()
    info = train(net, x, y, {**RECIPE, "ema": 0.9}, seed=0, stream=None, x_test=xt, y_test=yt)
    assert info["history"][-1]["test_acc"] == (net.predict(xt).argmax(axis=1) == yt).mean()
    with pytest.raises(ValueError, match="ema"):
        train(tiny_net(), x, y, {**RECIPE, "ema": 1.0}, seed=0, stream=None)


def test_ema_resume_is_identical_to_uninterrupted(tmp_path):
    x, y = tiny_data()
    recipe = {**RECIPE, "ema": 0.7}
    full = tiny_net()
    train(full, x, y, recipe, seed=3, stream=None)
    ckpt = str(tmp_path / "ck.npz")
    train(tiny_net(), x, y, recipe, seed=3, stream=None, checkpoint=ckpt, max_steps=12)
    resumed = tiny_net()
    train(resumed, x, y, recipe, seed=3, stream=None, checkpoint=ckpt, resume=True)
    for k, v in full.state().items():
        np.testing.assert_array_equal(v, resumed.state()[k])
    plain = str(tmp_path / "plain.npz")
    train(tiny_net(), x, y, RECIPE, seed=3, stream=None, checkpoint=plain, max_steps=6)
    with pytest.raises(ValueError, match="without ema"):
        train(tiny_net(), x, y, recipe, seed=3, stream=None, checkpoint=plain, resume=True)


def test_same_seed_same_weights_other_seed_differs():
    x, y = tiny_data()
    nets = [tiny_net(s) for s in (0, 0, 1)]
    for s, net in zip((0, 0, 1), nets):
        train(net, x, y, RECIPE, seed=s, stream=None)
    a, b, c = (n.state() for n in nets)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_resume_is_identical_to_uninterrupted(tmp_path):
    x, y = tiny_data()
    full = tiny_net()
    train(full, x, y, RECIPE, seed=3, stream=None)
    ckpt = str(tmp_path / "ck.npz")
    part = tiny_net()
    train(part, x, y, {**RECIPE}, seed=3, stream=None, checkpoint=ckpt, max_steps=12)  # stops in epoch 2
    info = json.load(open(tmp_path / "ck.json"))
    assert info["epoch"] == 2 and info["step"] == 12
    resumed = tiny_net()
    # 12 steps = epoch 1 (6 steps) + 6 of epoch 2, checkpointed at the end of epoch 2's loop
    train(resumed, x, y, RECIPE, seed=3, stream=None, checkpoint=ckpt, resume=True)
    full_state, res_state = full.state(), resumed.state()
    for k in full_state:
        np.testing.assert_array_equal(full_state[k], res_state[k])


def test_checkpoint_round_trip_without_pickle(tmp_path):
    net = tiny_net()
    opt = optim.Adam()
    x, y = tiny_data(10)
    from lowbit.train.loss import softmax_cross_entropy
    _, d = softmax_cross_entropy(net.forward(x, train=True), y)
    net.backward(d)
    opt.step(net.parameters(), net.gradients(), 1e-3)
    path = tmp_path / "c.npz"
    save_checkpoint(path, net, opt, {"epoch": 1})
    with np.load(path, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
    net2, opt2 = tiny_net(seed=5), optim.Adam()
    assert load_checkpoint(path, net2, opt2)["epoch"] == 1
    for k, v in net.state().items():
        np.testing.assert_array_equal(v, net2.state()[k])
    assert opt2.t == 1 and set(opt2.m) == set(opt.m)


def rich_net():
    """Every exportable layer once: grouped/strided conv, BN, pools, Add, Concat, Dropout, Affine."""
    net = Net(0, (2, 9, 9))
    r = net.init_rng
    net.add("c1", Conv(2, 8, 3, r, pad=1, groups=2))
    net.add("bn1", BatchNorm(8))
    net.add("r1", ReLU())
    net.add("c2", Conv(8, 8, 3, r, stride=2, pad=1, bias=False))
    net.add("sc", Conv(8, 8, 1, r, stride=2), inputs="r1")
    net.add("add", Add(), inputs=["c2", "sc"])
    net.add("mp", MaxPool(3, 1, 1), inputs="add")
    net.add("ap", AvgPool(3, 1, 1), inputs="add")
    net.add("cat", Concat(), inputs=["mp", "ap", "add"])
    net.add("ap2", AvgPool(2))
    net.add("gap", GlobalAvgPool())
    net.add("flat", Flatten())
    net.add("drop", Dropout(0.5, net.dropout_rng))
    net.add("fc", Affine(24, 5, r))
    return net


def test_onnx_export_drops_a_trailing_dropout(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = tiny_net()
    net.add("drop_out", Dropout(0.5, net.dropout_rng))  # the book's deep CNN ends with a Dropout
    path = str(tmp_path / "tiny.onnx")
    model = export_onnx(net, path)
    assert [o.name for o in model.graph.output] == ["logits"]
    x = tiny_data(7)[0]
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, net.forward(x), atol=1e-5)


def test_onnx_export_matches_trainer_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = rich_net()
    rng = np.random.default_rng(0)
    bn = net.nodes[1][1]
    bn.buffers["mean"] = rng.standard_normal(8).astype(np.float32)
    bn.buffers["var"] = (rng.random(8) + 0.5).astype(np.float32)
    bn.params["gamma"] = (rng.random(8) + 0.5).astype(np.float32)
    for _, layer, _ in net.nodes:
        if "b" in layer.params:
            layer.params["b"] = rng.standard_normal(layer.params["b"].shape).astype(np.float32)
    x = rng.standard_normal((3, 2, 9, 9)).astype(np.float32)
    path = str(tmp_path / "rich.onnx")
    model = export_onnx(net, path)
    assert 13 <= model.opset_import[0].version <= 17
    ops = {n.op_type for n in model.graph.node}
    assert {"BatchNormalization", "Add", "Concat", "AveragePool", "GlobalAveragePool"} <= ops
    assert not ops & {"Dropout", "Identity"}  # dropout is omitted at inference
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, net.forward(x), atol=1e-5)


def test_sgd_momentum_matches_closed_form():
    # f(w) = w^2 / 2, so g = w; heavy-ball recursion written out by hand
    w = np.array([1.0])
    opt = optim.SGD(momentum=0.5)
    v, ww = 0.0, 1.0
    for _ in range(4):
        opt.step({"w": w}, {"w": w.copy()}, 0.1)
        v = 0.5 * v + ww
        ww = ww - 0.1 * v
    assert np.isclose(w[0], ww)


def test_adam_first_step_is_lr_times_sign():
    w = np.array([1.0, -2.0, 3.0])
    optim.Adam().step({"w": w}, {"w": np.array([0.5, -4.0, 1e-3])}, 0.01)
    np.testing.assert_allclose(w, [0.99, -1.99, 2.99], atol=1e-7)


def test_schedules():
    cos = schedule.get("cosine", 1.0, 100, 10, min_lr=0.1)
    assert cos(0) == 1.0 and np.isclose(cos(50), 0.55) and np.isclose(cos(100), 0.1)
    step = schedule.get("step", 1.0, 100, 10, milestones=(2, 5), gamma=0.1)
    assert [step(s) for s in (0, 19, 20, 49, 50)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule.get("linear", 1.0, 10, 1)


def test_warp_identity_shift_and_rotation():
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(warp(x, np.zeros(2), np.zeros((2, 2))), x, atol=1e-6)
    shifted = warp(x, np.zeros(2), np.array([[1, -2], [0, 0]]))
    expect = np.zeros_like(x[0, 0])
    expect[1:, :4] = x[0, 0, :5, 2:]  # down 1, left 2, zero fill
    np.testing.assert_allclose(shifted[0, 0], expect, atol=1e-6)
    rot = warp(x, np.full(2, 90.0), np.zeros((2, 2)))
    # a positive angle turns the image clockwise as displayed (rows pointing down)
    np.testing.assert_allclose(rot[:, 0], np.rot90(x[:, 0], k=-1, axes=(1, 2)), atol=1e-5)


def test_augmentation_is_seeded():
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    a = random_shift_rotate(x, np.random.default_rng(1), 2, 10)
    b = random_shift_rotate(x, np.random.default_rng(1), 2, 10)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, x)


def test_progress_bar_writes_loss_and_accuracy():
    out = io.StringIO()
    bar = Progress(10, "epoch 1/1", out)
    for _ in range(10):
        bar.update(1, 5, loss=0.5, acc=0.75)
    bar.close()
    last = out.getvalue().strip().splitlines()[-1]
    assert "10/10" in last and "loss 0.5000" in last and "acc 0.7500" in last and "img/s" in last
