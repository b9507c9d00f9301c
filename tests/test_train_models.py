"""The model zoo: definitions, the training command, and the committed trained ONNX files."""
import json
import os

import numpy as np
import pytest

from models import NETS
from models.train import HERE, load_net_module, main
from lowbit.train.summary import summary


@pytest.mark.parametrize("name", sorted(NETS))
def test_net_builds_and_maps_images_to_10_logits(name):
    net = load_net_module(name).build(0)
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    assert net.forward(x).shape == (2, 10)
    assert net.param_count() == sum(r["params"] for r in summary(net))


def test_deep_convnet_size_matches_the_book():
    # conv params 160+2320+4640+9248+18496+36928, fc 1024*50+50, 50*10+10
    # MACs 28*28*16*9 + 28*28*16*144 + 14*14*32*144 + 16*16*32*288 + 8*8*64*288 + 8*8*64*576 + 51200 + 500
    rows = summary(load_net_module("deep_convnet").build(0))
    assert sum(r["params"] for r in rows) == 71792 + 51250 + 510
    assert sum(r["macs"] for r in rows) == 8772340


def test_unknown_net_is_rejected():
    with pytest.raises(SystemExit):
        main(["no_such_net"])


def test_train_command_smoke(tmp_path):
    out = tmp_path / "mlp.onnx"
    assert main(["mlp", "--epochs", "1", "--limit", "300", "--out", str(out), "--quiet", "--seed", "4"]) == 0
    report = json.loads((tmp_path / "mlp.train.json").read_text())
    assert out.exists() and (tmp_path / "mlp.ckpt.npz").exists() and (tmp_path / "mlp.ckpt.json").exists()
    assert report["seed"] == 4 and len(report["history"]) == 1
    if report["test_acc_onnxruntime"] is not None:  # the exported file predicts like the trainer
        assert abs(report["test_acc_onnxruntime"] - report["test_acc_trainer"]) <= 2e-4


@pytest.mark.parametrize("name", sorted(NETS))
def test_committed_onnx_is_small_float32(name):
    path = os.path.join(HERE, f"{name}.onnx")
    if not os.path.exists(path):
        pytest.skip(f"{name}.onnx not trained yet")
    import onnx

    model = onnx.load(path)
    assert os.path.getsize(path) < 2 * 1024 * 1024
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)
    assert 13 <= model.opset_import[0].version <= 17


def test_deep_convnet_reaches_99_3_percent_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    path = os.path.join(HERE, "deep_convnet.onnx")
    if not os.path.exists(path):
        pytest.skip("deep_convnet.onnx not trained yet")
    from lowbit.data import mnist

    x, y = mnist("test")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    preds = np.concatenate([sess.run(None, {"input": x[i:i + 2000]})[0].argmax(1) for i in range(0, 10000, 2000)])
    assert (preds == y).mean() >= 0.993
