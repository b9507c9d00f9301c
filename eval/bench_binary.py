"""Binary (XNOR / popcount) conv vs lowbit's fp32 conv vs onnxruntime's fp32 Conv, in one run.

Run from the repository root::

    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python eval/bench_binary.py
    python eval/bench_binary.py --batch 256 --threads 2 --repeats 21
    python eval/bench_binary.py --cold   # time a compile from scratch (empty Numba cache)
    python eval/bench_binary.py --cpu-time   # process CPU time instead of wall-clock

The layer: 3x3 conv, 64 -> 64 channels, 8x8 input, pad 1, stride 1, batch 256
(options change the sizes).  Timed, interleaved round by round so that all
see the same machine load, median (and min) over ``--repeats`` runs after a
warm-up:

* ``binary_conv``: packed signs in, int32 dot products (N, M, oH, oW) out;
* ``binary_conv_sign``: packed signs in, packed signs out (BatchNorm + sign fused);
* ``pack_signs``: float32 NCHW -> packed (the cost of entering the binary domain);
* lowbit's fp32 ``conv`` and onnxruntime's fp32 Conv (all graph optimisations on)
  on the same shape and thread count.

Also printed: the first call of each binary kernel (compile, or cache load when
the cache is warm; ``--cold`` points Numba at an empty cache directory), and a
check that ``binary_conv`` equals lowbit's fp32 conv of the +-1 tensors (zero
padding there is the binary kernels' "padded taps count 0").
On a shared machine wall-clock medians of multi-threaded runs are at the
mercy of the other tenants (the load average is printed).  Numba's OpenMP
threads spin while they wait by default; on an oversubscribed machine that
turned a 1 ms kernel on 2 threads into ~20 ms (the spinning thread holds the
core the other one needs), so this script sets ``OMP_WAIT_POLICY=PASSIVE``
unless the environment already sets it (the policy is printed).
``--cpu-time`` measures process CPU seconds instead, with onnxruntime's
spin-waiting turned off too (``allow_spinning=0``) so that idle threads cost
nothing.
This is a benchmark, not a test: compare ratios measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=64, help="input channels")
    parser.add_argument("--out-channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=8, help="input height and width")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21, help="timed runs per measurement (median)")
    parser.add_argument("--cold", action="store_true", help="compile with an empty Numba cache")
    parser.add_argument("--cpu-time", action="store_true", help="time process CPU seconds, not wall-clock")
    return parser.parse_args(argv)


def ort_conv_session(x_shape, w, threads, spin):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main(argv=None):
    args = parse_args(argv)
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lowbit-cold-")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    clock = time.process_time if args.cpu_time else time.perf_counter
    import numba
    import numpy as np

    from lowbit.kernels.binary import binary_conv, binary_conv_sign, pack_signs, pack_weights
    from lowbit.kernels.float.conv import conv

    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n, c, m, s = args.batch, args.channels, args.out_channels, args.size
    x = rng.standard_normal((n, c, s, s)).astype(np.float32)
    w = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    geometry = dict(channels=c, kernel_shape=(3, 3), pads=(1, 1, 1, 1))
    thresholds = rng.integers(-20, 20, size=m).astype(np.int32)
    flip = rng.integers(0, 2, size=m).astype(bool)

    start = time.perf_counter()
    xp, wp = pack_signs(x), pack_weights(w)
    first_pack = time.perf_counter() - start
    start = time.perf_counter()
    dots = binary_conv(xp, wp, **geometry)
    first_conv = time.perf_counter() - start
    start = time.perf_counter()
    binary_conv_sign(xp, wp, thresholds, flip, **geometry)
    first_sign = time.perf_counter() - start

    signs_x = np.where(x < 0, -1.0, 1.0).astype(np.float32)
    signs_w = np.where(w < 0, -1.0, 1.0).astype(np.float32)
    agree = np.array_equal(conv(signs_x, signs_w, kernel_shape=[3, 3], pads=[1, 1, 1, 1]), dots)

    session = ort_conv_session(list(x.shape), w, args.threads, spin=not args.cpu_time)
    runs = {
        "binary_conv (int32 out)": lambda: binary_conv(xp, wp, **geometry),
        "binary_conv_sign (packed out)": lambda: binary_conv_sign(xp, wp, thresholds, flip, **geometry),
        "pack_signs (fp32 -> packed)": lambda: pack_signs(x),
        "lowbit fp32 conv": lambda: conv(x, w, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        "onnxruntime fp32 Conv": lambda: session.run(None, {"x": x}),
    }
    times = {name: [] for name in runs}
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    med = {name: float(np.median(t)) for name, t in times.items()}

    print(f"3x3 conv {c}->{m} on {s}x{s}, pad 1, batch {n}, threads {args.threads} "
          f"({numba.threading_layer()}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), "
          f"median (min) {'CPU' if args.cpu_time else 'wall-clock'} ms "
          f"of {args.repeats} interleaved runs; load average {os.getloadavg()[0]:.2f}")
    print(f"first calls ({'compile' if args.cold else 'compile or cache load'}): pack {first_pack:.2f} s, "
          f"binary_conv {first_conv:.2f} s, binary_conv_sign {first_sign:.2f} s")
    print(f"binary_conv == lowbit fp32 conv of the +-1 tensors: {agree}")
    for name in runs:
        print(f"  {name:32s} {med[name] * 1e3:8.3f} ms  ({min(times[name]) * 1e3:.3f})")
    fp32, ort_t = med["lowbit fp32 conv"], med["onnxruntime fp32 Conv"]
    for name in ("binary_conv (int32 out)", "binary_conv_sign (packed out)"):
        print(f"  speed-up of {name}: {fp32 / med[name]:.1f}x vs lowbit fp32, "
              f"{ort_t / med[name]:.1f}x vs onnxruntime")


if __name__ == "__main__":
    main()
