"""Plots of a sweep (matplotlib, Agg backend).

What matters in a sweep is the *loss* against fp32, which spans four orders
of magnitude (0.01 points for int8, 2 for ternary, 90 for a post-training
binary net), so the quality plots draw the accuracy drop and the
disagreement with fp32 on a symmetric log axis (linear through 0, so a
zero drop and a small gain still show):

* ``accuracy_vs_bits.png`` — drop (points) and disagreement with fp32 (% of
  samples whose top-1 differs) against bits per weight;
* ``accuracy_vs_size.png`` — drop against file size (KB/MB), with the Pareto
  front (no smaller file has a smaller drop);
* ``throughput_vs_bits.png`` — images/s (log axis), onnxruntime's fp32 and
  int8 as dashed reference lines when the sweep measured them;
* ``sensitivity_heatmap.png`` — per-layer SQNR (and drop) for each
  precision, from the sensitivity runs or the per-layer SQNR of the sweep.

Without labels the quality plots show only the disagreement
(``agreement_vs_bits.png``, ``agreement_vs_size.png``) and an SQNR plot
(``sqnr_vs_bits.png``) is added.  Labels of the points are placed by
:func:`place_labels`: deterministic, pushed apart until no two overlap.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

from ..io.atomic import atomic_path

LINTHRESH = 0.01  # points / %: the linear part of the symlog axes (the resolution of a 10,000-sample test set)
BITS = [1, 2, 4, 8, 16, 32]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return Path(path)


def _series(results):
    """Group rows by model label: ``{label: [rows]}``."""
    groups = {}
    for result in results:
        groups.setdefault(result.model, []).extend(result.results)
    return groups


def _included(row) -> bool:
    """A row of an included model (``binary (fine-tuned)``), not a post-training precision."""
    return "(" in row.precision


def _labelled(results) -> bool:
    return all(r.accuracy is not None for result in results for r in result.results)


def _drop(row):
    return row.drop


def _disagreement(row):
    return None if row.agreement is None else 100.0 * (1.0 - row.agreement)


# --- axes ------------------------------------------------------------------------------------------------------

def _tick_label(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:g}" if abs(value) < 1000 else f"{value:,.0f}"


def symlog_axis(ax, values, linthresh: float = LINTHRESH) -> None:
    """A symmetric log y-axis over ``values`` with 1-3-10 ticks: 0.02, 0.15 and 2.2 fall at distinct heights."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    finite = [v for v in values if v is not None and math.isfinite(v)] or [0.0]
    top, bottom = max(max(finite), linthresh), min(min(finite), 0.0)
    ax.set_yscale("symlog", linthresh=linthresh, linscale=0.6)
    steps = [round(linthresh * m * 10 ** k, 12) for k in range(8) for m in (1, 3)]
    up = [t for t in steps if t < top] + [next(t for t in steps if t >= top)]
    down = [t for t in steps if t < -bottom] + ([next(t for t in steps if t >= -bottom)] if bottom < 0 else [])
    ticks = [-t for t in reversed(down[::2] if len(down) > 4 else down)] + [0.0] + up
    top, bottom = max(top, up[-1]), min(bottom, -down[-1] if down else 0.0)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(_formatter(_tick_label))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(_symlog_pad(bottom, linthresh, below=True), _symlog_pad(top, linthresh))


def _symlog_pad(value, linthresh, below=False):
    """A limit a little beyond ``value`` on a symlog axis (a factor outside the linear part)."""
    if below:
        return -linthresh * 0.5 if value >= 0 else value * 1.6
    return value * 1.6 if value > linthresh else linthresh * 1.5


def _formatter(fn):
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: fn(v))


def bits_axis(ax) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(BITS, labels=[str(b) for b in BITS])
    ax.set_xlim(0.75, 45)
    ax.set_xlabel("bits per weight (log2; ternary keeps 8-bit activations)")


