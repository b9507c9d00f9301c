"""The ONNX backend node test cases, for every op lowbit's float32 path supports.

The cases ship with the ``onnx`` package (``onnx.backend.test.case.node``):
each is a one-node model (or a small expanded function body) with inputs and
the outputs the ONNX reference implementation computed.  A case is selected
when every node op type in *its model* is in ``SUPPORTED`` (read from the
model, not guessed from the test name).  Cases lowbit leaves out by design
are listed in ``EXCLUDED`` with the reason; everything else must pass.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import lowbit

#: The ops of lowbit's float32 path (its kernel table plus Constant, folded on import).
SUPPORTED = frozenset({
    "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Relu", "LeakyRelu", "Clip", "Sigmoid",
    "Tanh", "HardSigmoid", "HardSwish", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "LRN", "Flatten", "Reshape", "Transpose", "Concat", "Split", "Softmax",
    "LogSoftmax", "Dropout", "Identity", "Constant", "ConstantOfShape", "Pad", "Squeeze", "Unsqueeze",
    "Shape", "Gather", "Cast", "Slice",
})

#: lowbit reads opsets up to 21.  The later versions of these ops only widened the lists of
#: tensor types (bfloat16, float8, int4, float4, ...), with the same attributes and semantics,
#: so a case stamped with a newer opset is re-stamped to 21 and still tests the op itself.
LOWBIT_MAX_OPSET = 21
TYPE_ONLY_CHANGES_AFTER_21 = frozenset({
    "Conv", "HardSigmoid", "HardSwish", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Flatten", "Reshape", "Transpose", "Dropout", "Identity", "Constant", "ConstantOfShape", "Pad",
    "Squeeze", "Unsqueeze", "Shape", "Cast",   # Cast-24+ adds round_mode: cases using it are excluded below
})

_FLOAT8 = "float8 types are storage formats inside lowbit's precisions, not tensor dtypes of a model"
_INT4 = "int4/uint4/int2/uint2/float4 tensors are not model dtypes lowbit accepts (packed formats are internal)"
_FP16 = "float16/bfloat16 model tensors: lowbit's float path computes and exchanges float32"
_SMALL_INT = "integer arithmetic on int8/int16/uint* tensors: lowbit's arithmetic kernels are float32"

EXCLUDED = {
    # --- 1-D and 3-D windows: lowbit's pools are 2-D (NCHW) only
    "test_averagepool_1d_default": "1-D pooling not supported (NCHW 2-D only)",
    "test_averagepool_3d_default": "3-D pooling not supported (NCHW 2-D only)",
    "test_averagepool_3d_dilations_small": "3-D pooling not supported (NCHW 2-D only)",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True": "3-D pooling not supported",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False": "3-D pooling not supported",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True": "3-D pooling not supported",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False": "3-D pooling not supported",
    "test_maxpool_1d_default": "1-D pooling not supported (NCHW 2-D only)",
    "test_maxpool_3d_default": "3-D pooling not supported (NCHW 2-D only)",
    "test_maxpool_3d_dilations": "3-D pooling not supported (NCHW 2-D only)",
    "test_maxpool_3d_dilations_use_ref_impl": "3-D pooling not supported (NCHW 2-D only)",
    "test_maxpool_3d_dilations_use_ref_impl_large": "3-D pooling not supported (NCHW 2-D only)",
    # --- outputs lowbit does not produce
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output is not produced (inference only)",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output is not produced (inference only)",
    "test_maxpool_2d_uint8": "uint8 pooling: lowbit's pools are float32",
    # --- training mode
    "test_batchnorm_example_training_mode": "training-mode BatchNormalization (batch statistics) is not inference",
    "test_batchnorm_epsilon_training_mode": "training-mode BatchNormalization (batch statistics) is not inference",
    "test_training_dropout_default": "training-mode Dropout (random mask) is not inference",
    "test_training_dropout_default_mask": "training-mode Dropout (random mask) is not inference",
    "test_training_dropout": "training-mode Dropout (random mask) is not inference",
    "test_training_dropout_mask": "training-mode Dropout (random mask) is not inference",
    "test_training_dropout_zero_ratio": "training-mode Dropout (training_mode input) is not inference",
    "test_training_dropout_zero_ratio_mask": "training-mode Dropout (training_mode input) is not inference",
    # --- Pad modes other than constant
    "test_edge_pad": "Pad mode 'edge': only constant padding is supported (what CNN exporters emit)",
    "test_reflect_pad": "Pad mode 'reflect': only constant padding is supported",
    "test_wrap_pad": "Pad mode 'wrap': only constant padding is supported",
    # --- sequences / optionals
    "test_identity_sequence": "sequence-typed tensors are not supported",
    "test_identity_opt": "optional-typed tensors are not supported",
    # --- integer arithmetic
    "test_add_int8": _SMALL_INT, "test_add_int16": _SMALL_INT, "test_add_uint8": _SMALL_INT,
    "test_add_uint16": _SMALL_INT, "test_add_uint32": _SMALL_INT, "test_add_uint64": _SMALL_INT,
    "test_sub_int8": _SMALL_INT, "test_sub_int16": _SMALL_INT, "test_sub_uint8": _SMALL_INT,
    "test_sub_uint16": _SMALL_INT, "test_sub_uint32": _SMALL_INT, "test_sub_uint64": _SMALL_INT,
    "test_mul_int8": _SMALL_INT, "test_mul_int16": _SMALL_INT, "test_mul_uint8": _SMALL_INT,
    "test_mul_uint16": _SMALL_INT, "test_mul_uint32": _SMALL_INT, "test_mul_uint64": _SMALL_INT,
    "test_div_int8": _SMALL_INT, "test_div_int16": _SMALL_INT, "test_div_int32_trunc": _SMALL_INT,
    "test_div_uint8": _SMALL_INT, "test_div_uint16": _SMALL_INT, "test_div_uint32": _SMALL_INT,
    "test_div_uint64": _SMALL_INT,
    "test_clip_default_int8_min": _SMALL_INT, "test_clip_default_int8_max": _SMALL_INT,
    "test_clip_default_int8_inbounds": _SMALL_INT,
}

# --- Cast to/from the exotic dtypes (plain and CastLike-expanded forms)
for _case_name in [
    *(f"test_cast_{a}_to_{b}" for a, b in [
        ("FLOAT", "FLOAT16"), ("FLOAT16", "FLOAT"), ("FLOAT16", "DOUBLE"), ("DOUBLE", "FLOAT16"),
        ("FLOAT", "BFLOAT16"), ("BFLOAT16", "FLOAT")]),
]:
    EXCLUDED[_case_name] = _FP16
    EXCLUDED[_case_name.replace("test_cast_", "test_castlike_") + "_expanded"] = _FP16
for _src, _dst in [("FLOAT", "FLOAT8E4M3FN"), ("FLOAT16", "FLOAT8E4M3FN"), ("FLOAT", "FLOAT8E4M3FNUZ"),
                   ("FLOAT16", "FLOAT8E4M3FNUZ"), ("FLOAT8E4M3FN", "FLOAT"), ("FLOAT8E4M3FN", "FLOAT16"),
                   ("FLOAT8E4M3FNUZ", "FLOAT"), ("FLOAT8E4M3FNUZ", "FLOAT16"), ("FLOAT", "FLOAT8E5M2"),
                   ("FLOAT16", "FLOAT8E5M2"), ("FLOAT", "FLOAT8E5M2FNUZ"), ("FLOAT16", "FLOAT8E5M2FNUZ"),
                   ("FLOAT8E5M2", "FLOAT"), ("FLOAT8E5M2", "FLOAT16"), ("FLOAT8E5M2FNUZ", "FLOAT"),
                   ("FLOAT8E5M2FNUZ", "FLOAT16")]:
    EXCLUDED[f"test_cast_{_src}_to_{_dst}"] = _FLOAT8
    EXCLUDED[f"test_castlike_{_src}_to_{_dst}_expanded"] = _FLOAT8
    if _src in ("FLOAT", "FLOAT16") and "FLOAT8" in _dst:
        EXCLUDED[f"test_cast_no_saturate_{_src}_to_{_dst}"] = _FLOAT8
        EXCLUDED[f"test_castlike_no_saturate_{_src}_to_{_dst}_expanded"] = _FLOAT8
for _src, _dst in [("FLOAT", "FLOAT8E8M0"), ("FLOAT16", "FLOAT8E8M0"), ("FLOAT8E8M0", "FLOAT"),
                   ("FLOAT8E8M0", "FLOAT16")]:
    EXCLUDED[f"test_cast_e8m0_{_src}_to_{_dst}"] = _FLOAT8
for _src, _dst in [("FLOAT", "UINT4"), ("FLOAT16", "UINT4"), ("FLOAT", "INT4"), ("FLOAT16", "INT4"),
                   ("UINT4", "FLOAT"), ("UINT4", "FLOAT16"), ("UINT4", "UINT8"), ("INT4", "FLOAT"),
                   ("INT4", "FLOAT16"), ("INT4", "INT8"), ("FLOAT4E2M1", "FLOAT"), ("FLOAT4E2M1", "FLOAT16"),
                   ("FLOAT", "FLOAT4E2M1"), ("FLOAT16", "FLOAT4E2M1"), ("FLOAT", "UINT2"), ("FLOAT16", "UINT2"),
                   ("FLOAT", "INT2"), ("FLOAT16", "INT2"), ("UINT2", "FLOAT"), ("UINT2", "FLOAT16"),
                   ("UINT2", "UINT8"), ("INT2", "FLOAT"), ("INT2", "FLOAT16"), ("INT2", "INT8")]:
    EXCLUDED[f"test_cast_{_src}_to_{_dst}"] = _INT4
    EXCLUDED[f"test_castlike_{_src}_to_{_dst}_expanded"] = _INT4


def _selected_cases() -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the case generators overflow float8 casts on purpose
        cases = collect_testcases()
    return [
        case for case in cases
        if case.model.graph.node
        and all(n.op_type in SUPPORTED and n.domain in ("", "ai.onnx") for n in case.model.graph.node)
    ]


CASES = _selected_cases()


def _restamped(model: onnx.ModelProto) -> onnx.ModelProto:
    """The case's model with its default opset lowered to 21 when only type lists changed since."""
    ops = {n.op_type for n in model.graph.node}
    if "Cast" in ops and any(a.name == "round_mode" for n in model.graph.node for a in n.attribute):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for entry in out.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > LOWBIT_MAX_OPSET and ops <= TYPE_ONLY_CHANGES_AFTER_21:
            entry.version = LOWBIT_MAX_OPSET
    return out


