"""Writing a sweep: results.json, results.md, results.csv, and the console tables (rendered by rich)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..console import render_table
from ..io.atomic import atomic_path

COLUMNS = [("precision", "precision", "{}"), ("bits", "bits", "{}"), ("accuracy", "accuracy %", "{:.2%}"),
           ("top5", "top-5 %", "{:.2%}"), ("drop", "drop (pts)", "{:+.2f}"), ("agreement", "agree w/ fp32", "{:.2%}"),
           ("agreement_top5", "agree top-5", "{:.2%}"), ("sqnr_db", "SQNR dB", "{:.1f}"),
           ("size_bytes", "size (bytes)", "{:,}"), ("images_per_s", "img/s", "{:,.0f}"),
           ("calibration_seconds", "calib s", "{:.2f}")]
# Shown only when some row has a value: accuracy columns need labels, top-5 needs > 5 classes, and
# results.json files written before agreement_top5 / sqnr_db existed lack them.
OPTIONAL = {"accuracy", "top5", "drop", "agreement", "agreement_top5", "sqnr_db"}


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt.endswith("%}"):
        return fmt.format(value).replace("%", "")
    return fmt.format(value)


def columns(result) -> list:
    """The ``(key, title, format)`` columns that ``result`` has values for."""
    return [(key, title, fmt) for key, title, fmt in COLUMNS
            if key not in OPTIONAL or any(getattr(r, key, None) is not None for r in result.results)]


def table_rows(result) -> tuple:
    cols = columns(result)
    if result.output != "scores":
        cols = [(k, "agree/position" if k == "agreement" else t, f) for k, t, f in cols]
    rows = [[_cell(getattr(r, key, None), fmt) for key, _, fmt in cols] for r in result.results]
    return [title for _, title, _ in cols], rows


def _title(result) -> str:
    text = f"{result.model} on {result.dataset} ({result.n_test:,} test samples"
    if result.skipped:
        text += f"; {result.skipped:,} unreadable file(s) skipped"
    if not result.labelled:
        text += "; no labels: agreement and SQNR against fp32"
    if result.output == "map":
        text += "; agreement per position of the argmax over axis 1"
    return text + ")"


def layer_table(result) -> tuple:
    """Per-layer SQNR (dB): header ``[layer, precision...]`` and one row per layer ("-": not comparable)."""
    precisions = list(result.layer_sqnr)
    layers = list(dict.fromkeys(name for rows in result.layer_sqnr.values() for name in rows))
    rows = [[layer] + [_cell(result.layer_sqnr[p].get(layer), "{:.1f}") for p in precisions] for layer in layers]
    return ["layer SQNR dB"] + precisions, rows


def _aligned(header, rows) -> list:
    return render_table(header, rows).splitlines()


def _markdown(header, rows) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"] \
        + ["| " + " | ".join(r) + " |" for r in rows]


def text_table(result) -> str:
    """The sweep as an aligned plain-text table (and the per-layer SQNR table when measured)."""
    lines = [_title(result)] + _aligned(*table_rows(result))
    if result.layer_sqnr:
        lines += [""] + _aligned(*layer_table(result))
    return "\n".join(lines)


def reference_lines(result) -> list:
    """One line per onnxruntime reference timing (and its note), for the console."""
    lines = []
    for label, entry in (result.reference or {}).items():
        if isinstance(entry, dict):
            accuracy = "" if entry.get("accuracy") is None else f", top-1 {100 * entry['accuracy']:.2f}%"
            lines.append(f"{label}: {entry['images_per_s']:,.0f} img/s (median of {len(entry['runs'])} runs{accuracy})")
    if (result.reference or {}).get("note"):
        lines.append(f"note: {result.reference['note']}")
    return lines


def sensitivity_text(rows, precision: str) -> str:
    """The rows of one sensitivity run as an aligned table."""
    header = ["layer", "op", "drop (pts)", "SQNR dB"]
    body = [[r["layer"], r["op"], f"{r['drop']:+.2f}", f"{r['sqnr_db']:.1f}"] for r in rows]
    return f"sensitivity to {precision} (only that layer quantized)\n" + \
        render_table(header, body, ["left", "left", "right", "right"])


def markdown_table(result) -> str:
    lines = ["## " + _title(result), ""] + ([f"Preprocessing: {result.preprocessing}.", ""] if result.preprocessing
                                            else []) + _markdown(*table_rows(result))
    if result.reference:
        lines += [""] + [f"- {line}" for line in reference_lines(result)]
    if result.layer_sqnr:
        lines += ["", "### Per-layer SQNR (dB) against fp32", ""] + _markdown(*layer_table(result))
    return "\n".join(lines) + "\n"


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_results(result, out_dir) -> list:
    """Write results.json, results.md and results.csv into ``out_dir``; return their paths."""
    out = Path(out_dir)
    doc = result.as_dict()
    write_text(out / "results.json", json.dumps(doc, indent=1) + "\n")
    write_text(out / "results.md", markdown_table(result))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["model", "dataset", "n_test"] + list(doc["results"][0]))
    writer.writeheader()
    for row in doc["results"]:
        writer.writerow({"model": result.model, "dataset": result.dataset, "n_test": result.n_test, **row})
    write_text(out / "results.csv", buffer.getvalue())
    return [out / "results.json", out / "results.md", out / "results.csv"]
