"""The evaluation harness: results.json agrees with `lowbit run`, parallel equals serial, plots are written."""
import json

import numpy as np
import pytest

from lowbit.cli import main
from lowbit.data import mnist

PRECISIONS = "fp32,fp16,int8,int4,binary"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    assert main(["eval", "--precisions", PRECISIONS, "--limit", "400", "--calibration-size", "200",
                 "--out", str(out)]) == 0
    return out


def test_results_json_has_the_documented_fields(sweep_dir):
    doc = json.loads((sweep_dir / "results.json").read_text())
    assert doc["n_test"] == 400 and doc["model"] == "deep_convnet.onnx"
    assert [r["precision"] for r in doc["results"]] == PRECISIONS.split(",")
    for row in doc["results"]:
        assert {"precision", "bits", "accuracy", "top5", "drop", "agreement", "size_bytes", "images_per_s"} <= set(row)
    fp32 = doc["results"][0]
    assert fp32["drop"] == 0 and fp32["agreement"] == 1
    sizes = {r["precision"]: r["size_bytes"] for r in doc["results"]}
    assert sizes["binary"] < sizes["int4"] < sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    for name in ("results.md", "results.csv", "accuracy_vs_bits.png", "accuracy_vs_size.png", "throughput_vs_bits.png"):
        assert (sweep_dir / name).stat().st_size > 0


def test_each_accuracy_matches_lowbit_run_on_the_saved_model(sweep_dir, tmp_path):
    x, y = mnist("test")
    np.save(tmp_path / "x.npy", x[:400])
    doc = json.loads((sweep_dir / "results.json").read_text())
    for row in doc["results"]:
        out = tmp_path / f"{row['precision']}.npy"
        assert main(["run", row["model_file"], "--input", str(tmp_path / "x.npy"), "--output", str(out)]) == 0
        assert np.mean(np.load(out).argmax(1) == y[:400]) == row["accuracy"], row["precision"]


def test_parallel_sweep_gives_the_serial_numbers(sweep_dir, tmp_path):
    assert main(["eval", "--precisions", PRECISIONS, "--limit", "400", "--calibration-size", "200", "--jobs", "2",
                 "--out", str(tmp_path)]) == 0
    serial = json.loads((sweep_dir / "results.json").read_text())["results"]
    parallel = json.loads((tmp_path / "results.json").read_text())["results"]
    for a, b in zip(serial, parallel):
        for key in ("precision", "accuracy", "top5", "drop", "agreement", "size_bytes"):
            assert a[key] == b[key], (a["precision"], key)


def test_sensitivity_names_every_weighted_layer(tmp_path):
    assert main(["eval", "--sensitivity", "int4", "--limit", "300", "--calibration-size", "100",
                 "--out", str(tmp_path)]) == 0
    layers = json.loads((tmp_path / "sensitivity_int4.json").read_text())["layers"]
    assert [r["layer"] for r in layers] == ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc1", "fc2"]
    assert all(np.isfinite(r["sqnr_db"]) and r["sqnr_db"] > 0 for r in layers)
    assert (tmp_path / "sensitivity_int4.png").stat().st_size > 0


def test_eval_user_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.onnx"), "--out", str(tmp_path)]) == 2
    assert main(["eval", "--precisions", "fp32,int9", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("lowbit: error: ") for line in err) and len(err) == 2
