"""The LayerNorm and GELU pattern fusions (``lowbit/graph/fusions.py``), run through ``lowbit.load``:
each written-out chain must become one node where the pattern holds, stay as it was where it does not,
and give onnxruntime's result either way."""
from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.graph.fusions import fuse_patterns
from lowbit.graph.ir import Graph, Node, ValueInfo
from tests.naive import norm as naive


def _model(nodes, shape, constants, opset=17, extra_outputs=()):
    """A float32 model with input ``x`` of ``shape``, output ``y`` (same shape) and initializers ``constants``."""
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.asarray(v).dtype), k) for k, v in constants.items()]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))]
    outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in extra_outputs]
    graph = helper.make_graph(nodes, "fusion", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check(model, x, fused_op, expect_fused, tol=2e-5):
    """Load with lowbit; compare every output with onnxruntime; count ``fused_op`` nodes; return the op types."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # its own fusions: the graph as written
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(None, {"x": x})))
    m = lowbit.load(model.SerializeToString())
    got = m.run(x, outputs=names) if len(names) > 1 else {"y": m.run(x)}
    for name in names:
        np.testing.assert_allclose(got[name], expected[name], rtol=tol, atol=tol, err_msg=name)
    ops = [n.op_type for n in m.graph.nodes]
    assert ops.count(fused_op) == (1 if expect_fused else 0), ops
    return ops


# --- LayerNorm ------------------------------------------------------------------------------

def _layer_norm_nodes(opset, axes, *, square="pow", eps_first=False, gamma=True, beta=True, gamma_first=False):
    """The exporters' LayerNorm chain; with opset >= 18 the ReduceMean axes are an input."""
    def mean(src, dst):
        if opset >= 18:
            return helper.make_node("ReduceMean", [src, "axes"], [dst], keepdims=1)
        return helper.make_node("ReduceMean", [src], [dst], axes=list(axes), keepdims=1)

    nodes = [mean("x", "m"), helper.make_node("Sub", ["x", "m"], ["d"])]
    nodes.append(helper.make_node("Pow", ["d", "two"], ["p"]) if square == "pow"
                 else helper.make_node("Mul", ["d", "d"], ["p"]))
    nodes += [mean("p", "v"),
              helper.make_node("Add", ["eps", "v"] if eps_first else ["v", "eps"], ["ve"]),
              helper.make_node("Sqrt", ["ve"], ["s"]),
              helper.make_node("Div", ["d", "s"], ["n" if gamma or beta else "y"])]
    last = "n"
    if gamma:
        nodes.append(helper.make_node("Mul", ["gamma", last] if gamma_first else [last, "gamma"],
                                      ["g" if beta else "y"]))
        last = "g"
    if beta:
        nodes.append(helper.make_node("Add", [last, "beta"], ["y"]))
    return nodes


def _layer_norm_constants(rng, norm_shape, axes, eps=1e-5, two=2.0):
    return {"axes": np.array(axes, np.int64), "two": np.array(two, np.float32), "eps": np.array(eps, np.float32),
            "gamma": rng.standard_normal(norm_shape).astype(np.float32),
            "beta": rng.standard_normal(norm_shape).astype(np.float32)}


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("variant", [
    dict(),
    dict(square="mul", eps_first=True, gamma_first=True),
    dict(gamma=False, beta=False),
    dict(beta=False),
    dict(gamma=False),
])
def test_layer_norm_chain_over_last_axis_becomes_one_node(rng, opset, variant):
    shape = (2, 5, 16)
    constants = _layer_norm_constants(rng, (16,), [-1])
    model = _model(_layer_norm_nodes(opset, [-1], **variant), shape, constants, opset=opset)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    ops = _check(model, x, "LayerNormalization", True)
    assert ops == ["LayerNormalization"]
    gamma = constants["gamma"] if variant.get("gamma", True) else np.ones(16)
    beta = constants["beta"] if variant.get("beta", True) else None
    ref, _, _ = naive.layer_norm(x, gamma, beta, axis=-1, epsilon=1e-5)
    np.testing.assert_allclose(lowbit.load(model.SerializeToString()).run(x), ref, rtol=1e-5, atol=1e-5)


def test_layer_norm_chain_over_two_trailing_axes_given_as_positive_axes(rng):
    shape = (2, 3, 4, 5)
    constants = _layer_norm_constants(rng, (4, 5), [2, 3], eps=1e-3)
    constants["gamma"] = constants["gamma"].reshape(1, 4, 5)   # a leading unit axis is fine
    model = _model(_layer_norm_nodes(18, [2, 3]), shape, constants, opset=18)
    x = rng.standard_normal(shape).astype(np.float32)
    assert _check(model, x, "LayerNormalization", True) == ["LayerNormalization"]


@pytest.mark.parametrize("case", ["two_is_three", "d_is_an_output", "channel_axis_of_nchw", "axes_differ",
                                  "gamma_varies_off_axis"])
def test_layer_norm_like_chains_that_do_not_fit_stay_unfused(rng, case):
    # (onnxruntime with its optimizer on, as _check does not run it, gives no NaN for the Pow(d, 3) chain,
    # whose written-out form does produce NaN: it computes that chain as a LayerNorm.)
    shape, axes, norm_shape = (2, 3, 4, 5), [-1], (5,)
    constants = _layer_norm_constants(rng, norm_shape, axes, two=3.0 if case == "two_is_three" else 2.0)
    nodes = _layer_norm_nodes(18, axes)
    extra = ()
    if case == "d_is_an_output":
        extra = ("d",)
    elif case == "channel_axis_of_nchw":   # ConvNeXt's channels-first LayerNorm: no ONNX LayerNormalization form
        constants = _layer_norm_constants(rng, (3, 1, 1), [1])
    elif case == "axes_differ":
        nodes[3] = helper.make_node("ReduceMean", ["p", "axes2"], ["v"], keepdims=1)
        constants["axes2"] = np.array([-2, -1], np.int64)
    elif case == "gamma_varies_off_axis":
        constants["gamma"] = rng.standard_normal((4, 5)).astype(np.float32)
    model = _model(nodes, shape, constants, opset=18, extra_outputs=extra)
    x = rng.standard_normal(shape).astype(np.float32)
    if case == "gamma_varies_off_axis":   # the normalization itself still fuses; Mul(gamma) and Add(beta) stay
        assert _check(model, x, "LayerNormalization", True) == ["LayerNormalization", "Mul", "Add"]
        return
    ops = _check(model, x, "LayerNormalization", False)
    assert "Sqrt" in ops and "ReduceMean" in ops


# --- GELU -----------------------------------------------------------------------------------

def _gelu_nodes(scaling, grouping, swap, add="Add"):
    """``x * 0.5 * (1 + erf(x / sqrt 2))`` as exporters write it (ONNX's own function body uses Sum)."""
    order = (lambda a, b: [b, a]) if swap else (lambda a, b: [a, b])
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["t"]) if scaling == "div"
             else helper.make_node("Mul", order("x", "rsqrt2"), ["t"]),
             helper.make_node("Erf", ["t"], ["e"]),
             helper.make_node(add, order("e", "one"), ["a"])]
    if grouping == "x_first":        # (x * (1 + erf)) * 0.5
        nodes += [helper.make_node("Mul", order("x", "a"), ["xa"]), helper.make_node("Mul", order("xa", "half"), ["y"])]
    elif grouping == "half_first":   # (x * 0.5) * (1 + erf)
        nodes += [helper.make_node("Mul", order("x", "half"), ["xh"]), helper.make_node("Mul", order("a", "xh"), ["y"])]
    else:                            # ((1 + erf) * 0.5) * x
        nodes += [helper.make_node("Mul", order("a", "half"), ["ah"]), helper.make_node("Mul", order("ah", "x"), ["y"])]
    return nodes


