"""Input shapes and batches: dynamic dims in every exporter spelling, fixed batches, several inputs.

Models are built with onnx.helper; fp32 outputs are compared with
onnxruntime.  A fixed-batch model must run, calibrate, quantize and summarise
on any number of samples (in chunks of its batch, the last one padded), and
its int8 results must equal those of its dynamic-batch twin (same weights,
batch dim left free), which runs unsplit.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.errors import InputError
from lowbit.evaluate.sweep import sweep
from lowbit.quant.calibrate import METHODS, calibrate
from lowbit.evaluate.mixed import search
from lowbit.quant.quantize import calibration_batches
from lowbit.evaluate.sensitivity import sensitivity

FLOAT = TensorProto.FLOAT
C_IN, C_MID, H, W, CLASSES = 3, 6, 8, 8, 5


def _weights(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(0, 0.4, (C_MID, C_IN, 3, 3)).astype(np.float32),
            "bias": rng.normal(0, 0.1, C_MID).astype(np.float32),
            "fc_w": rng.normal(0, 0.5, (CLASSES, C_MID)).astype(np.float32),
            "fc_b": rng.normal(0, 0.1, CLASSES).astype(np.float32)}


def classifier(input_shape, reshape_to=(-1, C_MID), opset: int = 13) -> onnx.ModelProto:
    """Conv-Relu-GlobalAveragePool-Reshape(constant)-Gemm, like the model zoo's ResNet head.

    ``input_shape`` is passed to ``make_tensor_value_info`` as is (None: no shape at all).
    """
    inits = [numpy_helper.from_array(v, k) for k, v in _weights().items()]
    inits.append(numpy_helper.from_array(np.array(reshape_to, np.int64), "target"))
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Reshape", ["p", "target"], ["f"]),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "classifier", [helper.make_tensor_value_info("x", FLOAT, input_shape)],
                              [helper.make_tensor_value_info("y", FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _with_raw_dims(model: onnx.ModelProto, dims) -> onnx.ModelProto:
    """Rewrite input 0's dims: an int sets dim_value (even -1 or 0), a str dim_param, None leaves it unset."""
    shape = model.graph.input[0].type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        entry = shape.dim.add()
        if isinstance(d, str):
            entry.dim_param = d
        elif d is not None:
            entry.dim_value = d
    return model


def images(n: int, seed: int = 1, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, C_IN, h, w)).astype(np.float32)


def ort_run(model: onnx.ModelProto, feeds: dict) -> list:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def ort_run_fixed(model: onnx.ModelProto, x: np.ndarray, batch: int) -> np.ndarray:
    """onnxruntime on exactly ``batch`` samples at a time, the last chunk zero-padded (not as lowbit pads)."""
    parts = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        real = len(chunk)
        padded = np.concatenate([chunk, np.zeros((batch - real,) + chunk.shape[1:], chunk.dtype)])
        parts.append(ort_run(model, {"x": padded})[0][:real])
    return np.concatenate(parts)


def load(model: onnx.ModelProto):
    return lowbit.load(model.SerializeToString())


# --- dynamic dims in every spelling ------------------------------------------------------------

DYNAMIC_BATCH = {"minus-one": -1, "zero": 0, "dim-param": "batch", "unset": None}