def human_bytes(n: float) -> str:
    """``1.5 KB``, ``120 KB``, ``2.3 MB`` (1 KB = 1,000 bytes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{n:.0f} B"


def bytes_axis(ax, sizes) -> None:
    """Log x-axis of bytes with 1-2-5 ticks written in KB / MB."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    lo, hi = min(sizes), max(sizes)
    ax.set_xscale("log")
    ticks, decade = [], 10 ** math.floor(math.log10(lo))
    while decade <= hi * 10:
        ticks += [m * decade for m in (1, 2, 5)]
        decade *= 10
    ax.set_xlim(lo / 1.5, hi * 2.5)  # room for the labels right of the largest files
    inside = [t for t in ticks if lo / 1.5 <= t <= hi * 2.5]
    if len(inside) > 9:  # a wide range: decades only
        inside = [t for t in inside if str(int(t)).startswith("1")]
    ax.xaxis.set_major_locator(FixedLocator(inside))
    ax.xaxis.set_major_formatter(_formatter(human_bytes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("model file size (log scale; 1 KB = 1,000 bytes)")


# --- labels ----------------------------------------------------------------------------------------------------

def place_labels(ax, points, texts, fontsize: float = 7.5, pad_px: float = 2.0, marker_px: float = 5.0) -> list:
    """Annotate ``points`` (data coordinates) with ``texts`` so that no label overlaps another or a marker.

    Labels are placed one at a time, lowest point first (ties: left first,
    then input order); each takes the first free spot among: right of its
    point, left of it, then right/left a step higher or lower, two steps, ...
    up to 12 steps, inside the axes.  The same input gives the same picture
    on every run.  A label away from its point gets a thin leader line.
    Returns the annotations.
    """
    if not points:
        return []
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    anchors = [tuple(ax.transData.transform(p)) for p in points]
    sizes = []
    for text in texts:
        probe = ax.annotate(text, (0.5, 0.5), xycoords="axes fraction", fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((extent.width + 2, extent.height + 1))
    markers = [(x - marker_px, y - marker_px, x + marker_px, y + marker_px) for x, y in anchors]
    placed = []

    def free(box):
        x0, y0, x1, y1 = box
        if x0 < frame.x0 + 1 or x1 > frame.x1 - 1 or y0 < frame.y0 + 1 or y1 > frame.y1 - 1:
            return False
        return not any(x0 < b[2] + pad_px and b[0] < x1 + pad_px and y0 < b[3] + pad_px and b[1] < y1 + pad_px
                       for b in placed + markers)

    order = sorted(range(len(points)), key=lambda i: (anchors[i][1], anchors[i][0], i))
    boxes = [None] * len(points)
    for i in order:
        (px, py), (w, h) = anchors[i], sizes[i]
        candidates = []
        for step in range(13):
            for sign in ((0,) if step == 0 else (1, -1)):
                dy = sign * step * (h * 0.75)
                gap = marker_px + pad_px + 1
                candidates += [(px + gap, py + dy - h / 2), (px - gap - w, py + dy - h / 2)]
        spot = next(((x, y) for x, y in candidates if free((x, y, x + w, y + h))), candidates[0])
        boxes[i] = (spot[0], spot[1], spot[0] + w, spot[1] + h)
        placed.append(boxes[i])
    scale = 72.0 / fig.dpi
    notes = []
    for (px, py), box, text, point in zip(anchors, boxes, texts, points):
        x0, y0, x1, y1 = box
        left = x1 <= px
        dx, dy = (x1 if left else x0) - px, (y0 + y1) / 2 - py
        far = abs(dy) > (y1 - y0) * 0.6
        notes.append(ax.annotate(text, point, xytext=(dx * scale, dy * scale), textcoords="offset points",
                                 fontsize=fontsize, va="center", ha="right" if left else "left",
                                 bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.75),
                                 arrowprops=dict(arrowstyle="-", lw=0.5, color="0.55", shrinkA=0, shrinkB=2)
                                 if far else None))
    return notes


def _legend(ax) -> None:
    """The legend under the axes, where it cannot cover a point or a label."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=min(3, len(handles)),
                  frameon=False)


def _scatter_rows(ax, rows, xs, ys, color, label=None):
    """Post-training rows as dots, included (fine-tuned) rows as stars."""
    plain = [(x, y) for r, x, y in zip(rows, xs, ys) if not _included(r)]
    extra = [(x, y) for r, x, y in zip(rows, xs, ys) if _included(r)]
    if plain:
        ax.scatter(*zip(*plain), color=color, zorder=3, s=22)
    if extra:
        ax.scatter(*zip(*extra), color=color, marker="*", s=110, zorder=4, edgecolors="black", linewidths=0.5,
                   label=label)


def _best_line(ax, xs, ys, color, label, lower_is_better=True):
    best = {}
    for x, y in zip(xs, ys):
        best[x] = (min if lower_is_better else max)(best.get(x, y), y)
    bits = sorted(best)
    ax.plot(bits, [best[b] for b in bits], color=color, lw=1.2, alpha=0.8, label=label)


def _value_label(row, value, unit) -> str:
    return f"{row.precision} {value:+.2f}{unit}" if unit == " pts" else f"{row.precision} {value:.2f}{unit}"


def _quality_panel(ax, results, value, ylabel, unit, annotate):
    series = _series(results)
    everything = []
    for i, (label, rows) in enumerate(series.items()):
        kept = [r for r in rows if value(r) is not None]
        xs, ys = [r.bits for r in kept], [value(r) for r in kept]
        everything += ys
        _scatter_rows(ax, kept, xs, ys, f"C{i}", label="fine-tuned / included" if i == 0 else None)
        _best_line(ax, xs, ys, f"C{i}", f"{label} (best per bit width)" if len(series) > 1 else "best per bit width")
    symlog_axis(ax, everything)
    bits_axis(ax)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    rows = [r for rows in series.values() for r in rows if value(r) is not None]
    return ([(r.bits, value(r)) for r in rows], [_value_label(r, value(r), unit) for r in rows]) if annotate else None


def plot_accuracy_vs_bits(results, path) -> Path:
    """Accuracy drop (points) and disagreement with fp32 (%) against bits, symlog y (disagreement only without labels)."""
    plt = _pyplot()
    labelled = _labelled(results)
    panels = [(_drop, "top-1 accuracy drop vs fp32 (points, symlog)", " pts")] if labelled else []
    per_position = any(result.output != "scores" for result in results)
    panels.append((_disagreement, "disagreement with fp32 (% of " + ("positions" if per_position else "samples")
                   + ", symlog)", " %"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 5.2), squeeze=False)
    single = len(_series(results)) == 1
    labels = []
    for ax, (value, ylabel, unit) in zip(axes[0], panels):
        labels.append(_quality_panel(ax, results, value, ylabel, unit, annotate=single))
    names = ", ".join(_series(results))
    fig.suptitle(f"Loss against fp32 by precision ({names}; lower is better)" if single else
                 "Loss against fp32 by precision (lower is better)")
    fig.tight_layout()
    handles, names = axes[0][0].get_legend_handles_labels()  # one legend under both panels (they share it)
    fig.legend(handles, names, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(handles)),
               frameon=False)
    for ax, placed in zip(axes[0], labels):
        if placed:
            place_labels(ax, *placed)
    path = _save(fig, path)
    plt.close(fig)
    return path


def pareto_front(points) -> list:
    """The ``(size, loss)`` points that no smaller-or-equal file beats: sorted by size, loss strictly falling."""
    front, best = [], math.inf
    for size, loss in sorted(points):
        if loss < best:
            front.append((size, loss))
            best = loss
    return front


def plot_accuracy_vs_size(results, path) -> Path:
    """Accuracy drop (disagreement without labels) against file size, symlog y, KB/MB log x, the Pareto front."""
    plt = _pyplot()
    value, ylabel = (_drop, "top-1 accuracy drop vs fp32 (points, symlog)") if _labelled(results) else \
        (_disagreement, "disagreement with fp32 (%, symlog)")
    unit = " pts" if value is _drop else " %"
    fig, ax = plt.subplots(figsize=(8, 5.2))
    series = _series(results)
    everything, sizes = [], []
    for i, (label, rows) in enumerate(series.items()):
        kept = [r for r in rows if value(r) is not None]
        xs, ys = [r.size_bytes for r in kept], [value(r) for r in kept]
        everything += ys
        sizes += xs
        _scatter_rows(ax, kept, xs, ys, f"C{i}", label="fine-tuned / included" if i == 0 else None)
        front = pareto_front(list(zip(xs, ys)))
        ax.step(*zip(*front), where="post", color=f"C{i}", lw=1.2, alpha=0.8,
                label=f"{label}: Pareto front" if len(series) > 1 else "Pareto front (no smaller file loses less)")
    symlog_axis(ax, everything)
    bytes_axis(ax, sizes or [1])
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    _legend(ax)
    ax.set_title("Loss against fp32 vs model size (lower left is better)")
    if len(series) == 1:
        rows = [r for r in next(iter(series.values())) if value(r) is not None]
        place_labels(ax, [(r.size_bytes, value(r)) for r in rows],
                     [f"{r.precision} ({human_bytes(r.size_bytes)})" for r in rows])
    path = _save(fig, path)
    plt.close(fig)
    return path


def _reference_lines(results) -> list:
    """``[(label, img/s)]`` of the onnxruntime timings of a one-model sweep."""
    if len(results) != 1:
        return []
    return [(label, entry["images_per_s"]) for label, entry in results[0].reference.items()
            if isinstance(entry, dict) and entry.get("images_per_s")]


def plot_throughput_vs_bits(results, path) -> Path:
    """Images per second against bits (log y), onnxruntime fp32 / int8 as dashed lines when measured."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    series = _series(results)
    everything = []
    for i, (label, rows) in enumerate(series.items()):
        xs, ys = [r.bits for r in rows], [r.images_per_s for r in rows]
        everything += ys
        _scatter_rows(ax, rows, xs, ys, f"C{i}", label="fine-tuned / included" if i == 0 else None)
        _best_line(ax, xs, ys, f"C{i}", f"{label} (fastest per bit width)" if len(series) > 1 else
                   "fastest per bit width", lower_is_better=False)
    references = _reference_lines(results)
    for k, (label, rate) in enumerate(references):
        ax.axhline(rate, color=["0.25", "tab:red"][k % 2], ls="--", lw=1.1, label=f"{label}: {rate:,.0f} img/s")
        everything.append(rate)
    ax.set_yscale("log")
    lo, hi = min(everything), max(everything)
    ax.set_ylim(lo / 1.5, hi * 1.6)
    # label 2 and 5 (and 3 on a short range) of each decade as well: a log axis with one label reads as linear
    mantissas = ("2", "3", "5") if hi / lo < 20 else ("2", "5") if hi / lo < 1000 else ()
    ax.yaxis.set_major_formatter(_formatter(_tick_label))
    ax.yaxis.set_minor_formatter(_formatter(lambda v: _tick_label(v) if f"{v:.0e}"[0] in mantissas else ""))
    bits_axis(ax)
    ax.set_ylabel("throughput (images / s, log scale)")
    ax.grid(True, which="both", alpha=0.25)
    _legend(ax)
    note = results[0].reference.get("note") if len(results) == 1 else None
    ax.set_title("Inference speed by precision" + (f"\n({note})" if note else ""), fontsize=11 if not note else 9)
    if len(series) == 1:
        rows = next(iter(series.values()))
        place_labels(ax, [(r.bits, r.images_per_s) for r in rows],
                     [f"{r.precision} {r.images_per_s:,.0f}" for r in rows])
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_sqnr_vs_bits(results, path) -> Path:
    """Output SQNR (dB) against bits; rows with identical outputs (infinite SQNR) are left out."""
    plt = _pyplot()
    finite = [copy.copy(result) for result in results]
    for result in finite:
        result.results = [r for r in result.results if r.sqnr_db is not None and math.isfinite(r.sqnr_db)]
    fig, ax = plt.subplots(figsize=(8, 5.2))
    series = _series(finite)
    for i, (label, rows) in enumerate(series.items()):
        xs, ys = [r.bits for r in rows], [r.sqnr_db for r in rows]
        _scatter_rows(ax, rows, xs, ys, f"C{i}")
        if rows:
            _best_line(ax, xs, ys, f"C{i}", f"{label} (best per bit width)", lower_is_better=False)
    bits_axis(ax)
    ax.set_ylabel("output SQNR against fp32 (dB, higher is better)")
    ax.set_title("SQNR by precision (identical outputs left out)")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    if len(series) == 1:
        rows = next(iter(series.values()))
        place_labels(ax, [(r.bits, r.sqnr_db) for r in rows], [f"{r.precision} {r.sqnr_db:.1f} dB" for r in rows])
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_sensitivity(rows, precision: str, path) -> Path:
    """Horizontal bars: accuracy drop per layer when only that layer is quantized (symlog); SQNR annotated."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.6))
    names = [r["layer"] for r in rows]
    drops = [r["drop"] for r in rows]
    ax.barh(names, drops, color=["tab:red" if d > 0.1 + 1e-9 else "tab:blue" for d in drops])
    ax.invert_yaxis()
    from matplotlib.ticker import FixedLocator

    ax.set_xscale("symlog", linthresh=LINTHRESH, linscale=0.6)
    top = max([LINTHRESH] + drops)
    ticks = [0.0] + [t for t in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100) if t <= top * 3]
    if min(drops + [0]) < 0:
        ticks = [-0.1, -0.01] + ticks
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(_formatter(_tick_label))
    ax.set_xlim(min(min(drops + [0]) * 1.6, -LINTHRESH * 0.5), top * 6)
    for i, r in enumerate(rows):
        ax.annotate(f"{r['drop']:+.2f} pts, SQNR {r['sqnr_db']:.1f} dB", (max(drops[i], 0), i), xytext=(4, -3),
                    textcoords="offset points", fontsize=8)
    ax.set_xlabel(f"accuracy drop (points, symlog) with only this layer at {precision} (red: more than 0.1)")
    ax.set_title(f"Per-layer sensitivity to {precision}")
    ax.grid(True, axis="x", alpha=0.3)
    path = _save(fig, path)
    plt.close(fig)
    return path


SENSITIVITY_NOTE = ("-: the layer's output equals fp32's (it stays fp32). Below 8 bits the first and last weighted "
                    "layers stay int8 by default\n(fp32 for binary), so their cells show that, not the column's "
                    "precision.")


def plot_sensitivity_heatmap(table: dict, path, title: str = "Per-layer sensitivity", note: str = "") -> Path:
    """Heatmap of layers (rows) × precisions (columns).

    ``table`` is ``{precision: {layer: {"sqnr_db": dB, "drop": points or None}}}``;
    the colour is the SQNR (dB, higher is better), each cell shows the SQNR
    and, when measured, the accuracy drop with only that layer quantized.
    """
    import numpy as np

    plt = _pyplot()
    precisions = list(table)
    layers = list(dict.fromkeys(layer for cells in table.values() for layer in cells))
    grid = np.full((len(layers), len(precisions)), np.nan)
    for j, p in enumerate(precisions):
        for i, layer in enumerate(layers):
            value = table[p].get(layer, {}).get("sqnr_db")
            if value is not None and math.isfinite(value):
                grid[i, j] = value
    fig, ax = plt.subplots(figsize=(1.3 * len(precisions) + 3.2, 0.42 * len(layers) + 1.8))
    finite = grid[np.isfinite(grid)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", vmin=vmin,
                      vmax=vmax if vmax > vmin else vmin + 1)
    ax.set_xticks(range(len(precisions)), labels=precisions, rotation=30, ha="right")
    ax.set_yticks(range(len(layers)), labels=layers)
    for i, layer in enumerate(layers):
        for j, p in enumerate(precisions):
            cell = table[p].get(layer, {})
            if not np.isfinite(grid[i, j]):
                ax.text(j, i, "-", ha="center", va="center", fontsize=7, color="0.4")
                continue
            text = f"{grid[i, j]:.1f} dB"
            if cell.get("drop") is not None:
                text += f"\n{cell['drop']:+.2f} pts"
            dark = (grid[i, j] - vmin) / max(vmax - vmin, 1e-9) < 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, label="SQNR of the layer's output vs fp32 (dB)")
    ax.set_title(title, fontsize=10)
    if note:
        ax.annotate(note, (0, 0), xycoords="axes fraction", xytext=(0, -42), textcoords="offset points",
                    fontsize=7, color="0.3", va="top")
    path = _save(fig, path)
    plt.close(fig)
    return path


def sensitivity_table(out_dir, result=None) -> tuple:
    """``(table, title)`` for :func:`plot_sensitivity_heatmap` from ``sensitivity_*.json`` in ``out_dir``.

    Without sensitivity files, the per-layer SQNR of ``result`` (a streamed
    sweep) is used; ``({}, "")`` when neither exists.
    """
    import json

    table = {}
    for file in sorted(Path(out_dir).glob("sensitivity_*.json")):
        try:
            doc = json.loads(file.read_text())
            table[doc["precision"]] = {r["layer"]: {"sqnr_db": r.get("sqnr_db"), "drop": r.get("drop")}
                                       for r in doc["layers"]}
        except (ValueError, KeyError, TypeError):
            continue  # not a sensitivity file of lowbit's
    if table:
        return _ordered_by_bits(table), "Per-layer sensitivity\n(only that layer quantized: SQNR of its output, accuracy drop)"
    if result is not None and result.layer_sqnr:
        table = {p: {layer: {"sqnr_db": v, "drop": None} for layer, v in rows.items()}
                 for p, rows in result.layer_sqnr.items()}
        return table, "Per-layer SQNR against fp32\n(whole model at each precision)"
    return {}, ""


def _ordered_by_bits(table: dict) -> dict:
    from ..formats.precision import get as get_precision

    def bits(name):
        try:
            return -get_precision(name).bits
        except ValueError:
            return 0
    return {p: table[p] for p in sorted(table, key=lambda p: (bits(p), p))}


def plot_sweep(results, out_dir) -> list:
    """The sweep plots into ``out_dir`` (see the module docstring); the heatmap when sensitivity data exists."""
    out = Path(out_dir)
    quality = "accuracy" if _labelled(results) else "agreement"
    paths = [plot_accuracy_vs_bits(results, out / f"{quality}_vs_bits.png"),
             plot_accuracy_vs_size(results, out / f"{quality}_vs_size.png"),
             plot_throughput_vs_bits(results, out / "throughput_vs_bits.png")]
    if not _labelled(results) and any(r.sqnr_db is not None and math.isfinite(r.sqnr_db)
                                      for result in results for r in result.results):
        paths.append(plot_sqnr_vs_bits(results, out / "sqnr_vs_bits.png"))
    if len(results) == 1:
        table, title = sensitivity_table(out, results[0])
        if table:
            note = SENSITIVITY_NOTE if title.startswith("Per-layer sensitivity") else ""
            paths.append(plot_sensitivity_heatmap(table, out / "sensitivity_heatmap.png", title, note))
    return paths
