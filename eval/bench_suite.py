"""Speed of lowbit against onnxruntime on every corpus model, at batch 1 and 32 (256 for the MNIST nets).

Run from the repository root, on a quiet machine (onnxruntime slows down badly when another process competes for
the cores; OPENBLAS variables cleared for this command only)::

    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python eval/bench_suite.py
    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python eval/bench_suite.py --corpus tests/data/conformance --batches 1,32 \\
        --repeats 7 --name bench_suite_small

Models: every entry of each ``--corpus`` folder (``eval/conformance/build_corpus.py`` writes the full-size one into
``~/.cache/lowbit/corpus``; ``tests/data/conformance`` holds the small committed variants) and the MNIST zoo
(``models/*.onnx``, also at batch 256). For each model and batch, in one process, the runners below take turns
(one timed call each per round, ``--repeats`` rounds) and the medians are compared:

* lowbit fp32, and lowbit at each of ``--precisions`` (quantized with minmax on 16 calibration images);
* onnxruntime fp32, and onnxruntime int8 (``quantize_static``: QDQ, per-channel int8 weights, int8 activations,
  MinMax, the same calibration images);
* OpenVINO fp32, where it is installed.

It also reports lowbit's *warm first run* (the first call after loading, kernels already in Numba's cache) and,
with ``--cold``, the *cold start* of each model in a fresh process on an empty Numba cache (load + first run at
batch 1, models in order: the first one compiles most kernels). Writes ``eval/<name>.json`` and ``eval/<name>.md``
with per-model img/s, the ratios and their geometric means. A benchmark, not a test: compare ratios measured in the
same run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MNIST_ZOO = ("deep_convnet", "mlp", "vgg_bn", "resnet_small", "googlenet_small")


def entries(corpora, names):
    """(label, path, sample shape, mean, std, batches) of every model to time."""
    from eval.conformance.run_corpus import read_entries

    out = []
    for folder in corpora:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            print(f"skipping corpus {folder}: not found", file=sys.stderr)
            continue
        for e in read_entries(str(folder)):
            if e.get("status", "ok") != "ok" or not e.get("input_shape"):
                continue
            out.append((e["name"], folder / e["file"], tuple(e["input_shape"]), e.get("mean"), e.get("std"), None))
    for net in MNIST_ZOO:
        path = ROOT / "models" / f"{net}.onnx"
        if path.exists():
            out.append((f"mnist/{net}", path, (1, 28, 28), None, None, "mnist"))
    if names:
        wanted = names.split(",")
        out = [e for e in out if any(w in e[0] for w in wanted)]
    return out


def inputs(shape, n, seed, mean, std, kind):
    import numpy as np

    if kind == "mnist":
        from lowbit.data import mnist

        x, _ = mnist("test" if seed else "train")
        x = np.ascontiguousarray(x[:n])
        return x if len(x) == n else np.concatenate([x] * (-(-n // len(x))))[:n]
    from eval.conformance.images import smooth_images

    kwargs = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
    return smooth_images(n, shape, seed=seed, **kwargs)


#: Pause (untimed) after each call: onnxruntime's worker threads spin for a while after a run and would
#: hold the cores during the next runner's timed call.
SETTLE_S = 0.02


def time_round_robin(runners, x, repeats):
    """Median seconds per call of each runner, the runners taking turns once per round."""
    for fn in runners.values():
        fn(x)  # warm: a first call allocates (and may compile)
    samples = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            fn(x)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def bench_model(label, path, shape, mean, std, kind, batch, args, tmp):
    import onnxruntime as ort

    import lowbit
    from eval.conformance.run_corpus import ort_int8, ort_session

    x = inputs(shape, batch, 1, mean, std, kind)
    x_cal = inputs(shape, 16, 0, mean, std, kind)
    row = {"model": label, "batch": batch}
    runners = {}
    start = time.perf_counter()
    model = lowbit.load(path)
    row["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    model.run(x, threads=args.threads)
    row["warm_first_run_s"] = time.perf_counter() - start
    runners["lowbit fp32"] = lambda a, m=model: m.run(a, threads=args.threads)
    for p in args.precisions.split(","):
        if p == "fp32":
            continue
        try:
            q = lowbit.quantize(model, p, calibration=x_cal)
            runners[f"lowbit {p}"] = lambda a, m=q: m.run(a, threads=args.threads)
        except lowbit.LowbitError as exc:
            row[f"lowbit {p} error"] = str(exc)[:200]
    session = ort_session(str(path), args.threads)
    name = session.get_inputs()[0].name
    runners["onnxruntime fp32"] = lambda a, s=session: s.run(None, {name: a})
    try:
        int8_path, _ = ort_int8(str(path), x_cal, tmp)
        int8 = ort_session(int8_path, args.threads)
        runners["onnxruntime int8"] = lambda a, s=int8: s.run(None, {name: a})
    except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer fails on some models; record why
        row["onnxruntime int8 error"] = str(exc).splitlines()[0][:200]
    try:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": args.threads})
        runners["openvino fp32"] = lambda a, c=compiled: c(a)
    except ImportError:
        pass
    seconds = time_round_robin(runners, x, args.repeats)
    row["img_per_s"] = {k: batch / v for k, v in seconds.items()}
    rates = row["img_per_s"]
    for ours, theirs in (("lowbit fp32", "onnxruntime fp32"), ("lowbit int8", "onnxruntime int8"),
                         ("lowbit int8", "onnxruntime fp32")):
        if ours in rates and theirs in rates:
            row[f"{ours} / {theirs}"] = rates[ours] / rates[theirs]
    return row


def cold_start(models, threads):
    """Load + first batch-1 run of each model in a fresh process on an empty Numba cache."""
    code = (
        "import json, sys, time\n"
        "import lowbit\n"
        "from eval.bench_suite import inputs\n"
        "out = []\n"
        "for label, path, shape, mean, std, kind in json.loads(sys.argv[1]):\n"
        "    start = time.perf_counter()\n"
        "    x = inputs(tuple(shape), 1, 1, mean, std, kind)\n"
        "    m = lowbit.load(path)\n"
        f"    m.run(x, threads={threads})\n"
        "    out.append([label, time.perf_counter() - start])\n"
        "print(json.dumps({'models': out}))\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        payload = json.dumps([[m[0], str(m[1]), list(m[2]), m[3], m[4], m[5]] for m in models])
        done = subprocess.run([sys.executable, "-c", code, payload], env=env, capture_output=True, text=True,
                              cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["models"]


def geometric_mean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def write_report(rows, cold, args, json_path, md_path):
    ratios = ("lowbit fp32 / onnxruntime fp32", "lowbit int8 / onnxruntime int8", "lowbit int8 / onnxruntime fp32")
    summary = {}
    for batch in sorted({r["batch"] for r in rows}):
        summary[batch] = {k: geometric_mean([r.get(k) for r in rows if r["batch"] == batch]) for k in ratios}
    json_path.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows, "geomean": summary,
                                     "cold_start_s": cold}, indent=1) + "\n")
    lines = [f"# lowbit against onnxruntime: speed on the corpus", "", "```", " ".join(["python"] + sys.argv), "```",
             "", f"{args.threads} threads, median of {args.repeats} alternating rounds; img/s.", ""]
    runners = sorted({k for r in rows for k in r["img_per_s"]})
    lines.append("| model | batch | " + " | ".join(runners) + " | " + " | ".join(ratios) + " | warm first run s |")
    lines.append("|" + "---|" * (3 + len(runners) + len(ratios)))
    for r in rows:
        cells = [f"{r['img_per_s'][k]:,.1f}" if k in r["img_per_s"] else "—" for k in runners]
        cells += [f"{r[k]:.2f}" if k in r else "—" for k in ratios]
        lines.append(f"| {r['model']} | {r['batch']} | " + " | ".join(cells) + f" | {r['warm_first_run_s']:.2f} |")
    lines += ["", "Geometric means of the ratios:", ""]
    lines.append("| batch | " + " | ".join(ratios) + " |")
    lines.append("|" + "---|" * (1 + len(ratios)))
    for batch, means in summary.items():
        lines.append(f"| {batch} | " + " | ".join("—" if means[k] is None else f"{means[k]:.2f}" for k in ratios) + " |")
    if cold:
        lines += ["", "Cold start (fresh process, empty Numba cache; load + first batch-1 run, models in this order):",
                  ""]
        lines += [f"- {label}: {seconds:.1f} s" for label, seconds in cold]
    errors = [(r["model"], k, v) for r in rows for k, v in r.items() if k.endswith("error")]
    if errors:
        lines += ["", "Not timed:", ""] + [f"- {m}: {k[:-6]}: {v}" for m, k, v in errors]
    md_path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", help="corpus folder (repeatable; default: the full-size cache "
                                                          "and tests/data/conformance)")
    parser.add_argument("--models", help="comma-separated substrings of the model labels to keep")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="also time cold starts on an empty Numba cache")
    parser.add_argument("--name", default="bench_suite", help="output files eval/NAME.json and eval/NAME.md")
    args = parser.parse_args(argv)
    from eval.conformance.run_corpus import quiet_onnxruntime

    quiet_onnxruntime()
    corpora = args.corpus or [str(Path.home() / ".cache" / "lowbit" / "corpus"), str(ROOT / "tests" / "data" /
                                                                                       "conformance")]
    models = entries(corpora, args.models)
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, path, shape, mean, std, kind in models:
            for batch in batches + ([256] if kind == "mnist" else []):
                try:
                    row = bench_model(label, path, shape, mean, std, kind, batch, args, tmp)
                except Exception as exc:  # noqa: BLE001 - one model failing must not stop the suite
                    print(f"{label} batch {batch}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                          file=sys.stderr)
                    continue
                rows.append(row)
                rates = ", ".join(f"{k} {v:,.1f}" for k, v in row["img_per_s"].items())
                print(f"{label} batch {batch}: {rates}", flush=True)
    cold = cold_start(models, args.threads) if args.cold else []
    out = ROOT / "eval"
    write_report(rows, cold, args, out / f"{args.name}.json", out / f"{args.name}.md")
    print(f"wrote {out / args.name}.json and .md")


if __name__ == "__main__":
    main()
