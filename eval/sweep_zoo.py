"""Regenerate the committed sweep results of every models/*.onnx net.

    python eval/sweep_zoo.py                 # all nets, default precisions
    python eval/sweep_zoo.py --jobs 2        # precisions in 2 processes

For each net it runs the same sweep as ``lowbit eval`` on the bundled MNIST
(10,000 test images; 1,000 training images for calibration) and writes
``eval/results/<net>/results.{json,md,csv}`` and its plots; then the
combined plots over all nets (one line per net) and ``eval/results/README.md``.
The .lowbit files the sweep saves go to a temporary folder (they are not
committed; rerun to get them).  ``--nets`` reruns a subset; the combined
plots always cover every net whose results.json is on disk.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRECISIONS = "fp32,fp16,bf16,fp8-e4m3,fp8-e5m2,int8,int4,int2,ternary,binary"


def evaluate_saved(path, label, x_test, y_test, result):
    """A sweep row for an already quantized .lowbit file (e.g. the fine-tuned binary net)."""
    import lowbit
    from lowbit.evaluate.metrics import agreement, top1, topk
    from lowbit.evaluate.sweep import PrecisionResult, timed_run

    reference = result.get("fp32")
    fp32_scores = lowbit.load(reference.model_file).run(x_test)
    scores, seconds, compile_seconds = timed_run(lowbit.load(path), x_test, 256, None)
    return PrecisionResult(precision=label, bits=1, accuracy=top1(scores, y_test), top5=topk(scores, y_test),
                           drop=100.0 * (reference.accuracy - top1(scores, y_test)),
                           agreement=agreement(scores, fp32_scores), size_bytes=path.stat().st_size,
                           images_per_s=len(x_test) / seconds, calibration_seconds=0.0,
                           compile_seconds=compile_seconds, overflow=0, model_file=f"models/{path.name}")


def main(argv=None):
    import shutil

    from lowbit.data import mnist
    from lowbit.evaluate.plots import plot_sweep
    from lowbit.evaluate.report import markdown_table, text_table, write_results, write_text
    from lowbit.evaluate.sweep import sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", default=PRECISIONS)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results")
    parser.add_argument("--nets", help="comma-separated subset of models/*.onnx names")
    args = parser.parse_args(argv)

    x_test, y_test = mnist("test")
    calibration = mnist("train")[0][:1000]
    nets = sorted(p for p in (ROOT / "models").glob("*.onnx"))
    finetuned = {"deep_convnet": ROOT / "models" / "deep_convnet_binary.lowbit"}
    if args.nets:
        nets = [p for p in nets if p.stem in args.nets.split(",")]
    results = []
    for net in nets:
        out = args.out / net.stem
        out.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp())
        result = sweep(net, x_test, y_test, args.precisions.split(","), calibration=calibration, out_dir=scratch,
                       jobs=args.jobs, dataset_label="MNIST test (bundled)", model_label=net.stem)
        extra = finetuned.get(net.stem)
        if extra is not None and extra.exists():
            result.results.append(evaluate_saved(extra, "binary-finetuned", x_test, y_test, result))
        for row in result.results:
            if not row.model_file.startswith("models/deep_convnet_binary"):
                row.model_file = f"models/{row.precision}.lowbit (not committed)"
        write_results(result, out)
        plot_sweep([result], out)
        shutil.rmtree(scratch, ignore_errors=True)
        print(text_table(result), flush=True)
        results.append(result)
    import json

    from lowbit.evaluate.sweep import SweepResult

    # the combined plots and tables cover every net with results on disk, not only this run's
    results = [SweepResult.from_dict(json.loads(p.read_text())) for p in sorted(args.out.glob("*/results.json"))]
    plot_sweep(results, args.out)
    lines = ["# Sweep results", "", "Regenerate with `python eval/sweep_zoo.py` (see its docstring).", "",
             "![accuracy vs bits](accuracy_vs_bits.png)", "![accuracy vs size](accuracy_vs_size.png)",
             "![throughput vs bits](throughput_vs_bits.png)", ""]
    lines += [markdown_table(r) for r in results]
    write_text(args.out / "README.md", "\n".join(lines))


if __name__ == "__main__":
    main()
