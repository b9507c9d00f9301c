"""Whole graphs through lowbit's float32 path, checked against onnxruntime.

onnxruntime is the oracle: every lowbit result here is compared with what
onnxruntime computes for the same model and input, never with another lowbit
result.  The graphs come from ``tests/graphs.py`` (one per CNN family and
exporter style), from ``models/*.onnx`` (the trained models, also checked on
2,000 MNIST test images) and from ``tests/data/torch_*.onnx`` (real
``torch.onnx.export`` output).

Tolerance: ``max |lowbit - ort| <= 1e-4 * max(1, max |ort|)``, and the same
argmax for every sample whose top-two margin in the onnxruntime output is
larger than twice that tolerance (a closer call is a tie at float32
precision, and either answer is right).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.errors import InputError, ModelLoadError, UnsupportedOpError

from .graphs import BUILDERS

ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
TRAINED_MODELS = sorted((REPO / "models").glob("*.onnx"))
TORCH_EXPORTS = sorted((REPO / "tests" / "data").glob("torch_*.onnx"))
MNIST_CANDIDATES = (REPO / "lowbit" / "data" / "mnist.npz", REPO.parent / "shared" / "data" / "mnist.npz")
N_MNIST = 2000
REL_TOL = 1e-4


# --- helpers -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def graph_bytes(name: str) -> bytes:
    return BUILDERS[name]().SerializeToString()


@functools.lru_cache(maxsize=None)
def ort_session(source) -> "ort.InferenceSession":
    """One onnxruntime session per model (bytes or path), on 2 threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def ort_outputs(source, x: np.ndarray) -> dict:
    session = ort_session(source)
    name = session.get_inputs()[0].name
    values = session.run(None, {name: x})
    return {o.name: v for o, v in zip(session.get_outputs(), values)}


def input_shape(source, batch: int) -> tuple:
    """The model's single input shape with the batch dim set to ``batch``."""
    (inp,) = ort_session(source).get_inputs()
    dims = inp.shape[1:]
    assert all(isinstance(d, int) for d in dims), f"non-batch dims of {inp.name} must be static: {inp.shape}"
    return (batch, *dims)


