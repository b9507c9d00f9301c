"""LSTM against onnxruntime single-node models: directions, layouts, sequence lengths, states, peepholes, clip."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import lowbit
from lowbit.kernels.float.lstm import lstm


def _lstm_model(inputs, opset, **attrs):
    names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    used = [n if v is not None else "" for n, v in zip(names, inputs)]
    while used and not used[-1]:
        used.pop()
    node = helper.make_node("LSTM", used, ["Y", "Y_h", "Y_c"], **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "sequence_lens" else TensorProto.FLOAT,
                                                  v.shape) for n, v in zip(names, inputs) if v is not None and n in used]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("Y", "Y_h", "Y_c")]
    model = helper.make_model(helper.make_graph([node], "lstm", graph_inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)])
    return model, {n: v for n, v in zip(names, inputs) if v is not None and n in used}


def _ort_lstm(inputs, opset, **attrs):
    """onnxruntime's outputs; its CPU LSTM has no batch-major layout, so layout=1 runs as the transposed layout 0
    (which is what the spec defines it to be)."""
    if attrs.get("layout"):
        x, w, r, b, lens, h0, c0, p = inputs
        t = lambda a: None if a is None else a.transpose(1, 0, 2).copy()
        y, y_h, y_c = _ort_lstm([t(x), w, r, b, lens, t(h0), t(c0), p], opset, **{**attrs, "layout": 0})
        return [y.transpose(2, 0, 1, 3), t(y_h), t(y_c)]
    model, feeds = _lstm_model(inputs, opset, **attrs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("extras", ["none", "lens", "states", "peepholes", "clip"])
def test_lstm_matches_onnxruntime(direction, layout, extras):
    rng = np.random.default_rng(hash((direction, layout, extras)) % 2**32)
    seq, batch, isize, hidden = 5, 3, 4, 6
    dirs = 2 if direction == "bidirectional" else 1
    x = rng.standard_normal((seq, batch, isize)).astype(np.float32)
    if layout:
        x = x.transpose(1, 0, 2).copy()
    w = (rng.standard_normal((dirs, 4 * hidden, isize)) * 0.5).astype(np.float32)
    r = (rng.standard_normal((dirs, 4 * hidden, hidden)) * 0.5).astype(np.float32)
    b = (rng.standard_normal((dirs, 8 * hidden)) * 0.2).astype(np.float32)
    lens = np.array([5, 2, 4], np.int32) if extras == "lens" else None
    state_shape = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    h0 = rng.standard_normal(state_shape).astype(np.float32) if extras == "states" else None
    c0 = rng.standard_normal(state_shape).astype(np.float32) if extras == "states" else None
    p = rng.standard_normal((dirs, 3 * hidden)).astype(np.float32) if extras == "peepholes" else None
    attrs = dict(hidden_size=hidden, direction=direction, layout=layout)
    if extras == "clip":
        attrs["clip"] = 0.7
    inputs = [x, w, r, b, lens, h0, c0, p]
    expected = _ort_lstm(inputs, 14, **attrs)
    got = lstm(*inputs, **attrs)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    # and through the importer and executor
    model, feeds = _lstm_model(inputs, 14, **attrs)
    loaded = lowbit.load(model.SerializeToString()).run(feeds)
    for name, e in zip(("Y", "Y_h", "Y_c"), expected):
        np.testing.assert_allclose(loaded[name], e, rtol=1e-5, atol=1e-5)


def test_lstm_rejects_bad_shapes_and_activations():
    x = np.zeros((2, 1, 3), np.float32)
    w, r = np.zeros((1, 16, 3), np.float32), np.zeros((1, 16, 4), np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        lstm(x, w[:, :12], r, hidden_size=4)
    with pytest.raises(ValueError, match="sequence_lens"):
        lstm(x, w, r, sequence_lens=np.array([3]), hidden_size=4)
    with pytest.raises(ValueError, match="activation 'Gelu'"):
        lstm(x, w, r, hidden_size=4, activations=["Sigmoid", "Gelu", "Tanh"])
