"""Integer kernels, bit-exact against the naive oracles in ``tests/naive/int8.py``;
QuantizeLinear/DequantizeLinear bit-exact against onnxruntime."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lowbit.kernels.int8 import conv as conv_mod
from lowbit.kernels.int8 import elementwise, gemm, pool, quantize, tile
from lowbit.formats.fixed_point import quantize_multiplier
from tests.naive import int8 as naive

U8, I8 = np.uint8, np.int8


def _activations(rng, shape, dtype, fill=None):
    lo, hi = (0, 255) if dtype == U8 else (-128, 127)
    if fill is not None:
        return np.full(shape, fill, dtype=dtype)
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def _requant_params(rng, m, lo=1e-4, hi=4e-3):
    return quantize_multiplier(rng.uniform(lo, hi, m))


def _unchanged(*arrays):
    """Copies to check later that a kernel did not write to its inputs."""
    return [a.copy() for a in arrays]


# --- Conv -------------------------------------------------------------------------------------

CONV_CASES = [
    # (x shape, w shape, attributes, extras)
    ((2, 3, 9, 8), (8, 3, 3, 3), dict(pads=[1, 1, 1, 1]), {}),
    ((2, 16, 10, 10), (16, 16, 3, 3), dict(pads=[1, 1, 1, 1]), dict(zp=0)),
    ((1, 5, 11, 9), (7, 5, 3, 2), dict(pads=[2, 0, 1, 1], strides=[2, 1]), dict(zp=255)),
    ((1, 6, 12, 13), (10, 6, 3, 3), dict(dilations=[2, 3], strides=[2, 2], pads=[0, 1, 2, 3]), {}),
    ((1, 4, 10, 11), (5, 4, 3, 3), dict(dilations=[2, 2], pads=[2, 1, 2, 3]), {}),
    ((2, 8, 9, 9), (8, 4, 3, 3), dict(group=2, pads=[1, 1, 1, 1]), {}),
    ((2, 12, 8, 7), (12, 4, 3, 3), dict(group=3, strides=[1, 2], pads=[1, 1, 1, 1]), {}),
    ((2, 4, 9, 9), (4, 1, 3, 3), dict(group=4, pads=[1, 1, 1, 1]), {}),                      # depthwise
    ((2, 6, 9, 9), (12, 1, 3, 3), dict(group=6, strides=[2, 2], pads=[1, 0, 1, 0]), {}),     # 2 per group
    ((2, 4, 9, 9), (8, 1, 3, 3), dict(group=4, auto_pad="SAME_UPPER"), {}),
    ((1, 3, 9, 9), (5, 3, 5, 5), dict(auto_pad="SAME_LOWER", strides=[2, 2]), {}),
    ((1, 3, 7, 8), (5, 3, 2, 3), dict(auto_pad="VALID"), {}),
    ((1, 3, 9, 9), (5, 3, 1, 1), {}, dict(xdt=I8, ydt=I8, zp=0)),
    ((3, 1, 28, 28), (16, 1, 3, 3), dict(pads=[1, 1, 1, 1]), {}),                            # first layer
    ((2, 33, 7, 7), (65, 33, 3, 3), dict(pads=[1, 1, 1, 1]), dict(xdt=I8, zp=-3)),            # odd channels
    ((2, 7, 14, 14), (9, 7, 3, 3), dict(pads=[2, 2, 2, 2]), dict(ydt=I8, bias=False)),
    ((2, 5, 13), (6, 5, 3), dict(pads=[1, 2], strides=[2]), {}),                             # 1-D
    ((1, 2, 6, 40), (4, 2, 3, 3), dict(pads=[1, 1, 1, 1]), dict(qmin=120, qmax=200)),        # fused clamp
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(pads=[1, 1, 1, 1], strides=[1, 1]), dict(xdt=I8, zp=127, ydt=I8, qmin=-5)),
]


@pytest.fixture(params=[False, True], ids=["pairs", "quads"])
def word_format(request, monkeypatch):
    """Run a test with the stride-1 Conv on int16 pairs (vpmaddwd) and on uint8 quads (vpdpbusd,
    or its generic-IR form where the CPU lacks VNNI)."""
    monkeypatch.setattr(conv_mod, "USE_QUADS", request.param)
    return request.param


@pytest.mark.parametrize("xs, ws, attrs, extra", CONV_CASES)
def test_conv_matches_naive(xs, ws, attrs, extra, word_format):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    xdt, ydt = extra.get("xdt", U8), extra.get("ydt", U8)
    x = _activations(rng, xs, xdt)
    w = rng.integers(-127, 128, ws).astype(I8)
    b = rng.integers(-20000, 20000, ws[0]).astype(np.int32) if extra.get("bias", True) else None
    mult, shift = _requant_params(rng, ws[0])
    lo, hi = (0, 255) if ydt == U8 else (-128, 127)
    kw = dict(x_zero_point=extra.get("zp", 7), y_zero_point=(lo + hi + 1) // 2,
              qmin=extra.get("qmin", lo), qmax=extra.get("qmax", hi), y_signed=int(ydt == I8), **attrs)
    before = _unchanged(x, w, mult, shift)
    y = conv_mod.conv_int8(x, w, b, mult, shift, **kw)
    ref = naive.conv(x, w, b, mult, shift, **kw)
    assert y.dtype == ref.dtype and y.shape == ref.shape
    assert np.array_equal(y, ref)
    assert all(np.array_equal(a, c) for a, c in zip((x, w, mult, shift), before))


@pytest.mark.parametrize("xdt, x_fill, zp, w_fill", [
    (U8, 255, 0, 127), (U8, 255, 0, -127), (U8, 0, 255, 127), (U8, 0, 255, -127),
    (I8, -128, 127, 127), (I8, 127, -128, -127),
])
def test_conv_extremes_stress_int32(xdt, x_fill, zp, w_fill, word_format):
    # K = 4096 * 2 * 8 = 65536: |acc| = 255 * 127 * 65536 = 2,122,383,360 < 2^31, the int32 limit.
    rng = np.random.default_rng(5)
    x = _activations(rng, (1, 4096, 2, 9), xdt, fill=x_fill)
    w = np.full((4, 4096, 2, 8), w_fill, dtype=I8)
    mult, shift = quantize_multiplier(np.array([1e-9, 2e-8, 5e-8, 1e-7]))
    kw = dict(x_zero_point=zp, y_zero_point=128, qmin=0, qmax=255)
    y = conv_mod.conv_int8(x, w, None, mult, shift, **kw)
    acc = naive.conv_acc(x, w, None, zp)
    assert abs(int(acc[0, 0, 0, 0])) == 255 * 127 * 65536
    assert np.array_equal(y, naive.conv(x, w, None, mult, shift, **kw))


@pytest.mark.parametrize("path", ["stride1", "strided", "depthwise"])
def test_conv_extremes_small(path, word_format):
    # all-255 / all-0 inputs with +-127 weights through each kernel path, zp at both ends.
    attrs = {"stride1": dict(pads=[1, 1, 1, 1]), "strided": dict(strides=[2, 2], pads=[1, 1, 1, 1]),
             "depthwise": dict(group=8, pads=[1, 1, 1, 1])}[path]
    cg = 1 if path == "depthwise" else 8
    rng = np.random.default_rng(11)
    w = np.where(rng.random((8, cg, 3, 3)) < 0.5, -127, 127).astype(I8)
    mult, shift = _requant_params(rng, 8, 1e-5, 1e-4)
    for fill, zp in ((255, 0), (0, 255), (255, 255), (0, 0)):
        x = np.full((2, 8, 9, 9), fill, dtype=U8)
        kw = dict(x_zero_point=zp, y_zero_point=128, qmin=0, qmax=255, **attrs)
        assert np.array_equal(conv_mod.conv_int8(x, w, None, mult, shift, **kw),
                              naive.conv(x, w, None, mult, shift, **kw))


def test_conv_against_float_fake_quant():
    # conv_int8 vs the float formula round(conv(s_x (x - zp_x), s_w w) + b) / s_y) + zp_y: <= 1 LSB.
    rng = np.random.default_rng(3)
    x_real = rng.uniform(-1.0, 2.0, (2, 6, 10, 10))
    w_real = rng.normal(0, 0.3, (8, 6, 3, 3))
    b_real = rng.normal(0, 0.5, 8)
    s_x, zp_x = 3.0 / 255, 85
    x_q = np.clip(np.rint(x_real / s_x) + zp_x, 0, 255).astype(U8)
    s_w = np.abs(w_real).reshape(8, -1).max(axis=1) / 127
    w_q = np.clip(np.rint(w_real / s_w[:, None, None, None]), -127, 127).astype(I8)
    b_q = np.rint(b_real / (s_x * s_w)).astype(np.int32)
    s_y, zp_y = 0.05, 60
    mult, shift = quantize_multiplier(s_x * s_w / s_y)
    y = conv_mod.conv_int8(x_q, w_q, b_q, mult, shift, x_zero_point=zp_x, y_zero_point=zp_y, qmin=0, qmax=255,
                           pads=[1, 1, 1, 1])
    # float64 fake-quant formula, computed here from dequantized tensors with np.pad + einsum
    xd = np.pad(s_x * (x_q.astype(np.float64) - zp_x), ((0, 0), (0, 0), (1, 1), (1, 1)))
    wd = s_w[:, None, None, None] * w_q.astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(xd, (3, 3), axis=(2, 3))
    real = np.einsum("nchwij,mcij->nmhw", windows, wd) + (b_q * s_x * s_w)[None, :, None, None]
    ref = np.clip(np.rint(real / s_y) + zp_y, 0, 255)
    assert np.abs(y.astype(np.int64) - ref).max() <= 1


def test_conv_same_result_for_any_thread_count():
    rng = np.random.default_rng(8)
    x = _activations(rng, (3, 8, 12, 12), U8)
    w = rng.integers(-127, 128, (12, 8, 3, 3)).astype(I8)
    mult, shift = _requant_params(rng, 12)
    kw = dict(x_zero_point=9, y_zero_point=0, qmin=0, qmax=255, pads=[1, 1, 1, 1])
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = conv_mod.conv_int8(x, w, None, mult, shift, **kw)
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(one, conv_mod.conv_int8(x, w, None, mult, shift, **kw))


@pytest.mark.parametrize("bad, match", [
    (dict(x=np.zeros((1, 2, 4, 4), np.float32)), "uint8 or int8"),
    (dict(w=np.zeros((3, 2, 3, 3), np.int16)), "int8"),
    (dict(kw=dict(group=3)), "group"),
    (dict(kw=dict(x_zero_point=300)), "x_zero_point"),
    (dict(kw=dict(qmin=10, qmax=5)), "qmin"),
    (dict(mult=np.ones(2, np.int64)), "multiplier"),
    (dict(b=np.zeros(3, np.int64)), "int32"),
])
def test_conv_rejects_bad_arguments(bad, match):
    args = dict(x=np.zeros((1, 2, 4, 4), U8), w=np.zeros((3, 2, 3, 3), I8), b=None,
                mult=np.full(3, 1 << 30, np.int64), shift=np.full(3, 40, np.int64))
    kw = dict(x_zero_point=0, y_zero_point=0, qmin=0, qmax=255)
    kw.update(bad.pop("kw", {}))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        conv_mod.conv_int8(args["x"], args["w"], args["b"], args["mult"], args["shift"], **kw)


def test_conv_portable_code_paths_in_a_non_vnni_build(tmp_path):
    # Compile for a plain AVX2 CPU (no VNNI: the quad tile falls back to generic IR) in a fresh
    # process and check both word formats against the naive oracle there.
    script = textwrap.dedent("""
        import numpy as np
        from lowbit.kernels.int8 import conv, tile
        from lowbit.formats.fixed_point import quantize_multiplier
        from tests.naive import int8 as naive
        assert not tile.VNNI
        rng = np.random.default_rng(0)
        x = rng.integers(-128, 128, (2, 6, 7, 9)).astype(np.int8)
        w = rng.integers(-127, 128, (5, 6, 3, 3)).astype(np.int8)
        mult, shift = quantize_multiplier(rng.uniform(1e-4, 1e-3, 5))
        kw = dict(x_zero_point=-9, y_zero_point=3, qmin=0, qmax=255, pads=[1, 1, 1, 1])
        ref = naive.conv(x, w, None, mult, shift, **kw)
        for quads in (False, True):
            conv.USE_QUADS = quads
            assert np.array_equal(conv.conv_int8(x, w, None, mult, shift, **kw), ref), quads
        print("ok")
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CACHE_DIR=str(tmp_path),
               NUMBA_CPU_FEATURES="+avx,+avx2,+fma,+sse4.2,+popcnt,+bmi,+bmi2,+f16c,+cx16,+64bit",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# --- the micro-kernel's plain-Python form (what runs under NUMBA_DISABLE_JIT=1) ----------------