def images(shape, seed: int = 0) -> np.ndarray:
    """Random image-like batches: smooth blobs + noise + a per-channel offset per sample.

    Plain white noise would average out in the global pools and give every
    sample the same class; this keeps the classes apart.
    """
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    coarse = rng.standard_normal((n, c, 4, 4))
    smooth = np.repeat(np.repeat(coarse, -(-h // 4), axis=2), -(-w // 4), axis=3)[:, :, :h, :w]
    x = smooth + 0.5 * rng.standard_normal(shape) + rng.standard_normal((n, c, 1, 1))
    return x.astype(np.float32)


def as_dict(result, names) -> dict:
    if isinstance(result, dict):
        return result
    assert len(names) == 1, f"one array returned for a model with outputs {names}"
    return {names[0]: result}


def assert_matches(got: np.ndarray, expected: np.ndarray, label: str = "") -> None:
    got = np.asarray(got)
    assert got.shape == expected.shape, f"{label}: shape {got.shape}, onnxruntime {expected.shape}"
    assert got.dtype == expected.dtype, f"{label}: dtype {got.dtype}, onnxruntime {expected.dtype}"
    tol = REL_TOL * max(1.0, float(np.max(np.abs(expected))))
    diff = np.abs(got.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert np.all(np.isfinite(got)), f"{label}: non-finite values at {np.argwhere(~np.isfinite(got))[:5].tolist()}"
    assert diff[worst] <= tol, (
        f"{label}: max |lowbit - ort| = {diff[worst]:.3g} > {tol:.3g} at {worst} "
        f"(lowbit {got[worst]!r}, ort {expected[worst]!r})")
    assert_same_argmax(got, expected, tol, label)


def assert_same_argmax(got: np.ndarray, expected: np.ndarray, tol: float, label: str = "") -> None:
    flat_got = got.reshape(len(got), -1)
    flat_exp = expected.reshape(len(expected), -1)
    if flat_exp.shape[1] < 2:
        return
    top2 = np.sort(flat_exp, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2 * tol
    a, b = flat_got.argmax(axis=1), flat_exp.argmax(axis=1)
    wrong = np.flatnonzero(decided & (a != b))
    assert wrong.size == 0, (
        f"{label}: argmax differs on {wrong.size} of {len(a)} samples, e.g. sample {wrong[0]}: "
        f"lowbit {a[wrong[0]]}, ort {b[wrong[0]]}")


def check_against_ort(model, source, x, **run_options) -> None:
    expected = ort_outputs(source, x)
    got = as_dict(model.run(x, **run_options), list(expected))
    assert sorted(got) == sorted(expected), f"outputs {sorted(got)}, onnxruntime {sorted(expected)}"
    for name, value in expected.items():
        assert_matches(got[name], value, f"output {name!r}, batch {len(x)}")


@functools.lru_cache(maxsize=None)
def lowbit_model(source):
    return lowbit.load(source)


def mnist_test_images(n: int):
    for path in MNIST_CANDIDATES:
        if path.exists():
            with np.load(path) as data:
                return (data["x_test"][:n].astype(np.float32) / 255.0)[:, None, :, :]
    return None


# --- generated graphs ---------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 6])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_generated_graph_matches_onnxruntime(name, batch):
    source = graph_bytes(name)
    x = images(input_shape(source, batch), seed=batch)
    check_against_ort(lowbit_model(source), source, x)


# --- model files --------------------------------------------------------------------------

@pytest.mark.parametrize("path", TRAINED_MODELS + TORCH_EXPORTS, ids=lambda p: p.name)
def test_model_file_matches_onnxruntime(path):
    model = lowbit_model(str(path))
    for batch in (1, 5):
        x = images(input_shape(str(path), batch), seed=batch)
        check_against_ort(model, str(path), x)


@pytest.mark.parametrize("path", TRAINED_MODELS, ids=lambda p: p.name)
def test_trained_model_same_predictions_on_mnist(path):
    x = mnist_test_images(N_MNIST)
    if x is None:
        pytest.fail(f"MNIST not found at any of {[str(p) for p in MNIST_CANDIDATES]}")
    x = x.reshape(input_shape(str(path), len(x)))
    expected = ort_outputs(str(path), x)
    got = as_dict(lowbit_model(str(path)).run(x), list(expected))
    name = next(iter(expected))      # the first output is the class scores
    tol = REL_TOL * max(1.0, float(np.max(np.abs(expected[name]))))
    assert_same_argmax(np.asarray(got[name]), expected[name], tol, f"{path.name} on {len(x)} MNIST test images")


# --- batch splitting and threads -------------------------------------------------------

@pytest.mark.parametrize("options", [dict(batch_size=2), dict(batch_size=4, threads=1), dict(threads=1),
                                     dict(threads=2)], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("name", ["resnet", "pytorch_logsoftmax"])
def test_batch_splitting_and_threads_match_onnxruntime(name, options):
    # batch 7 is not a multiple of either batch size, so the last chunk is a short one
    source = graph_bytes(name)
    x = images(input_shape(source, 7), seed=11)
    check_against_ort(lowbit_model(source), source, x, **options)


# --- load errors ------------------------------------------------------------------------

def _unsupported_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 4, 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu_ok"),
        helper.make_node("Sin", ["a"], ["b"], name="sin_first"),
        helper.make_node("Cos", ["b"], ["c"], name="cos_only"),
        helper.make_node("Sin", ["c"], ["d"], name="sin_second"),
        helper.make_node("Relu", ["d"], ["y"], name="relu_last"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "unsupported", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def test_unsupported_ops_are_all_listed_at_load_time():
    with pytest.raises(UnsupportedOpError) as info:
        lowbit.load(_unsupported_model().SerializeToString())
    message = str(info.value)
    for expected in ("Sin", "sin_first", "sin_second", "Cos", "cos_only"):
        assert expected in message, f"{expected!r} missing from: {message}"
    assert "relu_ok" not in message and "relu_last" not in message, message


def test_unsupported_op_error_is_a_model_load_error():
    assert issubclass(UnsupportedOpError, ModelLoadError)


def test_missing_file_raises_model_load_error(tmp_path):
    missing = tmp_path / "no_such_model.onnx"
    with pytest.raises(ModelLoadError) as info:
        lowbit.load(str(missing))
    assert "no_such_model.onnx" in str(info.value)


def test_non_onnx_bytes_raise_model_load_error():
    with pytest.raises(ModelLoadError):
        lowbit.load(b"\x89PNG\r\n\x1a\n this is not a protobuf \xff\xfe\x00\x01")


def test_non_onnx_file_raises_model_load_error(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are notes, not a model\n" * 20)
    with pytest.raises(ModelLoadError):
        lowbit.load(str(path))


def test_empty_file_raises_model_load_error(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError):
        lowbit.load(str(path))


# --- input errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    np.zeros((2, 3, 15, 16), np.float32),     # wrong H
    np.zeros((2, 16, 16, 3), np.float32),     # NHWC instead of NCHW
    np.zeros((3, 16, 16), np.float32),        # no batch axis
    np.zeros((1, 1, 3, 16, 16), np.float32),  # one axis too many
], ids=["wrong-H", "NHWC", "rank-3", "rank-5"])
def test_wrong_input_shape_raises_input_error(bad):
    model = lowbit_model(graph_bytes("resnet"))
    with pytest.raises(InputError) as info:
        model.run(bad)
    message = str(info.value)
    assert "3" in message and "16" in message, message
    assert any(s in message for s in ("3, 16, 16", "3x16x16", "3 x 16 x 16", "3×16×16")), \
        f"expected shape (N, 3, 16, 16) not stated in: {message}"


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.bool_, np.complex64])
def test_wrong_input_dtype_raises_input_error(dtype):
    model = lowbit_model(graph_bytes("resnet"))
    with pytest.raises(InputError) as info:
        model.run(np.zeros((2, 3, 16, 16), dtype))
    message = str(info.value)
    assert "float32" in message, message
    assert any(s in message for s in ("3, 16, 16", "3x16x16", "3 x 16 x 16", "3×16×16")), \
        f"expected shape (N, 3, 16, 16) not stated in: {message}"


# --- summary ----------------------------------------------------------------------------

def _summary_model() -> onnx.ModelProto:
    """Conv 3->8 3x3 pad 1 on 10x10, ReLU, MaxPool 2, Flatten, Gemm 200->10 (transB), Softmax."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
        numpy_helper.from_array(rng.standard_normal((10, 200)).astype(np.float32), "fw"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fb"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(nodes, "summary", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_summary_reports_params_and_macs():
    source = _summary_model().SerializeToString()
    model = lowbit.load(source)
    rows = model.summary()
    conv_params, conv_macs = 8 * 3 * 9 + 8, 8 * 10 * 10 * (3 * 3 * 3)      # 224, 21,600
    fc_params, fc_macs = 10 * 200 + 10, 10 * 200                           # 2,010, 2,000
    by_op = {}
    for row in rows:
        by_op.setdefault(row.op, []).append(row)
    conv_rows = [r for op, rs in by_op.items() if op.startswith("Conv") for r in rs]
    fc_rows = [r for op, rs in by_op.items() if op.startswith(("Gemm", "MatMul")) for r in rs]
    assert len(conv_rows) == 1 and len(fc_rows) == 1, [(r.name, r.op) for r in rows]
    assert (conv_rows[0].params, conv_rows[0].macs) == (conv_params, conv_macs), conv_rows[0]
    assert (fc_rows[0].params, fc_rows[0].macs) == (fc_params, fc_macs), fc_rows[0]
    assert sum(r.params for r in rows) == conv_params + fc_params
    assert sum(r.macs for r in rows) == conv_macs + fc_macs
    text = str(rows)
    for number in (conv_params, conv_macs, fc_params, fc_macs, conv_params + fc_params, conv_macs + fc_macs):
        assert f"{number:,}" in text or str(number) in text, f"{number} missing from the summary table:\n{text}"
    # and the summarised model still computes the right thing
    x = images((3, 3, 10, 10), seed=4)
    check_against_ort(model, source, x)
