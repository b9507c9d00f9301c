"""Post-training quantization table: algorithms × precisions on the MNIST zoo.

Every cell quantizes the fp32 model with ``lowbit.quantize`` — every weighted
layer at the column's width, first and last included
(``first_layer = last_layer = "quantized"``) — on the first
``--calibration-size`` MNIST training images, and measures top-1 accuracy on
the 10,000 test images.  The time is the wall time of the ``quantize`` call
(calibration, equalization, AdaRound, bias correction, conversion).

Rows add one algorithm at a time (cumulative):

* ``none`` — nearest rounding, max-abs weight scales;
* ``+equalize`` — cross-layer equalization and high-bias absorption;
* ``+bias-correction`` — equalize + empirical bias correction;
* ``+adaround`` — equalize + AdaRound (then bias correction only where the
  ``+bias-correction`` row beat ``+equalize`` in that cell's column).

Usage (resumable: cells already in the JSON with the same settings are kept)::

    nice -n 10 python eval/ptq/run_ptq.py [--models deep_convnet,mlp] [--rows none,+equalize]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lowbit  # noqa: E402
from lowbit.data import mnist  # noqa: E402

MODELS = ("deep_convnet", "mlp", "vgg_bn", "resnet_small", "googlenet_small")
COLUMNS = {  # label: (precision, activation bits, calibration method)
    "W8A8": ("int8", 8, "minmax"),
    "W4A8": ("int4", 8, "minmax"),
    "W3A8": ("int3", 8, "minmax"),
    "W2A8": ("int2", 8, "minmax"),
    "W4A4": ("int4", 4, "mse"),
    "ternary-A8": ("ternary", 8, "minmax"),
}
ROWS = ("none", "+equalize", "+bias-correction", "+adaround")
OUT = Path(__file__).resolve().parent


def options(row: str, iterations: int, with_bias: bool) -> dict:
    if row == "none":
        return {}
    if row == "+equalize":
        return {"equalize": True}
    if row == "+bias-correction":
        return {"equalize": True, "bias_correction": True}
    return {"equalize": True, "adaround": {"iterations": iterations}, "bias_correction": with_bias}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--columns", default=",".join(COLUMNS))
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--calibration-size", type=int, default=256)
    parser.add_argument("--adaround-iterations", type=int, default=1000)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    out = Path(args.out)
    path = out / "RESULTS.json"
    doc = json.loads(path.read_text()) if path.is_file() else {"cells": []}
    x_cal = mnist("train")[0][:args.calibration_size]
    x_test, y_test = mnist("test")
    for name in args.models.split(","):
        model = lowbit.load(ROOT / "models" / f"{name}.onnx")
        fp32 = float(np.mean(model.run(x_test).argmax(axis=1) == y_test))
        doc.setdefault("fp32", {})[name] = fp32
        for row in args.rows.split(","):
            for column in args.columns.split(","):
                precision, abits, method = COLUMNS[column]
                key = dict(model=name, row=row, column=column, calibration_size=args.calibration_size,
                           adaround_iterations=args.adaround_iterations if row == "+adaround" else None)
                if any(all(c.get(k) == v for k, v in key.items()) for c in doc["cells"]):
                    continue
                with_bias = row == "+adaround" and _bias_helped(doc, name, column, args.calibration_size)
                start = time.perf_counter()
                q = lowbit.quantize(model, precision, calibration=x_cal, method=method, first_layer="quantized",
                                    last_layer="quantized", activation_bits=abits,
                                    **options(row, args.adaround_iterations, with_bias))
                seconds = time.perf_counter() - start
                accuracy = float(np.mean(q.run(x_test).argmax(axis=1) == y_test))
                cell = {**key, "precision": precision, "activation_bits": abits, "method": method,
                        "bias_correction": row == "+bias-correction" or with_bias,
                        "accuracy": accuracy, "drop": 100.0 * (fp32 - accuracy), "seconds": seconds}
                doc["cells"].append(cell)
                print(f"{name:16} {row:17} {column:11} {100 * accuracy:6.2f}%  {seconds:7.1f} s", flush=True)
                path.write_text(json.dumps(doc, indent=1) + "\n")
                (out / "RESULTS.md").write_text(markdown(doc))
    path.write_text(json.dumps(doc, indent=1) + "\n")
    (out / "RESULTS.md").write_text(markdown(doc))
    return 0


def _bias_helped(doc, name, column, calibration_size) -> bool:
    def acc(row):
        return next((c["accuracy"] for c in doc["cells"] if c["model"] == name and c["row"] == row
                     and c["column"] == column and c["calibration_size"] == calibration_size), None)

    with_bias, without = acc("+bias-correction"), acc("+equalize")
    return with_bias is not None and without is not None and with_bias > without


def markdown(doc) -> str:
    lines = ["# Post-training quantization on the MNIST zoo", "",
             "Written by `nice -n 10 python eval/ptq/run_ptq.py` (see its docstring); the numbers are in "
             "`RESULTS.json`. Top-1 accuracy (%) on the 10,000 MNIST test images; every weighted layer at the "
             "column's width, first and last included; calibration: the first 256 MNIST training images; "
             "activation ranges minmax (mse for W4A4). Time: wall seconds of the `lowbit.quantize` call on a "
             "2-core machine shared with other jobs (so timings are inflated and noisy). "
             "Rows are cumulative; `+adaround` = equalize + AdaRound, plus bias correction where it helped in "
             "that column (marked `bc`).", ""]
    columns = list(COLUMNS)
    for name in MODELS:
        cells = [c for c in doc["cells"] if c["model"] == name]
        if not cells:
            continue
        lines += [f"## {name} (fp32 {100 * doc['fp32'][name]:.2f}%)", "",
                  "| row | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for row in ROWS:
            found = {c["column"]: c for c in cells if c["row"] == row}
            if not found:
                continue
            text = []
            for column in columns:
                c = found.get(column)
                text.append("" if c is None else f"{100 * c['accuracy']:.2f} ({c['seconds']:.0f} s)"
                            + (" bc" if row == "+adaround" and c["bias_correction"] else ""))
            lines.append(f"| {row} | " + " | ".join(text) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
