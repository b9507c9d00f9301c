"""Resize and Upsample: the kernels against the naive oracle in ``tests/naive/resize.py``, and whole
single-node models (through lowbit's importer) against onnxruntime at opsets 7, 9, 10, 11, 13, 18 and 19."""
from __future__ import annotations

import numba
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.kernels.float import resize as kernels
from tests.naive import resize as naive

FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_close(got, ref, tol=1e-5):
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if ref.size:
        err = np.max(np.abs(got.astype(np.float64) - ref))
        assert err <= tol * max(1.0, np.max(np.abs(ref))), f"max abs err {err}"


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- kernel against the oracle ------------------------------------------------------------------

COORDINATE_MODES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


@pytest.mark.parametrize("ctm", COORDINATE_MODES)
@pytest.mark.parametrize("nearest_mode", NEAREST_MODES)
def test_nearest_matches_oracle(ctm, nearest_mode):
    x = f32(np.random.default_rng(0), 2, 3, 5, 7)
    for scales in ([1, 1, 2, 2], [1, 1, 0.5, 1.5], [1, 1, 2.5, 0.6], [1, 2, 1, 3]):
        scales = np.array(scales, np.float32)
        attrs = dict(mode="nearest", coordinate_transformation_mode=ctm, nearest_mode=nearest_mode)
        assert_close(kernels.resize(x, None, scales, **attrs), naive.resize(x, None, scales, **attrs), 0)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("ctm", COORDINATE_MODES)
def test_interpolation_matches_oracle(mode, ctm):
    x = f32(np.random.default_rng(1), 1, 2, 6, 5)
    for scales in ([1, 1, 2, 2], [1, 1, 0.5, 0.8], [1, 1, 1.7, 3.0], [1, 1, 1, 2.4], [1, 1, 0.6, 1]):
        scales = np.array(scales, np.float32)
        attrs = dict(mode=mode, coordinate_transformation_mode=ctm)
        assert_close(kernels.resize(x, None, scales, **attrs), naive.resize(x, None, scales, **attrs))


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_antialias_and_exclude_outside_match_oracle(mode):
    x = f32(np.random.default_rng(2), 1, 2, 9, 11)
    for scales, exclude, a in (([1, 1, 0.3, 0.5], 0, -0.75), ([1, 1, 0.45, 1.6], 1, -0.5), ([1, 1, 0.8, 0.25], 1, -0.75)):
        scales = np.array(scales, np.float32)
        attrs = dict(mode=mode, antialias=1, exclude_outside=exclude if mode == "cubic" else 0, cubic_coeff_a=a)
        assert_close(kernels.resize(x, None, scales, **attrs), naive.resize(x, None, scales, **attrs))
    if mode == "cubic":
        attrs = dict(mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5)
        scales = np.array([1, 1, 1.5, 0.7], np.float32)
        assert_close(kernels.resize(x, None, scales, **attrs), naive.resize(x, None, scales, **attrs))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_tf_crop_and_resize_matches_oracle(mode):
    x = f32(np.random.default_rng(3), 1, 2, 6, 7)
    roi = np.array([0, 0, 0.2, -0.3, 1, 1, 0.9, 1.2], np.float32)
    sizes = np.array([1, 2, 5, 9], np.int64)
    for extrapolation in (0.0, 7.5):
        attrs = dict(mode=mode, coordinate_transformation_mode="tf_crop_and_resize",
                     extrapolation_value=extrapolation)
        got = kernels.resize(x, roi, None, sizes, **attrs)
        assert np.any(got == np.float32(extrapolation))          # the roi reaches outside the input
        assert_close(got, naive.resize(x, roi, None, sizes, **attrs))


def test_axes_sizes_and_aspect_policies_match_oracle():
    x = f32(np.random.default_rng(4), 2, 3, 6, 10)
    for axes in ((2, 3), (3, 2), (-1, -2), (1, 3)):
        for policy in ("stretch", "not_larger", "not_smaller"):
            sizes = np.array([4, 7], np.int64)
            attrs = dict(mode="linear", axes=axes, keep_aspect_ratio_policy=policy)
            assert_close(kernels.resize(x, None, None, sizes, **attrs), naive.resize(x, None, None, sizes, **attrs))
        scales = np.array([0.5, 1.5], np.float32)
        attrs = dict(mode="nearest", axes=axes)
        assert_close(kernels.resize(x, None, scales, **attrs), naive.resize(x, None, scales, **attrs), 0)


