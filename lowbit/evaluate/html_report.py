"""``report.html``: one self-contained page to share a sweep.

Inline CSS, the plots as base64 ``data:`` URIs, no scripts and no external
assets, so the file opens offline and can be mailed or attached as it is.
It holds the results table, the onnxruntime reference timings, the plots,
the fp32 model's summary (:meth:`lowbit.Model.summary`), the precision of
every layer in each saved model, the sensitivity data found in the output
folder, the calibration settings and the exact command line.

Every number of the results table is also in its cell's ``data-value``
attribute, exactly as ``results.json`` has it (``tests/test_report_html.py``
reads them back from the rendered page).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..io.atomic import atomic_path
from .report import table_rows

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a; margin: 0;
       background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dde2e7;
padding-bottom: 4px; }
.sub { color: #55606b; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e6e9ed; text-align: right; white-space: nowrap; }
th { background: #f3f5f7; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
tr.included td { background: #fff8e1; }
td.bad { color: #b3261e; } td.good { color: #1b6e34; }
figure { margin: 14px 0; } figure img { max-width: 100%; border: 1px solid #e6e9ed; }
figcaption { color: #55606b; font-size: 12px; }
pre, code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f6f8fa; padding: 10px 12px; overflow-x: auto; border-radius: 4px; }
.note { color: #55606b; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; } dt { font-weight: 600; }
"""

CAPTIONS = {
    "accuracy_vs_bits": "Accuracy drop and disagreement with fp32 against bits per weight (symmetric log axis).",
    "agreement_vs_bits": "Disagreement with fp32 against bits per weight (symmetric log axis).",
    "accuracy_vs_size": "Accuracy drop against model file size, with the Pareto front.",
    "agreement_vs_size": "Disagreement with fp32 against model file size, with the Pareto front.",
    "throughput_vs_bits": "Throughput against bits; dashed: onnxruntime fp32 and int8 on the same images.",
    "sqnr_vs_bits": "Output SQNR against fp32.",
    "sensitivity_heatmap": "Per-layer sensitivity: layers against precisions.",
}


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _table(header, rows, row_attrs=None, cell_attrs=None) -> str:
    """An HTML table; ``row_attrs[i]`` and ``cell_attrs[i][j]`` are attribute strings (already escaped)."""
    out = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        attrs = row_attrs[i] if row_attrs else ""
        cells = "".join(f"<td{cell_attrs[i][j] if cell_attrs else ''}>{_e(c)}</td>" for j, c in enumerate(row))
        out.append(f"<tr{attrs}>{cells}</tr>")
    return "\n".join(out + ["</table>"])


def results_section(result) -> str:
    """The results table with ``data-precision`` rows and ``data-key``/``data-value`` cells."""
    from .report import columns

    header, rows = table_rows(result)
    keys = [key for key, _, _ in columns(result)]
    doc = result.as_dict()["results"]
    row_attrs = [f' data-precision="{_e(r["precision"])}"' + (' class="included"' if "(" in r["precision"] else "")
                 for r in doc]
    cell_attrs = [[f' data-key="{_e(key)}" data-value="{_e(json.dumps(r.get(key)))}"' for key in keys] for r in doc]
    return _table(header, rows, row_attrs, cell_attrs)


def reference_section(result) -> str:
    ref = result.reference or {}
    rows = [[label, f"{entry['images_per_s']:,.0f}",
             "-" if entry.get("accuracy") is None else f"{100 * entry['accuracy']:.2f}",
             ", ".join(f"{r:,.0f}" for r in entry.get("runs", []))]
            for label, entry in ref.items() if isinstance(entry, dict)]
    parts = []
    if rows:
        parts.append(_table(["runtime", "img/s (median)", "accuracy %", "timed runs (img/s)"], rows,
                            [f' data-reference="{_e(r[0])}"' for r in rows]))
    if ref.get("note"):
        parts.append(f'<p class="note">{_e(ref["note"])}</p>')
    return "\n".join(parts) or '<p class="note">Not measured (lowbit eval --no-reference).</p>'