@pytest.mark.parametrize("spelling", sorted(DYNAMIC_BATCH))
def test_dynamic_batch_dim_in_any_spelling_runs_any_batch(spelling):
    onnx_model = _with_raw_dims(classifier([1, C_IN, H, W]), [DYNAMIC_BATCH[spelling], C_IN, H, W])
    model = load(onnx_model)
    assert model.graph.inputs[0].shape == (None, C_IN, H, W)
    assert model.fixed_batch is None
    expected = ort_run(_with_raw_dims(classifier([1, C_IN, H, W]), ["N", C_IN, H, W]), {"x": images(10)})[0]
    for options in ({}, {"batch_size": 3}):
        got = model.run(images(10), **options)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_input_without_any_shape_runs_any_batch():
    model = load(classifier(None))
    assert model.graph.inputs[0].shape is None and model.fixed_batch is None
    x = images(7)
    np.testing.assert_allclose(model.run(x, batch_size=2), ort_run(classifier(None), {"x": x})[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spelling", sorted(DYNAMIC_BATCH))
def test_dynamic_spatial_dims_accept_any_size(spelling):
    d = DYNAMIC_BATCH[spelling]
    model = load(_with_raw_dims(classifier([1, C_IN, H, W]), [d, C_IN, d, d]))
    assert model.graph.inputs[0].shape == (None, C_IN, None, None)
    reference = classifier(["N", C_IN, "h", "w"])
    for h, w in ((8, 8), (5, 11)):
        x = images(3, h=h, w=w)
        np.testing.assert_allclose(model.run(x), ort_run(reference, {"x": x})[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match=r"\(N, 3, \?, \?\)"):
        model.run(np.zeros((2, 4, 8, 8), np.float32))


def test_paddleocr_like_minus_one_batch_quantizes():
    """The users' case: an input declared [-1, 3, 48, 192] (reduced here to 8x16)."""
    model = load(_with_raw_dims(classifier([1, C_IN, 8, 16]), [-1, C_IN, 8, 16]))
    x = images(9, h=8, w=16)
    q = lowbit.quantize(model, "int8", calibration=x)
    assert q.run(x).shape == (9, CLASSES)
    assert "N, 3, 8, 16" in str(pytest.raises(InputError, model.run, images(2)).value)


# --- fixed batch 1 (model zoo style) ---------------------------------------------------------------

def fixed_and_dynamic(batch: int, reshape_to):
    fixed = classifier([batch, C_IN, H, W], reshape_to=reshape_to)
    dynamic = classifier(["N", C_IN, H, W], reshape_to=(-1, C_MID))
    return fixed, dynamic


def test_fixed_batch_1_with_constant_reshape_runs_any_batch():
    fixed, _ = fixed_and_dynamic(1, (1, C_MID))
    model = load(fixed)
    assert model.fixed_batch == 1
    x = images(10)
    expected = ort_run_fixed(fixed, x, 1)
    for options in ({}, {"batch_size": 4}, {"batch_size": 1}):
        np.testing.assert_allclose(model.run(x, **options), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch,reshape_to", [(1, (1, C_MID)), (4, (4, -1))])
def test_fixed_batch_quantize_int8_equals_dynamic_twin(batch, reshape_to):
    """Calibration in chunks of the fixed batch (last one padded) gives the ranges of one unsplit batch."""
    fixed, dynamic = fixed_and_dynamic(batch, reshape_to)
    x = images(10)
    q_fixed = lowbit.quantize(load(fixed), "int8", calibration=x)
    q_dynamic = lowbit.quantize(load(dynamic), "int8", calibration=x)
    assert q_fixed.graph.metadata["ranges"] == q_dynamic.graph.metadata["ranges"]
    got, want = q_fixed.run(x), q_dynamic.run(x)
    np.testing.assert_array_equal(got, want)
    # the int8 model stays close to onnxruntime's fp32 (same argmax on most samples)
    reference = ort_run_fixed(fixed, x, batch)
    assert np.mean(got.argmax(1) == reference.argmax(1)) >= 0.8
    # and the quantized fixed-batch model keeps chunking after a save / load round trip
    assert q_fixed.fixed_batch == batch


@pytest.mark.parametrize("method", METHODS)
def test_every_calibration_method_same_ranges_fixed_batch_4_and_unsplit(method):
    fixed, dynamic = fixed_and_dynamic(4, (4, -1))
    x = images(10)
    q_fixed = lowbit.quantize(load(fixed), "int8", calibration=x, method=method)
    q_dynamic = lowbit.quantize(load(dynamic), "int8", calibration=x, method=method)
    assert q_fixed.graph.metadata["ranges"] == q_dynamic.graph.metadata["ranges"]


@pytest.mark.parametrize("method", METHODS)
def test_observers_give_the_same_ranges_in_one_batch_or_in_chunks(method):
    """Observer level: running statistics add up over chunks exactly (histograms use pass-one ranges)."""
    rng = np.random.default_rng(3)
    tensors = {"a": rng.normal(0, 1, (10, 4, 5, 5)).astype(np.float32),
               "b": np.maximum(rng.standard_cauchy((10, 7)), 0).astype(np.float32)}

    def feeder(chunk):
        def run_batches(observe):
            for start in range(0, 10, chunk):
                for name, value in tensors.items():
                    observe(name, value[start:start + chunk])
        return run_batches

    whole = calibrate(feeder(10), tensors, method=method)
    for chunk in (1, 3, 4):
        assert calibrate(feeder(chunk), tensors, method=method) == whole


def test_fixed_batch_4_on_10_images_pads_the_last_chunk():
    fixed, _ = fixed_and_dynamic(4, (4, -1))
    model = load(fixed)
    assert model.fixed_batch == 4
    x = images(10)
    expected = ort_run_fixed(fixed, x, 4)
    for options in ({}, {"batch_size": 2}, {"batch_size": 100}):
        got = model.run(x, **options)
        assert got.shape == (10, CLASSES)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # fewer samples than the batch, and exactly one batch
    np.testing.assert_allclose(model.run(x[:3]), expected[:3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.run(x[:4]), expected[:4], rtol=1e-5, atol=1e-5)


def test_hook_sees_chunks_with_padding_cropped():
    fixed, _ = fixed_and_dynamic(4, (4, -1))
    model = load(fixed)
    seen = []
    model._executor(None, None).run(model.check_inputs(images(10)),
                                    hook=lambda node, inputs, results: seen.append((node.op_type,
                                                                                    results[0].shape,
                                                                                    [np.shape(a) for a in inputs])))
    convs = [s for s in seen if s[0] == "Conv"]
    assert [s[1][0] for s in convs] == [4, 4, 2]
    assert [s[2][0][0] for s in convs] == [4, 4, 2]  # the runtime input is cropped too
    assert all(s[2][1:] == [(C_MID, C_IN, 3, 3), (C_MID,)] for s in convs)  # weights are not
    gemms = [s for s in seen if s[0] == "Gemm"]
    assert [s[1] for s in gemms] == [(4, CLASSES), (4, CLASSES), (2, CLASSES)]


def test_dynamic_model_hook_runs_in_chunks_of_batch_size():
    _, dynamic = fixed_and_dynamic(1, (1, C_MID))
    model = load(dynamic)
    sizes = []
    out = model._executor(3, None).run(model.check_inputs(images(7)),
                                       hook=lambda node, inputs, results: sizes.append(len(results[0])))
    assert sorted(set(sizes)) == [1, 3] and out["y"].shape == (7, CLASSES)


@pytest.mark.parametrize("batch,reshape_to", [(1, (1, C_MID)), (4, (4, -1))])
def test_fixed_batch_summary_shows_one_sample(batch, reshape_to):
    fixed, dynamic = fixed_and_dynamic(batch, reshape_to)
    rows, reference = load(fixed).summary(), load(dynamic).summary()
    assert [(r.op, r.input_shape, r.output_shape, r.macs) for r in rows] == \
           [(r.op, r.input_shape, r.output_shape, r.macs) for r in reference]
    assert rows[-1].output_shape == (1, CLASSES)


def test_fixed_batch_sweep_sensitivity_and_mixed_precision_run(tmp_path):
    fixed, _ = fixed_and_dynamic(4, (4, -1))
    path = tmp_path / "fixed4.onnx"
    onnx.save(fixed, str(path))
    x = images(10)
    labels = ort_run_fixed(fixed, x, 4).argmax(1)
    result = sweep(str(path), x, labels, ["int8"], calibration=x, out_dir=tmp_path, progress=False)
    assert result.get("fp32").accuracy == 1.0
    assert 0.0 <= result.get("int8").accuracy <= 1.0 and result.n_test == 10
    rows = sensitivity(str(path), x, labels, "int8", calibration=x, progress=False)
    assert [r["op"] for r in rows] == ["Conv+Relu", "Gemm"]
    assert all(np.isfinite(r["sqnr_db"]) for r in rows)
    plan = search(str(path), x, labels, max_drop=100.0, calibration=x, progress=False)
    assert plan["within_budget"] and plan["model"].run(x).shape == (10, CLASSES)


def test_fixed_batch_empty_input_is_an_input_error():
    model = load(fixed_and_dynamic(4, (4, -1))[0])
    with pytest.raises(InputError, match="no samples"):
        model.run(np.zeros((0, C_IN, H, W), np.float32))


# --- wrong inputs for a fixed model ---------------------------------------------------------------

@pytest.mark.parametrize("bad,given", [
    (np.zeros((2, C_IN, H + 1, W), np.float32), "(2, 3, 9, 8)"),
    (np.zeros((C_IN, H, W), np.float32), "(3, 8, 8)"),
    (np.zeros((1, 1, C_IN, H, W), np.float32), "(1, 1, 3, 8, 8)"),
    (np.zeros((2, H, W, C_IN), np.float32), "(2, 8, 8, 3)"),
], ids=["wrong-H", "rank-3", "rank-5", "NHWC"])
def test_wrong_shape_for_a_fixed_model_is_one_input_error(bad, given):
    model = load(fixed_and_dynamic(1, (1, C_MID))[0])
    with pytest.raises(InputError) as info:
        model.run(bad)
    message = str(info.value)
    assert "'x'" in message and given in message and "(N, 3, 8, 8)" in message, message
    with pytest.raises(InputError):
        lowbit.quantize(model, "int8", calibration=bad)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.bool_])
def test_wrong_dtype_for_a_fixed_model_is_one_input_error(dtype):
    model = load(fixed_and_dynamic(1, (1, C_MID))[0])
    with pytest.raises(InputError) as info:
        model.run(np.zeros((2, C_IN, H, W), dtype))
    message = str(info.value)
    assert "'x'" in message and np.dtype(dtype).name in message and "float32" in message, message


# --- several inputs, several outputs ---------------------------------------------------------------

def two_in_two_out(batch) -> onnx.ModelProto:
    """y_logits = Gemm(GAP(Relu(Conv(a + b)))), y_map = the Relu map; inputs a, b of one shape."""
    weights = _weights(5)
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array((-1 if batch == "N" else batch, C_MID), np.int64), "target"))
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("Conv", ["s", "w", "bias"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y_map"]),
             helper.make_node("GlobalAveragePool", ["y_map"], ["p"]),
             helper.make_node("Reshape", ["p", "target"], ["f"]),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y_logits"], transB=1)]
    shape = [batch, C_IN, H, W]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("a", FLOAT, shape),
                                             helper.make_tensor_value_info("b", FLOAT, shape)],
                              [helper.make_tensor_value_info("y_logits", FLOAT, None),
                               helper.make_tensor_value_info("y_map", FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("batch", ["N", 1, 4])
def test_several_inputs_and_outputs_run_as_dicts(batch):
    onnx_model = two_in_two_out(batch)
    model = load(onnx_model)
    feeds = {"a": images(6, seed=2), "b": images(6, seed=3)}
    got = model.run(feeds, batch_size=4)
    assert isinstance(got, dict) and sorted(got) == ["y_logits", "y_map"]
    chunk = 6 if batch == "N" else batch
    for start in range(0, 6, chunk):
        part = {k: v[start:start + chunk] for k, v in feeds.items()}
        real = len(part["a"])  # onnxruntime runs exactly the fixed batch: zero-pad, then crop
        part = {k: np.concatenate([v, np.zeros((chunk - real,) + v.shape[1:], v.dtype)]) for k, v in part.items()}
        expected = dict(zip(["y_logits", "y_map"], ort_run(onnx_model, part)))
        for name, value in expected.items():
            np.testing.assert_allclose(got[name][start:start + chunk], value[:real], rtol=1e-5, atol=1e-5)


def test_several_inputs_quantize_from_a_dict_of_calibration_arrays():
    feeds = {"a": images(6, seed=2), "b": images(6, seed=3)}
    q_fixed = lowbit.quantize(load(two_in_two_out(1)), "int8", calibration=feeds, calibration_size=5)
    q_dynamic = lowbit.quantize(load(two_in_two_out("N")), "int8", calibration={k: v[:5] for k, v in feeds.items()})
    assert q_fixed.graph.metadata["ranges"] == q_dynamic.graph.metadata["ranges"]
    got, want = q_fixed.run(feeds), q_dynamic.run(feeds)
    for name in ("y_logits", "y_map"):
        np.testing.assert_array_equal(got[name], want[name])


def test_several_inputs_calibration_errors_say_what_is_expected():
    model = load(two_in_two_out("N"))
    a, b = images(6, seed=2), images(6, seed=3)
    with pytest.raises(InputError, match=r"2 inputs \['a', 'b'\].*dict"):
        lowbit.quantize(model, "int8", calibration=a)
    with pytest.raises(InputError, match=r"\['c'\].*\['a', 'b'\]"):
        lowbit.quantize(model, "int8", calibration={"a": a, "c": b})
    with pytest.raises(InputError, match="different numbers of samples"):
        lowbit.quantize(model, "int8", calibration={"a": a, "b": b[:4]})
    with pytest.raises(InputError, match="'b'.*NaN"):
        lowbit.quantize(model, "int8", calibration={"a": a, "b": np.full_like(b, np.nan)})
    with pytest.raises(InputError, match="'a'.*empty"):
        lowbit.quantize(model, "int8", calibration={"a": a[:0], "b": b[:0]})


def test_fixed_batch_inputs_with_different_sample_counts_are_an_input_error():
    model = load(two_in_two_out(1))
    with pytest.raises(InputError, match=r"'a': 3, 'b': 2"):
        model.run({"a": images(3), "b": images(2)})


def test_calibration_batches_feed_every_input():
    model = load(two_in_two_out(4))
    seen = {}
    calibration_batches(model, {"a": images(10, seed=2), "b": images(10, seed=3)}, batch_size=8)(
        lambda name, value: seen.setdefault(name, []).append(len(value)))
    assert sum(seen["a"]) == sum(seen["b"]) == 10          # inputs observed as given
    assert sum(seen["y_logits"]) == 10 and max(seen["y_logits"]) == 4  # graph tensors per chunk, padding cropped