def test_output_shape_is_floor_of_input_times_scale():
    x = np.zeros((1, 1, 7, 5), np.float32)
    got = kernels.resize(x, None, np.array([1, 1, 0.3, 1.9], np.float32), mode="linear")
    assert got.shape == (1, 1, 2, 9)                     # floor(2.1), floor(9.5)
    got = kernels.resize(x, None, None, np.array([1, 1, 3, 2], np.int64), mode="nearest")
    assert got.shape == (1, 1, 3, 2)


def test_any_rank_and_middle_axes():
    rng = np.random.default_rng(5)
    for shape, scales in (((5,), [2.5]), ((3, 4), [2, 0.5]), ((2, 3, 4, 3, 2), [1, 2, 0.5, 1.5, 2])):
        x = f32(rng, *shape)
        scales = np.array(scales, np.float32)
        for mode in ("nearest", "linear", "cubic"):
            assert_close(kernels.resize(x, None, scales, mode=mode), naive.resize(x, None, scales, mode=mode))


@FEW
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       sh=st.sampled_from([0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 0.4]), sw=st.sampled_from([0.5, 1.0, 2.0, 2.5, 0.6, 4.0]),
       mode=st.sampled_from(["nearest", "linear", "cubic"]), ctm=st.sampled_from(COORDINATE_MODES),
       nearest_mode=st.sampled_from(NEAREST_MODES), antialias=st.sampled_from([0, 1]),
       exclude_outside=st.sampled_from([0, 1]))
def test_hypothesis_against_oracle(n, c, h, w, sh, sw, mode, ctm, nearest_mode, antialias, exclude_outside):
    assume(int(h * sh) > 0 and int(w * sw) > 0)
    x = f32(np.random.default_rng(h * 7 + w), n, c, h, w)
    scales = np.array([1, 1, sh, sw], np.float32)
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest_mode,
                 antialias=antialias if mode != "nearest" else 0,
                 exclude_outside=exclude_outside if mode == "cubic" else 0)
    assert_close(kernels.resize(x, None, scales, **attrs), naive.resize(x, None, scales, **attrs))


# --- fast paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ctm", ["half_pixel", "align_corners", "pytorch_half_pixel", "asymmetric"])
def test_bilinear_fast_path(ctm):
    # both H and W resized: the fused per-plane kernel
    x = f32(np.random.default_rng(6), 2, 4, 9, 12)
    for sizes in ([2, 4, 18, 24], [2, 4, 5, 7], [2, 4, 20, 9]):
        sizes = np.array(sizes, np.int64)
        attrs = dict(mode="linear", coordinate_transformation_mode=ctm)
        assert_close(kernels.resize(x, None, None, sizes, **attrs), naive.resize(x, None, None, sizes, **attrs))


def test_nearest_2x_fast_path_is_a_repeat():
    x = f32(np.random.default_rng(7), 2, 8, 10, 12)
    for ctm, nearest_mode in (("asymmetric", "floor"), ("half_pixel", "round_prefer_floor")):
        got = kernels.resize(x, None, np.array([1, 1, 2, 2], np.float32), mode="nearest",
                             coordinate_transformation_mode=ctm, nearest_mode=nearest_mode)
        np.testing.assert_array_equal(got, x.repeat(2, axis=2).repeat(2, axis=3))
    got = kernels.upsample(x, np.array([1, 1, 3, 2], np.float32))
    np.testing.assert_array_equal(got, x.repeat(3, axis=2).repeat(2, axis=3))


def test_results_do_not_depend_on_thread_count():
    x = f32(np.random.default_rng(8), 1, 16, 21, 23)
    cases = [dict(scales=np.array([1, 1, 2, 2], np.float32), mode="nearest"),
             dict(scales=np.array([1, 1, 1.7, 2.3], np.float32), mode="linear"),
             dict(scales=np.array([1, 1, 0.45, 0.6], np.float32), mode="cubic", antialias=1),
             dict(scales=np.array([1, 1.5, 1, 0.7], np.float32), mode="linear")]
    saved = numba.get_num_threads()
    try:
        for case in cases:
            results = []
            for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
                numba.set_num_threads(threads)
                results.append(kernels.resize(x, **case))
            np.testing.assert_array_equal(results[0], results[1])
    finally:
        numba.set_num_threads(saved)


def test_dtypes():
    rng = np.random.default_rng(9)
    q = rng.integers(0, 256, (1, 2, 3, 4)).astype(np.uint8)
    got = kernels.resize(q, None, np.array([1, 1, 2, 1.5], np.float32), mode="nearest")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, naive.resize(q, None, [1, 1, 2, 1.5]).astype(np.uint8))
    got = kernels.resize(q, None, np.array([1, 1, 2, 1.5], np.float32), mode="linear")
    assert got.dtype == np.uint8
    ref = naive.resize(q, None, [1, 1, 2, 1.5], mode="linear")
    np.testing.assert_array_equal(got, np.clip(np.rint(ref), 0, 255).astype(np.uint8))
    scales = np.array([1, 1, 1.5, 0.6], np.float32)
    for dtype, tol in ((np.float64, 1e-12), (np.float16, 2e-3)):
        x = rng.standard_normal((1, 2, 4, 5)).astype(dtype)
        got = kernels.resize(x, None, scales, mode="cubic")
        assert got.dtype == dtype
        assert_close(got, naive.resize(x, None, scales, mode="cubic"), tol)