def figures_section(images) -> str:
    parts = []
    for path in images:
        path = Path(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = CAPTIONS.get(path.stem, path.stem.replace("_", " "))
        parts.append(f'<figure><img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{_e(path.name)}: {_e(caption)}</figcaption></figure>")
    return "\n".join(parts)


def _model_file(row):
    path = Path(row.model_file)
    return path if path.is_file() else None


def summary_section(result) -> str:
    """The fp32 model's :meth:`Model.summary` as a table (a note when it cannot be computed)."""
    import lowbit

    fp32 = next((r for r in result.results if r.precision == "fp32"), None)
    path = _model_file(fp32) if fp32 is not None else None
    if path is None:
        return '<p class="note">The fp32 model file is not at hand: no summary.</p>'
    try:
        summary = lowbit.load(path).summary()
    except Exception as exc:  # e.g. dynamic input dims: the summary needs an example input
        return f'<p class="note">No summary: {_e(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}</p>'
    shape = lambda s: "x".join(str(d) for d in s) if s else "-"
    rows = [[r.name, r.op, shape(r.input_shape), shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
             r.precision, f"{r.param_bytes:,}"] for r in summary]
    rows.append(["total", "", "", "", f"{summary.total_params:,}", f"{summary.total_macs:,}", "",
                 f"{summary.total_bytes:,}"])
    return _table(["layer", "op", "input", "output", "params", "MACs / image", "precision", "bytes"], rows)


def layer_precision_section(result) -> str:
    """Layers (of the fp32 graph) against the sweep's rows: each layer's precision in each saved model."""
    import lowbit

    graphs = {}
    for row in result.results:
        path = _model_file(row)
        if path is not None:
            try:
                graphs[row.precision] = {n.name: n.precision for n in lowbit.load(path).graph.nodes}
            except Exception:  # a file changed since the sweep: leave its column out
                continue
    if not graphs:
        return '<p class="note">The saved model files are not at hand.</p>'
    layers = list(dict.fromkeys(name for nodes in graphs.values() for name in nodes))
    rows = [[layer] + [nodes.get(layer, "-") for nodes in graphs.values()] for layer in layers]
    return _table(["layer"] + list(graphs), rows)


def sensitivity_section(result, out_dir) -> str:
    from .plots import sensitivity_table
    from .report import layer_table

    parts = []
    table, title = sensitivity_table(out_dir)
    if table:
        layers = list(dict.fromkeys(layer for cells in table.values() for layer in cells))

        def cell(p, layer):
            c = table[p].get(layer)
            if not c or c.get("sqnr_db") is None:
                return "-"
            return f"{c['drop']:+.2f} pts / {c['sqnr_db']:.1f} dB" if c.get("drop") is not None \
                else f"{c['sqnr_db']:.1f} dB"
        parts.append(f"<p>{_e(title.replace(chr(10), ' '))}: accuracy drop with only that layer quantized / "
                     "SQNR of its output.</p>")
        parts.append(_table(["layer"] + list(table), [[layer] + [cell(p, layer) for p in table] for layer in layers]))
    if result.layer_sqnr:
        parts.append("<p>Per-layer SQNR (dB) against fp32 with the whole model at each precision.</p>")
        parts.append(_table(*layer_table(result)))
    return "\n".join(parts)


def settings_section(result, settings) -> str:
    items = {"calibration method": result.calibration.get("method"),
             "calibration samples": result.calibration.get("samples")}
    items.update(settings or {})
    if result.preprocessing:
        items["preprocessing"] = result.preprocessing
    if result.skipped:
        items["unreadable files skipped"] = result.skipped
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items.items() if v is not None) + "</dl>"


def render(result, out_dir, images=(), command: str = "", settings=None) -> str:
    """The page as a string (see the module docstring)."""
    from .report import _title

    sections = [("Results", results_section(result)), ("onnxruntime reference", reference_section(result)),
                ("Plots", figures_section(images)), ("Model summary (fp32)", summary_section(result)),
                ("Precision of each layer", layer_precision_section(result))]
    sensitivity = sensitivity_section(result, out_dir)
    if sensitivity:
        sections.append(("Sensitivity", sensitivity))
    sections += [("Calibration and settings", settings_section(result, settings)),
                 ("Command", f"<pre>{_e(command or '(not recorded)')}</pre>")]
    body = "\n".join(f'<section id="{_e(title.split()[0].lower())}"><h2>{_e(title)}</h2>\n{content}\n</section>'
                     for title, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>lowbit eval: {_e(result.model)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<h1>lowbit eval: {_e(result.model)}</h1>\n<p class=\"sub\">{_e(_title(result))}</p>\n"
            f"{body}\n</main>\n</body>\n</html>\n")


def write_html(result, out_dir, images=(), command: str = "", settings=None) -> Path:
    """Write ``out_dir/report.html`` atomically; return its path."""
    path = Path(out_dir) / "report.html"
    text = render(result, out_dir, images, command, settings)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
