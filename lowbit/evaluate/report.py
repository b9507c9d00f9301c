"""Writing a sweep: results.json, results.md, results.csv, and the console table."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..io.atomic import atomic_path

COLUMNS = [("precision", "precision", "{}"), ("bits", "bits", "{}"), ("accuracy", "accuracy %", "{:.2%}"),
           ("top5", "top-5 %", "{:.2%}"), ("drop", "drop (pts)", "{:+.2f}"), ("agreement", "agree w/ fp32", "{:.2%}"),
           ("size_bytes", "size (bytes)", "{:,}"), ("images_per_s", "img/s", "{:,.0f}"),
           ("calibration_seconds", "calib s", "{:.2f}")]


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt.endswith("%}"):
        return fmt.format(value).replace("%", "")
    return fmt.format(value)


def table_rows(result) -> tuple:
    rows = [[_cell(getattr(r, key), fmt) for key, _, fmt in COLUMNS] for r in result.results]
    return [title for _, title, _ in COLUMNS], rows


def text_table(result) -> str:
    """The sweep as an aligned plain-text table."""
    header, rows = table_rows(result)
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines = [f"{result.model} on {result.dataset} ({result.n_test:,} test samples)", fmt(header),
             fmt(["-" * w for w in widths])]
    return "\n".join(lines + [fmt(r) for r in rows])


def markdown_table(result) -> str:
    header, rows = table_rows(result)
    lines = [f"## {result.model} on {result.dataset} ({result.n_test:,} test samples)", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
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
