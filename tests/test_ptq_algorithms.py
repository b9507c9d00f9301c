"""Post-training algorithms: cross-layer equalization, bias correction, AdaRound, and the validation split.

Expected values come from onnxruntime, from the original fp32 model, or
from plain numpy written here (floor/ceil grids, reconstruction errors),
never from the code under test.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit import cli
from lowbit.data import mnist
from lowbit.errors import InputError
from lowbit.model import Model
from lowbit.quant.equalize import equalize, find_pairs
from lowbit.quant.layer_io import dequantized_weights
from lowbit.evaluate.mixed import search, validation_split
from lowbit.zoo import MODELS_DIR

from . import graphs

RNG = np.random.default_rng(0)


def _ort(proto_or_path, x):
    payload = proto_or_path.SerializeToString() if isinstance(proto_or_path, onnx.ModelProto) else str(proto_or_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _rel(a, b):
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def _init(arrays, name, value):
    arrays.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
    return name


def chain_model(seed=0):
    """Conv+Relu → depthwise Conv → LeakyRelu → grouped 1x1 Conv → PRelu → MaxPool → Conv+Clip(0, 6) → Conv
    → Flatten → Gemm, with weights whose channel ranges differ by orders of magnitude."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def conv(x, cin, cout, k, name, group=1, pad=None):
        w = rng.normal(0, 1, (cout, cin // group, k, k)) * np.exp(rng.uniform(-2, 2, (cout, 1, 1, 1)))
        pad = k // 2 if pad is None else pad
        nodes.append(helper.make_node("Conv", [x, _init(inits, f"{name}.w", w), _init(inits, f"{name}.b",
                                                                                      rng.normal(0, 0.5, cout))],
                                      [name], name=name, kernel_shape=[k, k], pads=[pad] * 4, group=group))
        return name

    x = conv("input", 3, 8, 3, "c1")
    nodes.append(helper.make_node("Relu", [x], ["r1"], name="r1"))
    x = conv("r1", 8, 8, 3, "dw", group=8)
    nodes.append(helper.make_node("LeakyRelu", [x], ["lr"], name="lr", alpha=0.1))
    x = conv("lr", 8, 6, 1, "pw", group=2)
    nodes.append(helper.make_node("PRelu", [x, _init(inits, "slope", rng.uniform(0, 0.3, (6, 1, 1)))], ["pr"],
                                  name="pr"))
    nodes.append(helper.make_node("MaxPool", ["pr"], ["mp"], name="mp", kernel_shape=[2, 2], strides=[2, 2]))
    x = conv("mp", 6, 4, 3, "c4")
    nodes.append(helper.make_node("Clip", [x, _init(inits, "lo", 0.0), _init(inits, "hi", 6.0)], ["r6"], name="r6"))
    x = conv("r6", 4, 4, 3, "c5")
    nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flat"))
    w = rng.normal(0, 0.1, (10, 4 * 4 * 4))
    nodes.append(helper.make_node("Gemm", ["flat", _init(inits, "fc.w", w), _init(inits, "fc.b", rng.normal(0, 1, 10))],
                                  ["logits"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def gemm_model(n_in=32, n_out=8, seed=1, relu=False):
    rng = np.random.default_rng(seed)
    inits = []
    nodes = [helper.make_node("Gemm", ["input", _init(inits, "w", rng.normal(0, 0.3, (n_out, n_in))),
                                       _init(inits, "b", rng.normal(0, 0.1, n_out))], ["y" if relu else "logits"],
                              name="fc", transB=1)]
    if relu:
        nodes.append(helper.make_node("Relu", ["y"], ["logits"], name="relu"))
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_in])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_out])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


# ---- cross-layer equalization ------------------------------------------------------------------

def test_pairs_follow_the_homogeneity_rule():
    graph = lowbit.load(chain_model()).graph
    names = [tuple(p.names) for p in find_pairs(graph)]
    # Relu, LeakyRelu, PRelu + MaxPool, and Flatten between are homogeneous; Clip(0, 6) is not
    assert names == [("c1", "dw"), ("dw", "pw"), ("pw", "c4"), ("c5", "fc")]


def test_equalization_is_exact_in_fp32_and_matches_onnxruntime():
    proto = chain_model()
    model = lowbit.load(proto)
    x = RNG.normal(0, 1, (16, 3, 8, 8)).astype(np.float32)
    graph, info = equalize(model.graph, calibration=x)
    assert len(info["pairs"]) == 4
    equalized = Model(graph).run(x)
    assert _rel(equalized, model.run(x)) < 1e-5
    assert _rel(equalized, _ort(proto, x)) < 1e-5
    # the weights really changed: the channel ranges of the first layer were spread over e^±2
    assert not np.allclose(graph.constants["c1.w"], model.graph.constants["c1.w"])


def test_equalization_equalizes_the_ranges_of_a_pair():
    model = lowbit.load(gemm_then_gemm())
    graph, _ = equalize(model.graph, iterations=1)
    w1, w2 = graph.constants["w1"], graph.constants["w2"]        # (16, 8) and (4, 16), transB=1
    np.testing.assert_allclose(np.abs(w1).max(axis=1), np.abs(w2).max(axis=0), rtol=1e-5)
    before1, before2 = model.graph.constants["w1"], model.graph.constants["w2"]
    np.testing.assert_allclose(np.abs(w1).max(axis=1), np.sqrt(np.abs(before1).max(axis=1) * np.abs(before2).max(axis=0)),
                               rtol=1e-5)


def gemm_then_gemm():
    rng = np.random.default_rng(3)
    inits = []
    nodes = [helper.make_node("Gemm", ["input", _init(inits, "w1", rng.normal(0, 1, (16, 8)) * np.exp(rng.uniform(-3, 3, (16, 1)))),
                                       _init(inits, "b1", rng.normal(0, 1, 16))], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", _init(inits, "w2", rng.normal(0, 1, (4, 16))), _init(inits, "b2", np.zeros(4))],
                              ["logits"], name="fc2", transB=1)]
    graph = helper.make_graph(nodes, "g2", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("name", sorted(graphs.BUILDERS))
def test_equalization_is_exact_on_the_test_families(name):
    proto = graphs.BUILDERS[name]()
    model = lowbit.load(proto)
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = RNG.normal(0, 1, (4, *shape)).astype(np.float32)
    graph, _ = equalize(model.graph, calibration=x)
    reference = _ort(proto, x)
    out = Model(graph).run(x)
    out = out if not isinstance(out, dict) else next(iter(out.values()))
    assert _rel(out, reference) < 1e-4   # onnxruntime vs lowbit fp32 differ by float summation order
    assert _rel(out, model.run(x) if not isinstance(model.run(x), dict) else next(iter(model.run(x).values()))) < 1e-5


@pytest.mark.parametrize("name", ["deep_convnet", "resnet_small", "googlenet_small"])
def test_equalization_is_exact_on_the_zoo(name):
    path = MODELS_DIR / f"{name}.onnx"
    model = lowbit.load(path)
    x = mnist("test")[0][:64]
    graph, info = equalize(model.graph, calibration=x)
    assert info["pairs"]
    out = Model(graph).run(x)
    assert _rel(out, model.run(x)) < 1e-5
    assert _rel(out, _ort(path, x)) < 1e-5


# ---- bias correction -----------------------------------------------------------------------------

def test_bias_correction_cancels_the_mean_output_error():
    model = lowbit.load(gemm_model())
    x = RNG.uniform(0, 1, (512, 32)).astype(np.float32)   # nonzero-mean inputs: E[(W_q - W) x] != 0
    reference = model.run(x).astype(np.float64)
    options = dict(calibration=x, first_layer="quantized", last_layer="quantized", activation_bits=8)
    plain = lowbit.quantize(model, "int3", **options)
    corrected = lowbit.quantize(model, "int3", bias_correction=True, **options)
    before = np.abs((plain.run(x) - reference).mean(axis=0))
    after = np.abs((corrected.run(x) - reference).mean(axis=0))
    scale = np.abs(reference).mean()
    assert before.max() > 0.02 * scale                  # the error is there to correct
    assert after.max() < 0.2 * before.max() and after.max() < 0.01 * scale
    assert corrected.graph.metadata["post_training"]["bias_correction"]["inputs"] == "quantized upstream"


# ---- AdaRound ------------------------------------------------------------------------------------

def test_adaround_picks_floor_or_ceil_and_beats_nearest():
    model = lowbit.load(gemm_model(n_in=48, n_out=6, relu=False))
    x = RNG.normal(0, 1, (400, 48)).astype(np.float32)
    q = lowbit.quantize(model, "int3", calibration=x, first_layer="quantized", last_layer="quantized",
                        activation_bits=8, adaround={"iterations": 400})
    node = next(n for n in q.graph.nodes if n.name == "fc")
    w = model.graph.constants["w"].astype(np.float64)
    scale = np.asarray(node.quant["w_scale"], np.float64)[:, None]
    levels = np.rint(dequantized_weights(q.graph, node) / scale)
    grid = w / scale
    assert np.all((levels == np.floor(grid)) | (levels == np.ceil(grid)) | (np.abs(levels) == 3))
    assert np.abs(levels).max() <= 3
    nearest = np.clip(np.rint(grid), -3, 3)
    xd = x.astype(np.float64)
    err = lambda lv: np.sum((xd @ (lv * scale).T - xd @ w.T) ** 2)
    assert err(levels) < err(nearest)
    assert np.any(levels != nearest)
    layers = q.graph.metadata["post_training"]["adaround"]["layers"]
    assert layers["fc"]["loss_adaround"] < layers["fc"]["loss_nearest"]


# ---- metadata, inspect, CLI ----------------------------------------------------------------------

def test_flags_are_recorded_and_shown_by_inspect(tmp_path, capsys):
    onnx_path = tmp_path / "chain.onnx"
    onnx.save(chain_model(), str(onnx_path))
    cal = tmp_path / "cal.npy"
    np.save(cal, RNG.normal(0, 1, (64, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "q.lowbit"
    code = cli.main(["quantize", str(onnx_path), "--precision", "int4", "--calibration", str(cal), "--equalize",
                     "--bias-correction", "--adaround", "--adaround-iterations", "20", "--activation-bits", "8",
                     "-o", str(out)])
    assert code == 0
    post = lowbit.load(out).graph.metadata["post_training"]
    assert set(post) == {"equalize", "bias_correction", "adaround", "activation_bits"}
    assert post["activation_bits"] == 8 and post["adaround"]["iterations"] == 20
    capsys.readouterr()
    assert cli.main(["inspect", str(out)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("post-training:"))
    assert "equalize (4 layer pairs" in line and "adaround" in line and "bias correction" in line
    assert "activation bits 8" in line


@pytest.mark.parametrize("argv", [
    ["quantize", "M.onnx", "--precision", "int4", "--activation-bits", "9", "-o", "o.lowbit"],
    ["quantize", "M.onnx", "--precision", "int4", "--activation-bits", "four", "-o", "o.lowbit"],
    ["quantize", "M.onnx", "--precision", "int4", "--adaround", "--adaround-iterations", "0", "-o", "o.lowbit"],
    ["eval", "--min-agreement", "101"],
    ["eval", "--min-sqnr", "nan"],
    ["eval", "--activation-bits", "1"],
])
def test_bad_flag_values_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_flags_that_cannot_apply_exit_2(tmp_path, capsys):
    onnx_path = tmp_path / "g.onnx"
    onnx.save(gemm_model(), str(onnx_path))
    out = tmp_path / "o.lowbit"
    assert cli.main(["quantize", str(onnx_path), "--precision", "fp16", "--bias-correction", "-o", str(out)]) == 2
    assert cli.main(["quantize", str(onnx_path), "--precision", "int4", "--adaround-iterations", "5",
                     "-o", str(out)]) == 2
    assert cli.main(["quantize", str(onnx_path), "--precision", "int4", "--adaround", "-o", str(out)]) == 2  # no data
    assert cli.main(["eval", "--max-drop", "1", "--min-sqnr", "20"]) == 2
    assert not out.exists()
    assert "error" in capsys.readouterr().err


def test_options_off_keep_the_numerics():
    model = lowbit.load(MODELS_DIR / "deep_convnet.onnx")
    x = mnist("train")[0][:200]
    a = lowbit.quantize(model, "int4", calibration=x)
    b = lowbit.quantize(model, "int4", calibration=x, equalize=False, bias_correction=False, adaround=False)
    assert a.graph.constants.keys() == b.graph.constants.keys()
    for name, value in a.graph.constants.items():
        np.testing.assert_array_equal(value, b.graph.constants[name])
    assert "post_training" not in a.graph.metadata


# ---- mixed precision on a validation split -------------------------------------------------------

def test_validation_split_is_disjoint_from_calibration_and_test():
    cal, val = validation_split(60000, 1000)
    assert len(val) == 5000 and not set(cal) & set(val)
    cal, val = validation_split(1500, 1000)
    assert len(val) == 500 and not set(cal) & set(val) and val[-1] == 1499
    with pytest.raises(InputError, match="validation"):
        validation_split(1050, 1000)
    x_train, _ = mnist("train")
    x_test, _ = mnist("test")
    test_images = {row.tobytes() for row in x_test}
    cal, val = validation_split(len(x_train), 1000)
    assert not any(x_train[i].tobytes() in test_images for i in val)
    assert not any(x_train[i].tobytes() in test_images for i in cal)


def test_search_checks_the_budget_on_validation_and_reports_test():
    model = lowbit.load(MODELS_DIR / "mlp.onnx")
    x_train, y_train = mnist("train")
    x_test, y_test = mnist("test")
    cal, val = validation_split(len(x_train), 200, validation_size=500)
    found = search(model, x_train[val], None, min_agreement=95.0, x_test=x_test[:500], y_test=y_test[:500],
                   calibration=x_train[cal], progress=False)
    assert found["budget"] == {"min_agreement": 95.0}
    assert found["validation"]["samples"] == 500 and not found["validation"]["labelled"]
    assert found["within_budget"] == (found["validation"]["agreement"] >= 95.0)
    assert 0.0 <= found["test_accuracy"] <= 1.0
    with pytest.raises(InputError, match="labels"):
        search(model, x_train[val], None, max_drop=1.0, calibration=x_train[cal], progress=False)
