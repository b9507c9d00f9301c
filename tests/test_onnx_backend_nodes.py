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
from lowbit.errors import ModelLoadError
from lowbit.kernels.registry import SUPPORTED_OPS

#: The ops of lowbit's float32 path, read from its kernel table (plus Constant, folded on import):
#: every registered op's cases run, and each one left out is in ``EXCLUDED`` with its reason.
SUPPORTED = SUPPORTED_OPS

#: lowbit reads opsets up to 21.  The later versions of these ops only widened the lists of
#: tensor types (bfloat16, float8, int4, float4, ...), with the same attributes and semantics,
#: so a case stamped with a newer opset is re-stamped to 21 and still tests the op itself.
LOWBIT_MAX_OPSET = 21
TYPE_ONLY_CHANGES_AFTER_21 = frozenset({
    "Conv", "HardSigmoid", "HardSwish", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Flatten", "Reshape", "Transpose", "Dropout", "Identity", "Constant", "ConstantOfShape", "Pad",
    "Squeeze", "Unsqueeze", "Shape", "Cast",   # a later Cast adds round_mode: cases using it stay unstamped
    "InstanceNormalization",   # 22 added bfloat16
    "ConvTranspose",   # 22 added bfloat16 (same attributes and doc as 11)
    "Elu", "Selu", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Round",   # 22 added bfloat16
    "Celu",   # 28 added bfloat16, float16, double (same attribute as 12)
    "ReduceLogSum", "ReduceLogSumExp", "TopK",   # 28 / 28 / 24 dropped integer types or added bfloat16
    "DepthToSpace", "OneHot",   # 28: same attributes and inputs as 13 / 11 (OneHot added bfloat16)
    "LSTM",   # 22 added bfloat16 (same attributes and inputs as 14)
})

_POOL_3D = "3-D pooling (N, C, D, H, W): lowbit's pools are 1-D and 2-D only"
_TRAINING = "training mode: lowbit runs inference only (batch statistics / random masks are training ops)"

EXCLUDED = {
    # --- 3-D windows
    "test_averagepool_3d_default": _POOL_3D,
    "test_averagepool_3d_dilations_small": _POOL_3D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True": _POOL_3D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False": _POOL_3D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True": _POOL_3D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False": _POOL_3D,
    "test_maxpool_3d_default": _POOL_3D,
    "test_maxpool_3d_dilations": _POOL_3D,
    "test_maxpool_3d_dilations_use_ref_impl": _POOL_3D,
    "test_maxpool_3d_dilations_use_ref_impl_large": _POOL_3D,
    # --- outputs and dtypes the pools do not produce
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output (for unpooling/training) is rejected at load",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output (for unpooling/training) is rejected at load",
    "test_maxpool_2d_uint8": "uint8 MaxPool: lowbit's pool kernels take float32 (int8 pools belong to its int8 path)",
    # --- training mode
    "test_batchnorm_example_training_mode": _TRAINING,
    "test_batchnorm_epsilon_training_mode": _TRAINING,
    "test_training_dropout_default": _TRAINING,
    "test_training_dropout_default_mask": _TRAINING,
    "test_training_dropout": _TRAINING,
    "test_training_dropout_mask": _TRAINING,
    "test_training_dropout_zero_ratio": _TRAINING,
    "test_training_dropout_zero_ratio_mask": _TRAINING,
    # --- non-tensor types
    "test_identity_sequence": "sequence type: lowbit graphs carry tensors only (this harness would stack the "
                              "sequence into one array, so a pass would mean nothing)",
    "test_identity_opt": "optional type: lowbit graphs carry tensors only (same harness caveat)",
    # --- Cast features beyond lowbit's opset range (7..21)
    "test_cast_e8m0_FLOAT_to_FLOAT8E8M0": "FLOAT8E8M0 and Cast's round_mode are newer than opset 21, the last lowbit reads",
    "test_cast_e8m0_FLOAT16_to_FLOAT8E8M0": "FLOAT8E8M0 and Cast's round_mode are newer than opset 21, the last lowbit reads",
    # --- resampling (Resize, Upsample)
    # --- transposed convolution
    "test_convtranspose_3d": "3-D ConvTranspose (N, C, D, H, W): lowbit's windows are 1-D and 2-D only; "
                             "the kernel rejects it with a ValueError",
    # --- elementwise math, comparisons and logic
    "test_not_2d": "model declares opset 1; lowbit reads opsets 7 to 21 and refuses it at load",
    "test_not_3d": "model declares opset 1; lowbit reads opsets 7 to 21 and refuses it at load",
    "test_not_4d": "model declares opset 1; lowbit reads opsets 7 to 21 and refuses it at load",
    # --- more activations
    # --- reductions, arg-reductions and top-k
    # --- normalisation over other axes (LayerNorm, InstanceNorm, GroupNorm)
    # --- more data movement
    # --- type plumbing (CastLike, Size)
}


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
    opset = next(e.version for e in model.opset_import if e.domain in ("", "ai.onnx"))
    if opset > LOWBIT_MAX_OPSET:
        # An op whose semantics changed after opset 21: lowbit must refuse the model, not run it as the
        # older op.  (Ops whose later versions only widened type lists are re-stamped above and run.)
        with pytest.raises(ModelLoadError, match="newer than lowbit reads"):
            lowbit.load(model.SerializeToString())
        return
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