def test_tiles_python_form():
    rng = np.random.default_rng(2)
    kq, width = 5, 60
    words = rng.integers(-2**31, 2**31, kq * width + 2 * tile.TILE_P).astype(np.int32)
    offs = np.arange(kq, dtype=np.int64) * width + 3
    wpk = rng.integers(-2**31, 2**31, tile.TILE_M * kq).astype(np.int32)
    for fn, xdt, wdt, group in ((tile.madd_tile, np.int16, np.int16, 2), (tile.madd4_tile, np.uint8, np.int8, 4)):
        out = np.zeros(2 * tile.TILE_M * tile.TILE_P, dtype=np.int32)
        fn(words, offs, 7, wpk, 0, kq, out, 1, 2 * tile.TILE_P, tile.TILE_V)
        xv = words.view(xdt).reshape(-1, group)
        wv = wpk.view(wdt).reshape(tile.TILE_M, kq, group)
        for r in range(tile.TILE_M):
            for c in range(tile.TILE_P):
                expect = sum(int(xv[offs[q] + 7 + c, e]) * int(wv[r, q, e]) for q in range(kq) for e in range(group))
                assert out[1 + r * 2 * tile.TILE_P + c] == (expect + 2**31) % 2**32 - 2**31


# --- Gemm -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, k, m, adt, zp, ydt", [
    (5, 7, 3, U8, 100, U8), (30, 33, 10, U8, 0, I8), (1, 1, 1, U8, 255, U8),
    (100, 200, 17, I8, 0, I8), (49, 64, 8, I8, -128, U8),
])
def test_gemm_matches_naive(n, k, m, adt, zp, ydt):
    rng = np.random.default_rng(n * k + m)
    a = _activations(rng, (n, k), adt)
    w = rng.integers(-127, 128, (m, k)).astype(I8)
    b = rng.integers(-5000, 5000, m).astype(np.int32)
    mult, shift = _requant_params(rng, m, 1e-4, 1e-2)
    lo, hi = (0, 255) if ydt == U8 else (-128, 127)
    kw = dict(a_zero_point=zp, y_zero_point=lo + 3, qmin=lo, qmax=hi - 4, y_signed=int(ydt == I8))
    before = _unchanged(a, w, b)
    y = gemm.gemm_int8(a, w, b, mult, shift, **kw)
    assert np.array_equal(y, naive.gemm(a, w, b, mult, shift, **kw))
    assert all(np.array_equal(v, c) for v, c in zip((a, w, b), before))