def test_errors_name_the_problem():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="Resize: exactly one of 'scales' and 'sizes'"):
        kernels.resize(x)
    with pytest.raises(ValueError, match="Resize: exactly one of 'scales' and 'sizes'.*both"):
        kernels.resize(x, None, np.ones(4, np.float32), np.ones(4, np.int64))
    with pytest.raises(ValueError, match="'scales' has 2 entries; expected 4"):
        kernels.resize(x, None, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        kernels.resize(x, None, np.array([1, 1, 0, 2], np.float32))
    with pytest.raises(ValueError, match="mode 'bicubic'"):
        kernels.resize(x, None, np.ones(4, np.float32), mode="bicubic")
    with pytest.raises(ValueError, match="roi has 2 entries; expected 8"):
        kernels.resize(x, np.ones(2, np.float32), np.ones(4, np.float32), coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(ValueError, match="Upsample: scales .* >= 1"):
        kernels.upsample(x, np.array([1, 1, 0.5, 2], np.float32))


def test_empty_inputs_count_as_omitted():
    x = f32(np.random.default_rng(10), 1, 1, 3, 3)
    empty = np.zeros(0, np.float32)
    sizes = np.array([1, 1, 5, 4], np.int64)
    got = kernels.resize(x, empty, empty, sizes, mode="linear")
    assert_close(got, naive.resize(x, None, None, sizes, mode="linear"))


# --- single-node models: lowbit's importer and kernels against onnxruntime ---------------------

def _model(op, opset, x, constants, **attrs):
    """One ``op`` node reading graph input X and ``constants`` (name → array or None) as initializers."""
    names, inits = ["X"], []
    for name, value in constants:
        names.append(name if value is not None else "")
        if value is not None:
            inits.append(numpy_helper.from_array(value, name))
    while names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, ["Y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _both(model, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"X": x})[0]
    return lowbit.load(model.SerializeToString()).run({"X": x}), expected


def _resize_inputs(opset, roi, scales, sizes):
    if opset == 10:
        return [("scales", scales)]
    if opset < 13 and roi is None:                       # roi is required before opset 13
        roi = np.zeros(0, np.float32)
    if opset < 13 and scales is None:
        scales = np.zeros(0, np.float32)                 # and scales too (empty when sizes are given)
    return [("roi", roi), ("scales", scales), ("sizes", sizes)]


@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 3, 1.5], [1, 1, 0.5, 0.6], [1, 1, 0.5, 2]])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_10_matches_onnxruntime(scales, mode):
    x = f32(np.random.default_rng(11), 1, 3, 5, 6)
    scales = np.array(scales, np.float32)
    if mode == "nearest" and np.any(scales < 1) and np.any(scales > 1):
        pytest.skip("onnxruntime rounds Resize-10's nearest index per axis (down when enlarging, up when "
                    "shrinking); lowbit's canonical form has one nearest_mode per node")
    got, expected = _both(_model("Resize", 10, x, _resize_inputs(10, None, scales, None), mode=mode), x)
    assert_close(got, expected)


@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_matches_onnxruntime(opset, mode):
    x = f32(np.random.default_rng(12), 2, 3, 4, 5)
    for scales in ([1, 1, 2, 2], [1, 1, 1.5, 3], [1, 1, 2.5, 1]):
        if opset == 7:
            model = _model("Upsample", 7, x, [], mode=mode, scales=[float(s) for s in scales])
        else:
            model = _model("Upsample", 9, x, [("scales", np.array(scales, np.float32))], mode=mode)
        got, expected = _both(model, x)
        assert_close(got, expected)


ORT_OPSETS = [11, 13, 18, 19]


@pytest.mark.parametrize("opset", ORT_OPSETS)
@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_matches_onnxruntime(opset, ctm, mode):
    x = f32(np.random.default_rng(13), 1, 4, 7, 6)
    # exact scales (size = input * scale): onnxruntime's integer resized length then equals the target length
    for scales, sizes in (([1, 1, 2, 2], None), ([1, 1, 3, 0.5], None), (None, [1, 4, 10, 13]), (None, [1, 4, 3, 4])):
        scales = None if scales is None else np.array(scales, np.float32)
        sizes = None if sizes is None else np.array(sizes, np.int64)
        model = _model("Resize", opset, x, _resize_inputs(opset, None, scales, sizes), mode=mode,
                       coordinate_transformation_mode=ctm)
        got, expected = _both(model, x)
        assert_close(got, expected, 2e-5)


