"""fp32 throughput of lowbit vs onnxruntime on the deep CNN, in one run.

Run from the repository root (the OPENBLAS variables are cleared for the
benchmark command only, so neither side runs with a tuned-down BLAS)::

    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python eval/bench_fp32.py
    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python eval/bench_fp32.py --batch 256 --threads 2 --repeats 7
    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python eval/bench_fp32.py --cold   # time a compile from scratch

The model is ``models/deep_convnet.onnx`` when it exists, otherwise the same
architecture built here with He-initialised random weights (input 1x28x28;
conv3x3(16)x2, pool, conv3x3(32)x2 (the second with pad 2), pool,
conv3x3(64)x2, pool, Gemm 1024->50, ReLU, Gemm 50->10, Softmax).

Printed: images per second for lowbit (``lowbit.load(path).run``) and for
onnxruntime (all graph optimisations on) at the same batch and thread count,
medians over ``--repeats`` timed runs after a warm-up, their ratio, lowbit's
first-run time (Numba compile, or cache load when the cache is warm; ``--cold``
points Numba at an empty cache directory), and each conv layer alone at the
whole batch: lowbit's ``conv`` kernel vs the same Conv node in onnxruntime.
This is a benchmark, not a test: the numbers depend on the machine and on
whatever else it is running, so compare ratios measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "deep_convnet.onnx"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the deep CNN)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--cold", action="store_true", help="compile with an empty Numba cache")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer conv timings")
    return parser.parse_args(argv)


def build_deep_convnet(path, seed=0):
    """Write the deep CNN with He-initialised random weights to ``path``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def weight(name, shape, fan_in):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name))
        return name

    def bias(name, n):
        inits.append(numpy_helper.from_array(np.zeros(n, np.float32), name))
        return name

    x = "input"
    chans = [(1, 16, 1), (16, 16, 1), (16, 32, 1), (32, 32, 2), (32, 64, 1), (64, 64, 1)]
    for i, (cin, cout, pad) in enumerate(chans, 1):
        nodes.append(helper.make_node("Conv", [x, weight(f"conv{i}.W", (cout, cin, 3, 3), cin * 9),
                                               bias(f"conv{i}.b", cout)], [f"conv{i}"],
                                      name=f"conv{i}", kernel_shape=[3, 3], pads=[pad] * 4))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}"))
        x = f"relu{i}"
        if i % 2 == 0:
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i // 2}"], name=f"pool{i // 2}",
                                          kernel_shape=[2, 2], strides=[2, 2]))
            x = f"pool{i // 2}"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", weight("fc1.W", (50, 1024), 1024), bias("fc1.b", 50)],
                                  ["fc1"], name="fc1", transB=1))
    nodes.append(helper.make_node("Relu", ["fc1"], ["relu7"], name="relu7"))
    nodes.append(helper.make_node("Gemm", ["relu7", weight("fc2.W", (10, 50), 50), bias("fc2.b", 10)],
                                  ["fc2"], name="fc2", transB=1))
    nodes.append(helper.make_node("Softmax", ["fc2"], ["probs"], name="softmax", axis=1))
    graph = helper.make_graph(
        nodes, "deep_convnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def median_time(fn, repeats):
    import numpy as np

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def ort_session(model_bytes, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def conv_layers(model, batch):
    """(name, input shape, weights, bias, attributes) of every Conv node, shapes at ``batch``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(_with_batch(model, batch))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input)}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        b = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        name = node.name or node.output[0]
        layers.append((name, tuple(shapes[node.input[0]]), inits[node.input[1]], b, attrs))
    return layers


def _with_batch(model, batch):
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_value = batch
    return model


def single_conv_model(x_shape, w, b, attrs):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs = ["x", "w"] + (["b"] if b is not None else [])
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if b is not None else [])
    graph = helper.make_graph([helper.make_node("Conv", inputs, ["y"], **attrs)], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def main(argv=None):
    args = parse_args(argv)
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lowbit-cold-")
    sys.path.insert(0, str(ROOT))
    import numba
    import numpy as np
    import onnx

    import lowbit
    from lowbit.kernels.float.conv import conv

    path = args.model or MODEL
    if not path.exists():
        path = Path(tempfile.mkdtemp(prefix="lowbit-bench-")) / "deep_convnet.onnx"
        build_deep_convnet(path)
        source = "deep CNN, random He-initialised weights (models/deep_convnet.onnx not found)"
    else:
        source = str(path)
    model_proto = onnx.load(str(path))
    x = np.random.default_rng(0).random((args.batch,) + tuple(
        d.dim_value for d in model_proto.graph.input[0].type.tensor_type.shape.dim[1:])).astype(np.float32)
    print(f"model: {source}")
    print(f"batch {args.batch}, threads {args.threads}, median of {args.repeats} runs"
          f" (numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} cores visible)")

    start = time.perf_counter()
    model = lowbit.load(str(path))
    y_lowbit = model.run(x, batch_size=args.batch, threads=args.threads)
    first = time.perf_counter() - start
    session = ort_session(model_proto.SerializeToString(), args.threads)
    feeds = {model_proto.graph.input[0].name: x}
    y_ort = session.run(None, feeds)[0]
    print(f"lowbit first run (load + {'compile' if args.cold else 'compile or cache load'}): {first:.2f} s;"
          f" max |lowbit - ort| = {np.max(np.abs(y_lowbit - y_ort)):.2e}")

    # Each side is timed in its own phase, after a pause: a thread pool that
    # has just finished spins for a while and would slow the other side down.
    time.sleep(0.2)
    t_lowbit = median_time(lambda: model.run(x, batch_size=args.batch, threads=args.threads), args.repeats)
    time.sleep(0.2)
    t_ort = median_time(lambda: session.run(None, feeds), args.repeats)
    print(f"whole model: lowbit {args.batch / t_lowbit:9,.0f} img/s"
          f"   onnxruntime {args.batch / t_ort:9,.0f} img/s   lowbit/ort = {t_ort / t_lowbit:.2f}")

    if args.no_layers:
        return
    print("conv layers alone (whole batch):")
    print(f"  {'layer':<10} {'input':<20} {'weights':<16} {'lowbit ms':>10} {'ort ms':>8} {'lowbit/ort':>10}"
          f" {'lowbit GF/s':>11}")
    rng = np.random.default_rng(1)
    previous = numba.get_num_threads()
    numba.set_num_threads(args.threads)
    rows = []
    try:
        for name, x_shape, w, b, attrs in conv_layers(model_proto, args.batch):
            xl = rng.random(x_shape).astype(np.float32)
            kw = {k: v for k, v in attrs.items() if k in
                  ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
            flops = 2 * conv(xl, w, b, **kw).size * w[0].size
            rows.append([name, x_shape, w, b, kw, xl, flops,
                         ort_session(single_conv_model(x_shape, w, b, attrs), args.threads)])
        time.sleep(0.2)
        for row in rows:
            w, b, kw, xl = row[2:6]
            row.append(median_time(lambda: conv(xl, w, b, **kw), args.repeats))
        time.sleep(0.2)
        for row in rows:
            session, xl = row[7], row[5]
            session.run(None, {"x": xl})
            row.append(median_time(lambda: session.run(None, {"x": xl}), args.repeats))
    finally:
        numba.set_num_threads(previous)
    total_l = total_o = 0.0
    for name, x_shape, w, _, _, _, flops, _, tl, to in rows:
        total_l, total_o = total_l + tl, total_o + to
        print(f"  {name:<10} {str(x_shape):<20} {str(w.shape):<16} {tl * 1e3:10.2f} {to * 1e3:8.2f}"
              f" {to / tl:10.2f} {flops / tl / 1e9:11.1f}")
    print(f"  {'all convs':<48} {total_l * 1e3:10.2f} {total_o * 1e3:8.2f} {total_o / total_l:10.2f}")


if __name__ == "__main__":
    main()
