"""The CLI's one error boundary: user errors exit 2, bugs exit 1 in one line, signals clean up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lowbit import cli

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "models" / "deep_convnet.onnx")


def test_a_bug_is_one_line_and_exit_1(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside went wrong\nsecond line")
    monkeypatch.setattr(cli, "cmd_inspect", broken)
    assert cli.main(["inspect", MODEL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something inside went wrong" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("boom")
    monkeypatch.setattr(cli, "cmd_inspect", broken)
    assert cli.main(["--debug", "inspect", MODEL]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_failed_eval_removes_the_folder_it_made(monkeypatch, tmp_path, capsys):
    import lowbit.evaluate.sweep as sweep_module

    def failing_sweep(*args, out_dir, **kwargs):
        (Path(out_dir) / "models").mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "models" / "half.lowbit").write_bytes(b"partial")
        raise cli.LowbitError("the sweep failed")
    monkeypatch.setattr(sweep_module, "sweep", failing_sweep)
    out = tmp_path / "new_folder"
    assert cli.main(["eval", MODEL, "--out", str(out), "--limit", "10", "--precisions", "fp32"]) == 2
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    assert cli.main(["eval", MODEL, "--out", str(existing), "--limit", "10", "--precisions", "fp32"]) == 2
    assert sorted(p.name for p in existing.rglob("*")) == ["mine.txt"]


@pytest.mark.parametrize("argv, match", [
    (["eval", "--precisions", ",,,"], "names no precision"),
    (["eval", "--sensitivity", "int9"], "unknown precision 'int9'"),
])
def test_eval_arguments_are_checked_before_work(argv, match, capsys, tmp_path):
    assert cli.main(argv + ["--out", str(tmp_path / "o")]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "101"])
def test_max_drop_must_be_points(value, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--max-drop", value])
    assert info.value.code == 2


def test_labels_out_of_range_are_refused(tmp_path, capsys):
    x = np.zeros((4, 28, 28), np.uint8)
    data = tmp_path / "d.npz"
    np.savez(data, x_test=x, y_test=np.array([0, 1, 2, 10]), x_train=x)
    assert cli.main(["eval", MODEL, "--data", str(data), "--precisions", "fp32", "--out", str(tmp_path / "o")]) == 2
    assert "expected class indices in [0, 10)" in capsys.readouterr().err


def test_nan_inputs_warn_and_strict_refuses(tmp_path, capsys):
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    x[0, 0, 3, 3] = np.nan
    path = tmp_path / "x.npy"
    np.save(path, x)
    assert cli.main(["run", MODEL, "--input", str(path)]) == 0
    assert "holds 1 NaN or infinite value(s)" in capsys.readouterr().err
    assert cli.main(["run", MODEL, "--input", str(path), "--strict"]) == 2
    assert "expected finite inputs" in capsys.readouterr().err


def test_sigterm_exits_143_and_leaves_nothing(tmp_path):
    out = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "lowbit", "eval", MODEL, "--out", str(out), "--limit", "300",
                             "--precisions", "fp32,fp16,bf16,int8,int4,int2,ternary,binary,fp8-e4m3,fp8-e5m2"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err.decode()
    assert b"lowbit: terminated" in err and b"Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.rglob("*.tmp*"))


def test_a_signal_that_lands_in_cleanup_code_still_exits_as_the_signal(monkeypatch, capsys):
    # SIGTERM raised inside a zip member's close turns into zipfile's own ValueError on the way out.
    def sigterm_then_cleanup_error(args):
        try:
            cli._on_sigterm(signal.SIGTERM, None)
        except cli.Terminated:
            raise ValueError("Can't close the ZIP file while there is an open writing handle on it.") from None
    monkeypatch.setattr(cli, "cmd_inspect", sigterm_then_cleanup_error)
    assert cli.main(["inspect", MODEL]) == 143
    err = capsys.readouterr().err
    assert "terminated" in err and "internal error" not in err