def test_gemm_extremes_and_leading_axes():
    a = np.full((2, 3, 1000), 255, dtype=U8)
    w = np.full((6, 1000), -127, dtype=I8)
    w[::2] = 127
    mult, shift = quantize_multiplier(np.full(6, 1e-6))
    kw = dict(a_zero_point=0, y_zero_point=128, qmin=0, qmax=255)
    y = gemm.gemm_int8(a, w, None, mult, shift, **kw)
    assert y.shape == (2, 3, 6)
    assert np.array_equal(y.reshape(6, 6), naive.gemm(a.reshape(6, 1000), w, None, mult, shift, **kw))


# --- MaxPool, GlobalAveragePool, Relu ---------------------------------------------------------

@pytest.mark.parametrize("shape, attrs", [
    ((2, 3, 8, 8), dict(kernel_shape=[2, 2], strides=[2, 2])),
    ((2, 3, 9, 11), dict(kernel_shape=[2, 2], strides=[2, 2])),
    ((2, 3, 9, 10), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ((1, 2, 9, 10), dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 2, 1], ceil_mode=1, dilations=[2, 1])),
    ((1, 2, 7, 7), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ((1, 2, 7, 7), dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
])
@pytest.mark.parametrize("dtype", [U8, I8])
def test_max_pool_matches_naive(shape, attrs, dtype):
    rng = np.random.default_rng(4)
    x = _activations(rng, shape, dtype)
    y = pool.max_pool_int8(x, **attrs)
    assert y.dtype == dtype
    assert np.array_equal(y, naive.max_pool(x, **attrs))


def test_max_pool_padding_never_wins_and_1d():
    x = np.full((1, 1, 4, 4), -128, dtype=I8)
    y = pool.max_pool_int8(x, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    assert np.all(y == -128)
    x1 = np.arange(10, dtype=U8).reshape(1, 1, 10)
    assert np.array_equal(pool.max_pool_int8(x1, kernel_shape=[3], strides=[3]).reshape(-1), [2, 5, 8])


@pytest.mark.parametrize("dtype, zp, ydt", [(U8, 3, U8), (U8, 255, I8), (I8, 0, I8), (I8, -20, U8)])
def test_global_average_pool_matches_naive(dtype, zp, ydt):
    rng = np.random.default_rng(6)
    x = _activations(rng, (3, 5, 7, 7), dtype)
    kw = dict(x_scale=0.1, x_zero_point=zp, y_scale=0.07, y_zero_point=2 if ydt == U8 else -1,
              qmin=0 if ydt == U8 else -128, qmax=255 if ydt == U8 else 127, y_signed=int(ydt == I8))
    y = pool.global_average_pool_int8(x, **kw)
    assert y.shape == (3, 5, 1, 1)
    assert np.array_equal(y, naive.global_average_pool(x, **kw))


def test_relu():
    rng = np.random.default_rng(7)
    for dtype, zp in ((U8, 0), (U8, 131), (U8, 255), (I8, 0), (I8, -7)):
        x = _activations(rng, (4, 33), dtype)
        y = elementwise.relu_int8(x, zero_point=zp)
        assert y.dtype == dtype and np.array_equal(y, naive.relu(x, zero_point=zp))


# --- Add, Concat ------------------------------------------------------------------------------

@pytest.mark.parametrize("sa, sb, sy, shapes, dts", [
    (0.02, 0.05, 0.04, ((4, 5), (4, 5)), (U8, U8)),
    (0.05, 0.02, 0.01, ((2, 3, 4, 5), (3, 1, 5)), (U8, I8)),
    (0.1, 0.1, 0.2, ((6, 7), (6, 7)), (I8, I8)),
    (1e-3, 0.3, 0.3, ((9,), (9,)), (U8, U8)),
])
def test_add_matches_integer_naive_and_float_within_one(sa, sb, sy, shapes, dts):
    rng = np.random.default_rng(9)
    a = _activations(rng, shapes[0], dts[0])
    b = _activations(rng, shapes[1], dts[1])
    for ydt, (zp_a, zp_b, zp_y) in ((U8, (0, 0, 128)), (U8, (255, 128, 0)), (I8, (10, -3, 0))):
        zp_a, zp_b = (int(np.clip(z, *((-128, 127) if d == I8 else (0, 255))))
                      for z, d in ((zp_a, dts[0]), (zp_b, dts[1])))
        lo, hi = (0, 255) if ydt == U8 else (-128, 127)
        kw = dict(a_scale=sa, a_zero_point=zp_a, b_scale=sb, b_zero_point=zp_b, y_scale=sy,
                  y_zero_point=zp_y, qmin=lo, qmax=hi)
        y = elementwise.add_int8(a, b, y_signed=int(ydt == I8), **kw)
        assert np.array_equal(y, naive.add(a, b, y_signed=int(ydt == I8), **kw))
        assert np.abs(y.astype(np.int64) - naive.add_float(a, b, **kw)).max() <= 1


def test_concat_copies_or_rescales():
    rng = np.random.default_rng(10)
    c1 = _activations(rng, (2, 3, 4), U8)
    c2 = _activations(rng, (2, 2, 4), I8)
    c3 = _activations(rng, (2, 1, 4), U8)
    kw = dict(axis=1, in_scales=(0.1, 0.2, 0.05), in_zero_points=(3, 0, 200), y_scale=0.1, y_zero_point=3)
    y = elementwise.concat_int8(c1, c2, c3, **kw)
    assert np.array_equal(y, naive.concat(c1, c2, c3, **kw))
    assert np.array_equal(y[:, :3], c1)
    kw = dict(axis=-1, in_scales=(0.02, 0.02), in_zero_points=(0, 5), y_scale=0.03, y_zero_point=-2, y_signed=1)
    y = elementwise.concat_int8(c2, c2, **kw)
    assert y.dtype == I8 and np.array_equal(y, naive.concat(c2, c2, **kw))


# --- QuantizeLinear / DequantizeLinear against onnxruntime ------------------------------------

def _ort_single(op, x, scale, zp, zp_type, out_type, x_type):
    node = helper.make_node(op, ["x", "s", "z"], ["y"])
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", x_type, None)],
        [helper.make_tensor_value_info("y", out_type, None)],
        initializer=[helper.make_tensor("s", TensorProto.FLOAT, [], [scale]),
                     helper.make_tensor("z", zp_type, [], [zp])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("signed, zp", [(0, 0), (0, 128), (0, 255), (1, 0), (1, -128), (1, 37)])
@pytest.mark.parametrize("scale", [1.0, 0.1, 3.0 / 255, 7.3e-5])
def test_quantize_linear_bit_exact_with_onnxruntime(signed, zp, scale):
    rng = np.random.default_rng(12)
    x = np.concatenate([
        rng.normal(0, 40 * scale, 4000).astype(np.float32),
        (np.arange(-300, 300, dtype=np.float32) + 0.5) * np.float32(scale),       # ties
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38, 1e-45], dtype=np.float32),
    ])
    zt = TensorProto.INT8 if signed else TensorProto.UINT8
    ref = _ort_single("QuantizeLinear", x, scale, zp, zt, zt, TensorProto.FLOAT)
    y = quantize.quantize_linear(x, scale=scale, zero_point=zp, signed=signed)
    assert y.dtype == ref.dtype
    assert np.array_equal(y, ref)


@pytest.mark.parametrize("dtype, zp", [(U8, 0), (U8, 200), (I8, 0), (I8, -100)])
@pytest.mark.parametrize("scale", [1.0, 0.1, 7.3e-5])
def test_dequantize_linear_bit_exact_with_onnxruntime(dtype, zp, scale):
    q = np.arange(256).astype(np.int64).astype(dtype).reshape(4, 64) if dtype == U8 else \
        (np.arange(256) - 128).astype(dtype).reshape(4, 64)
    zt = TensorProto.INT8 if dtype == I8 else TensorProto.UINT8
    ref = _ort_single("DequantizeLinear", q, scale, zp, zt, TensorProto.FLOAT, zt)
    y = quantize.dequantize_linear(q, scale=scale, zero_point=zp)
    assert y.dtype == np.float32
    assert np.array_equal(y.view(np.int32), ref.view(np.int32))
