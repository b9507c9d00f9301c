"""int8 quality choices of the converter: float-output layers, no rounding that no integer node reads,
and the recorded reason of every fp32 fallback (shown by ``lowbit inspect``)."""
import math

import numpy as np
import pytest

import lowbit
from lowbit.cli import main
from lowbit.kernels.int8 import conv as conv_mod
from lowbit.kernels.int8 import gemm
from tests.graphs import BUILDERS
from tests.naive import int8 as naive

U8, I8 = np.uint8, np.int8


@pytest.mark.parametrize("xs, ws, attrs", [
    ((2, 8, 9, 9), (8, 8, 3, 3), dict(pads=[1, 1, 1, 1])),                     # stride 1 (slab)
    ((2, 6, 9, 9), (8, 6, 3, 3), dict(pads=[1, 0, 1, 0], strides=[2, 2])),     # strided (panel)
    ((2, 4, 9, 9), (4, 1, 3, 3), dict(group=4, pads=[1, 1, 1, 1])),            # depthwise (direct)
    ((2, 5, 13), (6, 5, 3), dict(pads=[1, 2], strides=[2])),                   # 1-D
])
@pytest.mark.parametrize("clamp", [{}, {"y_min": 0.0}, {"y_min": -0.5, "y_max": 0.25}])
@pytest.mark.parametrize("quads", [False, True])
def test_conv_float_output_matches_naive(xs, ws, attrs, clamp, quads, monkeypatch):
    monkeypatch.setattr(conv_mod, "USE_QUADS", quads)
    rng = np.random.default_rng(sum(xs) + sum(ws))
    xdt = I8 if quads else U8
    lo, hi = (0, 255) if xdt == U8 else (-128, 127)
    x = rng.integers(lo, hi + 1, xs).astype(xdt)
    w = rng.integers(-127, 128, ws).astype(I8)
    b = rng.integers(-20000, 20000, ws[0]).astype(np.int32)
    scale = rng.uniform(1e-5, 1e-3, ws[0]).astype(np.float32)
    y = conv_mod.conv_int8(x, w, b, None, None, scale, x_zero_point=5, **clamp, **attrs)
    acc = naive.conv_acc(x, w, b, 5, **attrs)
    ref = naive.float_output(acc, scale, clamp.get("y_min", -math.inf), clamp.get("y_max", math.inf))
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.array_equal(y, ref)


def test_gemm_float_output_matches_naive():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (37, 29)).astype(U8)
    w = rng.integers(-127, 128, (11, 29)).astype(I8)
    b = rng.integers(-5000, 5000, 11).astype(np.int32)
    scale = rng.uniform(1e-4, 1e-2, 11).astype(np.float32)
    for clamp in ({}, {"y_min": 0.0, "y_max": 6.0}):
        y = gemm.gemm_int8(a, w, b, None, None, scale, a_zero_point=3, **clamp)
        ref = naive.float_output(naive.gemm_acc(a, w, b, 3), scale, clamp.get("y_min", -math.inf),
                                 clamp.get("y_max", math.inf))
        assert y.dtype == np.float32 and np.array_equal(y, ref)


@pytest.mark.parametrize("bad, match", [
    (dict(scale=np.ones(3, np.float32)), "one per output channel"),
    (dict(scale=np.array([1.0, 0.0, 1.0, 1.0], np.float32)), "positive and finite"),
    (dict(y_min=1.0, y_max=0.0), "non-empty range"),
    (dict(scale=None), "needed for an integer output"),
])
def test_float_output_rejects_bad_arguments(bad, match):
    x = np.zeros((1, 2, 4, 4), U8)
    w = np.ones((4, 2, 1, 1), I8)
    kw = {"y_min": bad.get("y_min", -np.inf), "y_max": bad.get("y_max", np.inf)}
    scale = bad.get("scale", np.ones(4, np.float32))
    with pytest.raises(ValueError, match=match):
        conv_mod.conv_int8(x, w, None, None, None, scale, x_zero_point=0, **kw)


