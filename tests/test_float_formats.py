"""fp16 / bf16 / fp8 rounding against independent references.

fp16: numpy's float16 cast (IEEE binary16, round to nearest even).
bf16: round-to-nearest-even on the upper 16 bits of the fp32 pattern, written here.
fp8: onnx.reference's Cast to FLOAT8E4M3FN (saturating) and FLOAT8E5M2 (saturate=0: inf).
"""
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from lowbit.formats.precision import get
from lowbit.formats.float_formats import decode, encode, round_to_format


@pytest.fixture(scope="module")
def values():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(20000) * np.exp(rng.uniform(-30, 14, 20000))
    special = [0.0, -0.0, 65504.0, 65519.99, 65520.0, -65520.0, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26,
               448.0, 464.0, 480.0, 57344.0, 61440.0, 1e-45, np.inf, -np.inf, np.nan]
    return np.concatenate([x, special]).astype(np.float32)


def same(a, b):
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


def test_fp16_matches_ieee_binary16(values):
    y, overflow = round_to_format(values, get("fp16"))
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float32)
    assert same(y, expected)
    assert overflow == int(np.sum(np.isinf(expected) & np.isfinite(values)))


def test_bf16_matches_bit_rounding(values):
    bits = values.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    expected = rounded.astype(np.uint32).view(np.float32).copy()
    expected[np.isnan(values)] = np.nan
    y, _ = round_to_format(values, get("bf16"))
    assert same(y, expected)


def onnx_cast(values, to, saturate):
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=to, saturate=saturate),
             helper.make_node("Cast", ["y"], ["z"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return ReferenceEvaluator(model).run(None, {"x": values})[0]


@pytest.mark.parametrize("name,to,saturate", [("fp8-e4m3", TensorProto.FLOAT8E4M3FN, 1),
                                              ("fp8-e5m2", TensorProto.FLOAT8E5M2, 0)])
def test_fp8_matches_onnx_cast(values, name, to, saturate):
    finite = values[np.isfinite(values)]
    y, overflow = round_to_format(finite, get(name))
    expected = onnx_cast(finite, to, saturate)
    assert same(y, expected)
    if name == "fp8-e5m2":
        assert overflow == int(np.sum(np.isinf(expected)))
    else:
        # E4M3 overflows above 464, the midpoint between 448 and the next (absent) step 480
        assert overflow == int(np.sum(np.abs(finite) > 464))


def test_fp8_scale_and_storage_roundtrip(values):
    finite = values[np.isfinite(values) & (np.abs(values) < 1e3)][:3000]
    for name in ("fp16", "bf16", "fp8-e4m3", "fp8-e5m2"):
        p = get(name)
        scale = 0.37 if p.scaled else 1.0
        y, _ = round_to_format(finite, p, scale)
        stored = encode(finite, p, scale)
        assert stored.dtype.itemsize * 8 == p.bits
        assert same(decode(stored, p, scale), y)
    # scaled fp8 is s * fp8(x / s), computed independently through the onnx cast
    expected = onnx_cast((finite / np.float32(0.37)).astype(np.float32), TensorProto.FLOAT8E4M3FN, 1) * np.float32(0.37)
    got, _ = round_to_format(finite, get("fp8-e4m3"), 0.37)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)


def test_e4m3_saturates_and_counts():
    y, overflow = round_to_format(np.array([500.0, -1e6, 448.0, 464.0], np.float32), get("fp8-e4m3"))
    assert y.tolist() == [448.0, -448.0, 448.0, 448.0]
    assert overflow == 2  # 464 rounds to 448 (ties to even, 448 has an even mantissa): not an overflow
