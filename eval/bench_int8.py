"""Benchmark (not a test): int8 Conv against fp32 Conv on the deep CNN's layer shapes.

For each 3x3 convolution of the seed's deep CNN at batch 256 it times, in one
run and interleaved round by round (so that machine noise hits all four alike):

* ``int8``:   :func:`lowbit.kernels.int8.conv.conv_int8` (uint8 activations, int8 weights; the
  header says which micro-kernel the CPU got: VNNI ``vpdpbusd`` quads or ``vpmaddwd`` pairs);
* ``fp32``:   :func:`lowbit.kernels.float.conv.conv`;
* ``ort32``:  onnxruntime's fp32 ``Conv``;
* ``ortq``:   onnxruntime's ``QLinearConv`` (uint8 x, per-channel int8 w, uint8 y).

It prints medians in ms and ratios (``x`` > 1: int8 is faster), and the time
of each lowbit kernel's first call (JIT compilation, or loading Numba's
cache).  ``--cold`` points Numba at an empty cache first, so that the first
call is a real compilation.  On a shared machine wall-clock medians of
multi-threaded runs are at the mercy of the other tenants (the load average is
printed); ``--cpu-time`` measures process CPU time instead (onnxruntime's
spin-waiting is turned off then, so that idle threads cost nothing).

Usage::

    python eval/bench_int8.py [--threads 2] [--rounds 15] [--batch 256] [--cold] [--cpu-time]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402  (numba is imported in main, after --cold has set its cache dir)

#: (C_in, C_out, H = W, pad); all 3x3, stride 1.
LAYERS = [(1, 16, 28, 1), (16, 16, 28, 1), (16, 32, 14, 1), (32, 32, 14, 2), (32, 64, 7, 1), (64, 64, 7, 1)]


def _ort_sessions(c, m, pad, w_f, b_f, w_q, b_q, s_x, zp_x, s_w, s_y, zp_y, threads, spin):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    attrs = dict(kernel_shape=[3, 3], pads=[pad] * 4)

    def session(nodes, inputs, outputs, inits):
        graph = helper.make_graph(nodes, "conv", inputs, outputs, initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    fp32 = session([helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   [numpy_helper.from_array(w_f, "w"), numpy_helper.from_array(b_f, "b")])
    scalar = lambda name, value, dtype: numpy_helper.from_array(np.array(value, dtype=dtype), name)
    qlinear = session(
        [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs)],
        [helper.make_tensor_value_info("x", TensorProto.UINT8, None)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
        [scalar("xs", s_x, np.float32), scalar("xz", zp_x, np.uint8), numpy_helper.from_array(w_q, "w"),
         numpy_helper.from_array(s_w.astype(np.float32), "ws"), numpy_helper.from_array(np.zeros(m, np.int8), "wz"),
         scalar("ys", s_y, np.float32), scalar("yz", zp_y, np.uint8), numpy_helper.from_array(b_q, "b")])
    return fp32, qlinear


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--cold", action="store_true", help="compile into an empty Numba cache")
    ap.add_argument("--cpu-time", action="store_true", help="time process CPU seconds, not wall-clock")
    args = ap.parse_args(argv)
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lowbit-bench-cache-")

    import numba

    from lowbit.kernels.float.conv import conv
    from lowbit.kernels.int8.conv import USE_QUADS, conv_int8
    from lowbit.formats.fixed_point import quantize_multiplier

    numba.set_num_threads(args.threads)
    # Numba sets up its typing context on the first dispatch in a process (~0.3 s): do that now,
    # with a tiny function, so that neither kernel's first call below pays for it.
    from lowbit.kernels.int8.common import requantize
    requantize(0, 1 << 30, 31, 0, 0, 255)
    clock = time.process_time if args.cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, {args.threads} threads, {args.rounds} rounds;"
          f" medians of {'CPU' if args.cpu_time else 'wall-clock'} ms (x: how many times faster int8 is);"
          f" load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print("int8 stride-1 tile: " + ("uint8 quads, vpdpbusd (VNNI)" if USE_QUADS else "int16 pairs, vpmaddwd"))
    header = (f"{'layer':>22} {'int8':>8} {'fp32':>8} {'ort32':>8} {'ortq':>8}"
              f"  {'fp32/int8':>9} {'ort32/int8':>10} {'ortq/int8':>9}")
    rows, totals, first_calls = [], np.zeros(4), {}
    for c, m, hw, pad in LAYERS:
        x_f = rng.uniform(-1, 3, (args.batch, c, hw, hw)).astype(np.float32)
        w_f = rng.normal(0, 0.2, (m, c, 3, 3)).astype(np.float32)
        b_f = rng.normal(0, 0.1, m).astype(np.float32)
        s_x, zp_x = 4.0 / 255, 64
        x_q = np.clip(np.rint(x_f / s_x) + zp_x, 0, 255).astype(np.uint8)
        s_w = np.abs(w_f).reshape(m, -1).max(axis=1) / 127
        w_q = np.clip(np.rint(w_f / s_w[:, None, None, None]), -127, 127).astype(np.int8)
        b_q = np.rint(b_f / (s_x * s_w)).astype(np.int32)
        s_y, zp_y = 0.05, 100
        mult, shift = quantize_multiplier(s_x * s_w / s_y)
        ort32, ortq = _ort_sessions(c, m, pad, w_f, b_f, w_q, b_q, s_x, zp_x, s_w, s_y, zp_y, args.threads,
                                    spin=not args.cpu_time)
        runs = {
            "int8": lambda: conv_int8(x_q, w_q, b_q, mult, shift, x_zero_point=zp_x, y_zero_point=zp_y,
                                      qmin=0, qmax=255, pads=[pad] * 4),
            "fp32": lambda: conv(x_f, w_f, b_f, pads=[pad] * 4),
            "ort32": lambda: ort32.run(None, {"x": x_f}),
            "ortq": lambda: ortq.run(None, {"x": x_q}),
        }
        for name in ("int8", "fp32"):
            if name not in first_calls:
                t0 = time.perf_counter()
                runs[name]()
                first_calls[name] = time.perf_counter() - t0
        for f in runs.values():
            f()
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, f in runs.items():
                t0 = clock()
                f()
                times[name].append(clock() - t0)
        med = np.array([np.median(times[name]) for name in runs])
        totals += med
        rows.append((f"{c}->{m} {hw}x{hw} pad {pad}", med))
    rows.append(("all six layers", totals))
    print(header)
    for label, (t8, t32, to32, toq) in rows:
        print(f"{label:>22} {t8 * 1e3:8.2f} {t32 * 1e3:8.2f} {to32 * 1e3:8.2f} {toq * 1e3:8.2f}"
              f"  {t32 / t8:8.2f}x {to32 / t8:9.2f}x {toq / t8:8.2f}x")
    print(f"first call (JIT compile{' into an empty cache' if args.cold else ' or cache load'}):"
          f" int8 conv {first_calls['int8']:.2f} s, fp32 conv {first_calls['fp32']:.2f} s")


if __name__ == "__main__":
    main()