def _model_and_data(name, n=32):
    model = lowbit.load(BUILDERS[name]())
    shape = tuple(model.graph.inputs[0].shape[1:])
    return model, np.random.default_rng(0).standard_normal((n,) + shape).astype(np.float32)


def _sqnr(ref, got):
    return 10 * math.log10(float(np.sum(ref.astype(np.float64) ** 2)) / float(np.sum((ref - got) ** 2.0)))


def test_last_layer_writes_float_and_is_not_requantized():
    model, x = _model_and_data("vgg")
    q = lowbit.quantize(model, "int8", calibration=x)
    out = q.graph.output_names()[0]
    producer = next(n for n in q.graph.nodes if out in n.outputs)
    # the graph output comes straight from the integer Gemm, not from a DequantizeLinear
    assert producer.precision == "int8" and producer.op_type in ("Gemm", "Conv")
    assert "float32" in producer.quant["output"]
    ref = model.run(x)
    y = q.run(x)
    assert y.dtype == np.float32
    # the same layer requantized to 8 bits: its output on a grid of <= 256 levels
    assert len(np.unique(y)) > 256
    assert _sqnr(ref, y) > 20


def test_mobilenet_float_boundaries_and_fallback_reasons():
    model, x = _model_and_data("mobilenet")
    q = lowbit.quantize(model, "int8", calibration=x)
    nodes = {n.name: n for n in q.graph.nodes}
    # every Conv whose output feeds HardSwish (fp32) writes float32 itself: no DequantizeLinear of it
    for node in q.graph.nodes:
        if node.op_type == "HardSwish":
            producer = next(n for n in q.graph.nodes if node.inputs[0] in n.outputs)
            assert producer.op_type == "Conv" and producer.precision == "int8", producer.name
            assert "output" in producer.quant
            assert node.quant["fallback"] == "no int8 kernel for HardSwish"
    fallbacks = [n for n in nodes.values() if n.precision == "fp32"]
    assert fallbacks and all("fallback" in n.quant for n in fallbacks)
    # no tensor rounded to 8 bits that only a DequantizeLinear reads right after an fp32 op produced it
    readers = {}
    for n in q.graph.nodes:
        for t in n.inputs:
            readers.setdefault(t, []).append(n.op_type)
    for n in q.graph.nodes:
        if n.op_type == "QuantizeLinear":
            assert any(r != "DequantizeLinear" for r in readers[n.outputs[0]]), n.name


def test_fallback_reasons_for_exclusions_and_edge_layers():
    model, x = _model_and_data("vgg")
    convs = [n.name for n in model.graph.nodes if n.op_type == "Conv"]
    q = lowbit.quantize(model, "int4", calibration=x, first_layer="fp32", nodes_to_exclude=[convs[1]])
    nodes = {n.name: n for n in q.graph.nodes}
    assert nodes[convs[0]].quant["fallback"] == "first weighted layer kept at fp32"
    assert nodes[convs[1]].quant["fallback"] == "excluded by nodes_to_exclude (--exclude)"
    text = str(q.summary())
    assert "note" in text.splitlines()[0]
    assert "fp32 fallback: first weighted layer kept at fp32" in text


def test_inspect_prints_fallbacks(tmp_path, capsys):
    model, x = _model_and_data("mobilenet")
    q = lowbit.quantize(model, "int8", calibration=x)
    path = tmp_path / "m.lowbit"
    lowbit.save(q, str(path))
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "fp32 fallbacks:" in text and "no int8 kernel for HardSwish" in text
    assert "fp32 fallback: no int8 kernel for HardSwish" in text
    assert "output: float32 from the int32 accumulator" in text


def test_float_model_summary_has_no_note_column():
    model, _ = _model_and_data("vgg")
    assert "note" not in str(model.summary()).splitlines()[0]
