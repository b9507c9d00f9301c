"""The lowbit command: results, exit codes, one-line errors, no partial files."""
import argparse
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.cli import main


@pytest.fixture
def small_model(tmp_path, rng):
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    fw = rng.standard_normal((5, 4 * 8 * 8)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "FW"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(fw, "FW")])
    path = tmp_path / "small.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("lowbit: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_run_writes_what_onnxruntime_computes(tmp_path, small_model, rng, capsys):
    x = rng.standard_normal((7, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    assert main(["run", str(small_model), "--input", str(tmp_path / "x.npy"), "--output", str(out),
                 "--batch-size", "3", "--threads", "1"]) == 0
    expected = ort.InferenceSession(str(small_model)).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert "prob: shape (7, 5)" in capsys.readouterr().out


def test_uint8_images_are_scaled_like_the_dataset_contract(tmp_path, small_model, rng):
    images = rng.integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "img.npy", images)
    assert main(["run", str(small_model), "--input", str(tmp_path / "img.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    x = (images.astype(np.float32) / 255)[:, None]
    expected = ort.InferenceSession(str(small_model)).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


def test_inspect_prints_layers_and_totals(small_model, capsys):
    assert main(["inspect", str(small_model)]) == 0
    out = capsys.readouterr().out
    assert "Conv+Relu" in out and "Gemm" in out
    # conv 1->4 3x3 on 8x8 pad 1: 4*9 params, 4*64*9 MACs; gemm 256->5: 1280 params and MACs
    assert f"{36 + 1280:,}" in out and f"{4 * 64 * 9 + 1280:,}" in out


@pytest.mark.parametrize("case", ["missing_model", "not_onnx", "wrong_shape", "int_input", "missing_input", "bad_output_dir"])
def test_user_errors_exit_2_with_one_line_and_no_output(tmp_path, small_model, rng, capsys, case):
    x_path = tmp_path / "x.npy"
    np.save(x_path, rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    out = tmp_path / "y.npy"
    args = ["run", str(small_model), "--input", str(x_path), "--output", str(out)]
    if case == "missing_model":
        args[1] = str(tmp_path / "nope.onnx")
    elif case == "not_onnx":
        (tmp_path / "junk.onnx").write_bytes(b"this is not a protobuf \x00\xff" * 10)
        args[1] = str(tmp_path / "junk.onnx")
    elif case == "wrong_shape":
        np.save(x_path, np.zeros((2, 1, 9, 8), np.float32))
    elif case == "int_input":
        np.save(x_path, np.zeros((2, 1, 8, 8), np.int32))
    elif case == "missing_input":
        args[3] = str(tmp_path / "none.npy")
    elif case == "bad_output_dir":
        out = tmp_path / "no" / "such" / "dir" / "y.npy"
        args[5] = str(out)
    assert main(args) == 2
    err = one_line_error(capsys)
    if case == "wrong_shape":
        assert "(N, 1, 8, 8)" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".y.npy")]


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lowbit", "inspect", str(tmp_path / "absent.onnx")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("lowbit: error: model file not found")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flag, value", [("--distill", "1.5"), ("--distill", "half"), ("--temperature", "0"),
                                         ("--ema", "1"), ("--ema", "-0.5"), ("--sign-grad", "tanh")])
def test_finetune_rejects_bad_distillation_settings(tmp_path, small_model, capsys, flag, value):
    out = tmp_path / "o.lowbit"
    with pytest.raises(SystemExit) as exc:
        main(["finetune", str(small_model), "--precision", "binary", "--data", str(tmp_path / "d.npz"),
              flag, value, "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in err and value in err
    assert not out.exists()


def test_finetune_sign_grad_choices_are_the_trainers():
    # the CLI lists the names literally (importing the trainer would slow every command's start)
    from lowbit.cli import build_parser
    from lowbit.train.ste import SIGN_GRADIENTS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["finetune"]._actions if a.dest == "sign_grad")
    assert tuple(action.choices) == tuple(SIGN_GRADIENTS)
