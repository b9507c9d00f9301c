"""Quantized models: against onnxruntime (QDQ), against themselves after a save/load, and the CLI."""
import numpy as np
import onnxruntime as ort
import pytest

import lowbit
from lowbit.cli import main
from lowbit.graph.onnx_export import export_onnx
from lowbit.quant.calibrate import HISTOGRAM_BINS, calibrate
from tests.graphs import BUILDERS

GRAPHS = ["vgg", "resnet", "inception", "mobilenet", "pytorch_softmax"]


def sample_input(model, n, seed=0):
    shape = tuple(model.graph.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


def ort_outputs(proto, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("activation_type", ["uint8", "int8"])
def test_int8_agrees_with_onnxruntime_running_the_exported_qdq(name, activation_type):
    model = lowbit.load(BUILDERS[name]())
    x = sample_input(model, 48)
    q = lowbit.quantize(model, "int8", calibration=x, activation_type=activation_type)
    assert any(node.precision == "int8" and node.op_type == "Conv" for node in q.graph.nodes)
    ours = q.run(x)
    theirs = ort_outputs(export_onnx(q.graph), x)
    # Both run the same integers; requantization rounding may differ by one step on ties.
    scale = abs(float(np.max(np.abs(theirs)))) / 100
    assert np.mean(np.abs(ours - theirs) <= scale) >= 0.99
    assert np.mean(ours.argmax(1) == theirs.argmax(1)) >= 0.97


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp8-e4m3", "int8"])
def test_save_load_roundtrip_runs_identically(tmp_path, precision):
    model = lowbit.load(BUILDERS["resnet"]())
    x = sample_input(model, 8)
    q = lowbit.quantize(model, precision, calibration=x)
    path = tmp_path / f"m_{precision}.lowbit"
    lowbit.save(q, path)
    again = lowbit.load(path)
    assert again.graph.metadata["precision"] == precision
    np.testing.assert_array_equal(again.run(x), q.run(x))


def stored_bytes(model):
    return sum(np.asarray(v).nbytes for v in model.graph.constants.values())


def test_stored_tensors_shrink_with_the_bits():
    model = lowbit.load(BUILDERS["vgg"]())
    x = sample_input(model, 8)
    fp32 = stored_bytes(model)
    assert 0.49 * fp32 < stored_bytes(lowbit.quantize(model, "fp16")) <= 0.5 * fp32 + 64
    assert stored_bytes(lowbit.quantize(model, "int8", calibration=x)) < 0.3 * fp32
    assert stored_bytes(lowbit.quantize(model, "int4", calibration=x)) < 0.18 * fp32


def test_first_and_last_layer_policy_and_exclusions():
    model = lowbit.load(BUILDERS["vgg"]())
    x = sample_input(model, 8)
    q = lowbit.quantize(model, "int8", calibration=x, first_layer="fp32", last_layer="fp32")
    weighted = [n for n in q.graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert weighted[0].precision == "fp32" and weighted[-1].precision == "fp32"
    assert all(n.precision == "int8" for n in weighted[1:-1])
    q = lowbit.quantize(model, "int8", calibration=x, nodes_to_exclude=["Gemm"])
    assert all(n.precision == "fp32" for n in q.graph.nodes if n.op_type == "Gemm")
    # below 8 bits the edge layers stay int8 unless asked otherwise
    q = lowbit.quantize(model, "int4", calibration=x)
    weighted = [n for n in q.graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert [n.precision for n in weighted] == ["int8"] + ["int4"] * (len(weighted) - 2) + ["int8"]
    q = lowbit.quantize(model, "int4", calibration=x, first_layer="quantized", last_layer="quantized")
    assert all(n.precision == "int4" for n in q.graph.nodes if n.op_type in ("Conv", "Gemm"))


def test_fp16_model_rounds_every_activation():
    model = lowbit.load(BUILDERS["squeezenet"]())
    x = sample_input(model, 4)
    q = lowbit.quantize(model, "fp16")
    captured = {}
    q._executor(None, None).run(q.check_inputs(x), hook=lambda node, i, r: captured.setdefault(node.name, r[0]))
    for name, value in captured.items():
        if value.dtype == np.float32:
            np.testing.assert_array_equal(value, value.astype(np.float16).astype(np.float32), err_msg=name)


def test_calibration_methods_against_numpy():
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal(5000).astype(np.float32) * 2 for _ in range(4)]
    every = np.concatenate(batches)

    def run(observe):
        for b in batches:
            observe("t", b)

    lo, hi = calibrate(run, ["t"], "minmax")["t"]
    assert (lo, hi) == (float(every.min()), float(every.max()))
    lo, hi = calibrate(run, ["t"], "percentile", percentile=99.0)["t"]
    expected = np.percentile(np.abs(every), 99.0)
    bin_width = np.abs(every).max() / HISTOGRAM_BINS
    assert abs(hi - expected) <= 2 * bin_width and abs(-lo - expected) <= 2 * bin_width
    for method in ("entropy", "mse"):
        lo, hi = calibrate(run, ["t"], method)["t"]
        assert 0 < hi <= every.max() and every.min() <= lo < 0


@pytest.fixture
def saved_model(tmp_path):
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(BUILDERS["resnet"](), path)
    model = lowbit.load(path)
    data = tmp_path / "cal.npz"
    np.savez(data, x_train=sample_input(model, 16))
    return path, data


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("lowbit: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_quantize_run_export(tmp_path, saved_model, capsys):
    path, data = saved_model
    out = tmp_path / "m.lowbit"
    assert main(["quantize", str(path), "--precision", "int8", "--calibration", str(data), "--method", "percentile",
                 "-o", str(out)]) == 0
    x = np.load(data)["x_train"]
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), lowbit.load(out).run(x))
    assert main(["inspect", str(out)]) == 0
    assert "int8" in capsys.readouterr().out
    assert main(["export", str(out), "-o", str(tmp_path / "q.onnx")]) == 0
    assert ort_outputs(__import__("onnx").load(tmp_path / "q.onnx"), x).shape == np.load(tmp_path / "y.npy").shape


@pytest.mark.parametrize("case", ["unknown_precision", "empty", "nan", "no_calibration", "unwritable", "mismatch"])
def test_cli_quantize_bad_input(tmp_path, saved_model, capsys, case):
    path, data = saved_model
    out = tmp_path / "q.lowbit"
    args = ["quantize", str(path), "--precision", "int8", "--calibration", str(data), "-o", str(out)]
    if case == "unknown_precision":
        args[3] = "int9"
    elif case == "empty":
        np.savez(data, x_train=np.zeros((0, 1, 16, 16), np.float32))
    elif case == "nan":
        x = np.load(data)["x_train"]
        x[0, 0, 0, 0] = np.nan
        np.savez(data, x_train=x)
    elif case == "no_calibration":
        args = args[:4] + args[6:]
    elif case == "unwritable":
        out = tmp_path / "missing_dir" / "q.lowbit"
        args[-1] = str(out)
    elif case == "mismatch":
        np.savez(data, x_train=np.zeros((4, 3, 5, 5), np.float32))
    assert main(args) == 2
    one_line_error(capsys)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".q.lowbit")]
