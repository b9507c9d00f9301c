"""Benchmark (not a test): training-step throughput of deep_convnet at batch 100.

One step = forward (train mode) + softmax cross-entropy + backward + Adam update, on MNIST images.

Usage::

    python eval/bench_train.py [--steps 20] [--batch 100] [--net deep_convnet]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def main(argv=None):
    from lowbit.data import mnist
    from lowbit.train import optim
    from lowbit.train.loss import softmax_cross_entropy
    from models.train import load_net_module

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="deep_convnet")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)

    x, y = mnist("train")
    net = load_net_module(args.net).build(0)
    opt, params = optim.Adam(), net.parameters()

    def step(i):
        lo = (i * args.batch) % (len(x) - args.batch)
        logits = net.forward(x[lo:lo + args.batch], train=True)
        _, d = softmax_cross_entropy(logits, y[lo:lo + args.batch])
        net.backward(d)
        opt.step(params, net.gradients(), 1e-3)

    step(0)  # warm-up: JIT compilation, allocations
    times = []
    for i in range(1, args.steps + 1):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
    t = np.array(times)
    print(f"{args.net} training step, batch {args.batch}, {args.steps} steps: "
          f"median {args.batch / np.median(t):.0f} img/s, mean {args.batch * len(t) / t.sum():.0f} img/s "
          f"(numpy {np.__version__}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