@pytest.mark.parametrize("opset", ORT_OPSETS)
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_tf_crop_and_resize_matches_onnxruntime(opset, mode):
    x = f32(np.random.default_rng(14), 1, 2, 8, 9)
    roi = np.array([0, 0, 0.1, -0.2, 1, 1, 0.8, 1.1], np.float32)
    sizes = np.array([1, 2, 6, 11], np.int64)
    model = _model("Resize", opset, x, _resize_inputs(opset, roi, None, sizes), mode=mode,
                   coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-3.0)
    got, expected = _both(model, x)
    assert_close(got, expected, 2e-5)


@pytest.mark.parametrize("opset", [18, 19])
def test_opset_18_attributes_match_onnxruntime(opset):
    x = f32(np.random.default_rng(15), 2, 3, 12, 10)
    cases = [
        (dict(mode="linear", antialias=1), [("roi", None), ("scales", np.array([1, 1, 0.4, 0.55], np.float32))]),
        (dict(mode="cubic", antialias=1), [("roi", None), ("scales", np.array([1, 1, 0.3, 0.75], np.float32))]),
        (dict(mode="cubic", antialias=1, exclude_outside=1, cubic_coeff_a=-0.5),
         [("roi", None), ("scales", np.array([1, 1, 0.5, 0.6], np.float32))]),
        (dict(mode="nearest", axes=[3, 2]), [("roi", None), ("scales", np.array([2, 0.5], np.float32))]),
        (dict(mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger"),
         [("roi", None), ("scales", None), ("sizes", np.array([7, 7], np.int64))]),
        (dict(mode="nearest", axes=[2, 3], keep_aspect_ratio_policy="not_smaller"),
         [("roi", None), ("scales", None), ("sizes", np.array([7, 7], np.int64))]),
    ]
    if opset == 19:
        cases.append((dict(mode="linear", coordinate_transformation_mode="half_pixel_symmetric"),
                      [("roi", None), ("scales", np.array([1, 1, 1.7, 0.65], np.float32))]))
    for attrs, inputs in cases:
        got, expected = _both(_model("Resize", opset, x, inputs, **attrs), x)
        assert_close(got, expected, 2e-5)


@FEW
@given(h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 12), ow=st.integers(1, 12),
       opset=st.sampled_from(ORT_OPSETS), mode=st.sampled_from(["nearest", "linear", "cubic"]),
       ctm=st.sampled_from(["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"]),
       nearest_mode=st.sampled_from(NEAREST_MODES))
def test_hypothesis_sizes_against_onnxruntime(h, w, oh, ow, opset, mode, ctm, nearest_mode):
    # pytorch_half_pixel with one output pixel: onnxruntime's cubic reads x = 0 (the spec's value) like
    # lowbit; with sizes the scale is oh / h, whose float32 (onnxruntime) and float64 (lowbit) values
    # can put a nearest coordinate on different sides of a rounding tie, so nearest uses the exact
    # ties-free sizes only (multiples and divisors).
    if mode == "nearest":
        assume(oh % h == 0 or h % oh == 0)
        assume(ow % w == 0 or w % ow == 0)
    x = f32(np.random.default_rng(h * 10 + w), 1, 2, h, w)
    sizes = np.array([1, 2, oh, ow], np.int64)
    model = _model("Resize", opset, x, _resize_inputs(opset, None, None, sizes), mode=mode,
                   coordinate_transformation_mode=ctm, nearest_mode=nearest_mode)
    got, expected = _both(model, x)
    assert_close(got, expected, 5e-5)


def test_large_activation_against_onnxruntime():
    # the FPN / YOLO-neck shapes: 2x nearest and bilinear upsampling of a 1x64x40x40 activation
    x = f32(np.random.default_rng(16), 1, 64, 40, 40)
    for attrs, scales in ((dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                           [1, 1, 2, 2]),
                          (dict(mode="linear"), [1, 1, 2, 2]),
                          (dict(mode="linear", coordinate_transformation_mode="align_corners"), [1, 1, 2, 2]),
                          (dict(mode="linear"), [1, 1, 0.5, 0.5])):
        model = _model("Resize", 13, x, [("roi", None), ("scales", np.array(scales, np.float32))], **attrs)
        got, expected = _both(model, x)
        assert_close(got, expected, 1e-5)