def _gelu_constants(half=0.5):
    return {"sqrt2": np.array(1.4142135, np.float32), "rsqrt2": np.array(0.70710677, np.float32),
            "one": np.array(1.0, np.float32), "half": np.array(half, np.float32)}


@pytest.mark.parametrize("scaling", ["div", "mul"])
@pytest.mark.parametrize("grouping", ["x_first", "half_first", "erf_first"])
@pytest.mark.parametrize("swap", [False, True])
def test_gelu_chain_becomes_one_node(rng, scaling, grouping, swap):
    shape = (2, 7, 9)
    model = _model(_gelu_nodes(scaling, grouping, swap), shape, _gelu_constants(), opset=13)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    assert _check(model, x, "Gelu", True) == ["Gelu"]
    np.testing.assert_allclose(lowbit.load(model.SerializeToString()).run(x), naive.gelu(x), rtol=1e-5, atol=1e-6)


def test_gelu_chain_as_in_the_onnx_function_body_becomes_one_node(rng):
    # onnx's Gelu expansion: Sum(one, erf) and Mul(half, x) then Mul(., phi).
    model = _model(_gelu_nodes("div", "half_first", True, add="Sum"), (4, 6), _gelu_constants(), opset=13)
    assert _check(model, (rng.standard_normal((4, 6)) * 3).astype(np.float32), "Gelu", True) == ["Gelu"]