def _array(value):
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


def test_every_exclusion_names_a_selected_case():
    names = {case.name for case in CASES}
    unknown = sorted(set(EXCLUDED) - names)
    assert not unknown, f"EXCLUDED names cases that are not selected: {unknown}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_backend_node_case(case):
    if case.name in EXCLUDED:
        pytest.skip(EXCLUDED[case.name])
    model = _restamped(case.model)
    lowbit_model = lowbit.load(model.SerializeToString())
    input_names = [vi.name for vi in model.graph.input]
    output_names = [vi.name for vi in model.graph.output]
    rtol, atol = max(case.rtol, 1e-3), max(case.atol, 1e-5)
    for inputs, expected_outputs in case.data_sets:
        feeds = {name: _array(value) for name, value in zip(input_names, inputs)}
        result = lowbit_model.run(feeds)
        if not isinstance(result, dict):
            assert len(output_names) == 1, f"one array returned for outputs {output_names}"
            result = {output_names[0]: result}
        for name, expected in zip(output_names, expected_outputs):
            expected = _array(expected)
            got = np.asarray(result[name])
            assert got.shape == expected.shape, f"{name}: shape {got.shape}, expected {expected.shape}"
            assert got.dtype == expected.dtype, f"{name}: dtype {got.dtype}, expected {expected.dtype}"
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=f"output {name!r}")
