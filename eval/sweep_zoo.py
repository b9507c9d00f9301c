"""Regenerate the committed sweep results of every models/*.onnx net.

    python eval/sweep_zoo.py                 # all nets, default precisions
    python eval/sweep_zoo.py --jobs 2        # precisions in 2 processes
    python eval/sweep_zoo.py --nets deep_convnet --sensitivity int4,int2,ternary,binary

For each net it runs the same sweep as ``lowbit eval`` on the bundled MNIST
(10,000 test images; 1,000 training images for calibration) and writes
``eval/results/<net>/results.{json,md,csv}``, its plots and ``report.html``
(onnxruntime fp32 / int8 timed on the same images; the fine-tuned binary net
of deep_convnet as an extra row; ``--sensitivity`` adds per-layer sensitivity
files and the heatmap); then the combined plots over all nets (one line per
net) and ``eval/results/README.md``.
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


def main(argv=None):
    import shutil

    from lowbit.data import mnist
    from lowbit.evaluate.html_report import write_html
    from lowbit.evaluate.plots import plot_sensitivity, plot_sweep
    from lowbit.evaluate.sensitivity import sensitivity, write_sensitivity
    from lowbit.evaluate.report import markdown_table, text_table, write_results, write_text
    from lowbit.evaluate.sweep import sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", default=PRECISIONS)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results")
    parser.add_argument("--nets", help="comma-separated subset of models/*.onnx names")
    parser.add_argument("--sensitivity", help="comma-separated precisions: per-layer sensitivity of each net too")
    parser.add_argument("--no-reference", action="store_true", help="do not time onnxruntime fp32 / int8")
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
        extra = [finetuned[net.stem]] if net.stem in finetuned and finetuned[net.stem].exists() else []
        result = sweep(net, x_test, y_test, args.precisions.split(","), calibration=calibration, out_dir=scratch,
                       jobs=args.jobs, dataset_label="MNIST test (bundled)", model_label=net.stem, include=extra,
                       reference=not args.no_reference)
        result.command = "python eval/sweep_zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])
        result.settings = {"calibration data": "MNIST train (bundled), first 1,000 images", "batch size": 256,
                           "jobs": args.jobs, "included models": ", ".join(f"models/{p.name}" for p in extra) or None}
        for precision in (args.sensitivity or "").split(","):
            if precision:
                rows = sensitivity(str(net), x_test, y_test, precision, calibration=calibration)
                write_sensitivity(rows, precision, out)
                plot_sensitivity(rows, precision, out / f"sensitivity_{precision}.png")
        write_results(result, out)
        plots = plot_sweep([result], out)
        # the page reads the saved models (summary, per-layer precision) before their paths are rewritten
        images = plots + sorted(p for p in out.glob("sensitivity_*.png") if p not in plots)
        write_html(result, out, images=images, command=result.command, settings=result.settings)
        for row in result.results:
            if Path(row.model_file).parent == ROOT / "models":
                row.model_file = f"models/{Path(row.model_file).name}"
            else:
                row.model_file = f"models/{row.precision}.lowbit (not committed)"
        write_results(result, out)
        shutil.rmtree(scratch, ignore_errors=True)
        print(text_table(result), flush=True)
        results.append(result)
    import json

    from lowbit.evaluate.sweep import SweepResult

    # the combined plots and tables cover every net with results on disk, not only this run's
    results = [SweepResult.from_dict(json.loads(p.read_text())) for p in sorted(args.out.glob("*/results.json"))]
    plot_sweep(results, args.out)
    lines = ["# Sweep results", "", "Regenerate with `python eval/sweep_zoo.py` (see its docstring). Each net's "
             "folder has a self-contained `report.html` (tables, plots, model summary, settings).", "",
             "![accuracy drop vs bits](accuracy_vs_bits.png)", "![accuracy drop vs size](accuracy_vs_size.png)",
             "![throughput vs bits](throughput_vs_bits.png)", ""]
    lines += [markdown_table(r) for r in results]
    write_text(args.out / "README.md", "\n".join(lines))


if __name__ == "__main__":
    main()