@pytest.mark.parametrize("case", ["half_is_0.4", "erf_is_an_output", "sqrt2_is_2"])
def test_gelu_like_chains_that_do_not_fit_stay_unfused(rng, case):
    shape = (3, 8)
    constants = _gelu_constants(half=0.4 if case == "half_is_0.4" else 0.5)
    if case == "sqrt2_is_2":
        constants["sqrt2"] = np.array(2.0, np.float32)
    model = _model(_gelu_nodes("div", "x_first", False), shape, constants, opset=13,
                   extra_outputs=("e",) if case == "erf_is_an_output" else ())
    x = rng.standard_normal(shape).astype(np.float32)
    assert "Erf" in _check(model, x, "Gelu", False)


# --- together, and on a bare Graph ----------------------------------------------------------

def test_transformer_mlp_block_fuses_both(rng):
    # LayerNorm -> MatMul -> GELU -> MatMul, the MLP half of a transformer block.
    c = 8
    constants = _layer_norm_constants(rng, (c,), [-1])
    constants.update(_gelu_constants())
    constants["w1"] = rng.standard_normal((c, 4 * c)).astype(np.float32) * 0.3
    constants["w2"] = rng.standard_normal((4 * c, c)).astype(np.float32) * 0.3
    ln = _layer_norm_nodes(18, [-1])
    ln[-1] = helper.make_node("Add", ["g", "beta"], ["ln"])
    gelu = _gelu_nodes("mul", "half_first", True)
    gelu[0] = helper.make_node("Mul", ["rsqrt2", "h"], ["t"])
    gelu = [helper.make_node(n.op_type, ["h" if i == "x" else i for i in n.input],
                             ["g2" if o == "y" else o for o in n.output]) for n in gelu]
    nodes = ln + [helper.make_node("MatMul", ["ln", "w1"], ["h"])] + gelu + [helper.make_node("MatMul", ["g2", "w2"], ["y"])]
    model = _model(nodes, (2, 6, c), constants, opset=18)
    x = rng.standard_normal((2, 6, c)).astype(np.float32)
    ops = _check(model, x, "LayerNormalization", True, tol=1e-4)
    assert ops == ["LayerNormalization", "MatMul", "Gelu", "MatMul"]


def test_positive_axes_of_unknown_rank_are_left_alone():
    # On a bare Graph with no shapes, ReduceMean axes [2] cannot be told trailing or not.
    f = np.float32
    consts = {"axes": np.array([2], np.int64), "two": np.array(2, f), "eps": np.array(1e-5, f)}
    nodes = [Node("ReduceMean", "m", ["x", "axes"], ["m"]), Node("Sub", "s", ["x", "m"], ["d"]),
             Node("Pow", "p", ["d", "two"], ["p"]), Node("ReduceMean", "v", ["p", "axes"], ["v"]),
             Node("Add", "a", ["v", "eps"], ["ve"]), Node("Sqrt", "q", ["ve"], ["s"]),
             Node("Div", "y", ["d", "s"], ["y"])]
    graph = Graph(nodes=nodes, inputs=[ValueInfo("x", None, np.dtype(f))], outputs=[ValueInfo("y", None, np.dtype(f))],
                  constants=consts)
    fuse_patterns(graph)
    assert [n.op_type for n in graph.nodes] == [n.op_type for n in nodes]
    graph.inputs = [ValueInfo("x", (None, 4, 6), np.dtype(f))]   # now the rank is known: axis 2 is the last
    fuse_patterns(graph)
    assert [(n.op_type, n.attrs["axis"]) for n in graph.nodes] == [("LayerNormalization", -1)]
    assert math.isclose(graph.nodes[0].attrs["epsilon"], 1e-5, rel_tol=1e-6)
