"""Plots of a sweep (matplotlib, Agg backend): accuracy vs bits, vs size, and throughput vs bits.

Without labels the accuracy plots show the agreement with fp32 instead
(``agreement_vs_bits.png``, ``agreement_vs_size.png``), and an SQNR plot
(``sqnr_vs_bits.png``) is added.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

from ..io.atomic import atomic_path


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


def _per_bits(ax, rows, value, label, color, annotate=True):
    """Scatter every precision; join the best value at each bit width with a line."""
    xs, ys = [r.bits for r in rows], [value(r) for r in rows]
    ax.scatter(xs, ys, color=color, zorder=3)
    if annotate:
        _annotate(ax, xs, ys, [r.precision for r in rows])
    best = {}
    for x, y in zip(xs, ys):
        best[x] = max(best.get(x, y), y)
    bits = sorted(best)
    ax.plot(bits, [best[b] for b in bits], color=color, label=f"{label} (best per bit width)")


def _annotate(ax, xs, ys, labels):
    """Label points; points that share an x get one stacked label, best first, with their values."""
    groups = {}
    for x, y, label in zip(xs, ys, labels):
        groups.setdefault(x, []).append((y, label))
    for x, items in groups.items():
        items.sort(reverse=True)
        if len(items) == 1:
            ax.annotate(items[0][1], (x, items[0][0]), textcoords="offset points", xytext=(4, 4), fontsize=8)
            continue
        text = "\n".join(f"{label} {y:,.4g}" for y, label in items)
        ax.annotate(text, (x, items[-1][0]), textcoords="offset points", xytext=(5, -4), fontsize=7,
                    va="top", bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="0.8", alpha=0.85))


def _against_bits(results, path, value, ylabel, title) -> Path:
    """One panel of ``value(row)`` against bits (log2 x-axis), one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = _series(results)
    for i, (label, rows) in enumerate(series.items()):
        _per_bits(ax, rows, value, label, f"C{i}", annotate=len(series) == 1)
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8, 16, 32], labels=["1", "2", "4", "8", "16", "32"])
    ax.set_xlabel("bits per weight (log2 scale; ternary keeps 8-bit activations)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    path = _save(fig, path)
    plt.close(fig)
    return path


def _labelled(results) -> bool:
    return all(r.accuracy is not None for result in results for r in result.results)


def _quality(results) -> tuple:
    """``(value(row), axis label, name)``: top-1 accuracy with labels, else agreement with fp32."""
    if _labelled(results):
        return lambda r: 100 * r.accuracy, "top-1 accuracy (%)", "Accuracy"
    per_position = any(result.output != "scores" for result in results)
    return (lambda r: 100 * (r.agreement or 0.0),
            "argmax agreement with fp32 (%, per position)" if per_position else "top-1 agreement with fp32 (%)",
            "Agreement")


def plot_accuracy_vs_bits(results, path) -> Path:
    """Top-1 accuracy (%) against bits per weight, log2 x-axis, one line per model (agreement without labels)."""
    value, ylabel, name = _quality(results)
    return _against_bits(results, path, value, ylabel, f"{name} vs precision")


def plot_sqnr_vs_bits(results, path) -> Path:
    """Output SQNR (dB) against bits; rows with identical outputs (infinite SQNR) are left out."""
    finite = [copy.copy(result) for result in results]
    for result in finite:
        result.results = [r for r in result.results if r.sqnr_db is not None and math.isfinite(r.sqnr_db)]
    return _against_bits(finite, path, lambda r: r.sqnr_db, "output SQNR against fp32 (dB)", "SQNR vs precision")


def plot_accuracy_vs_size(results, path) -> Path:
    """Top-1 accuracy (%) against model file size (KiB, log x-axis); the line is each model's Pareto front.

    Without labels: the agreement with fp32.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    value, ylabel, name = _quality(results)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = _series(results)
    for i, (label, rows) in enumerate(series.items()):
        rows = sorted(rows, key=lambda r: r.size_bytes)
        xs, ys = [r.size_bytes / 1024 for r in rows], [value(r) for r in rows]
        ax.scatter(xs, ys, color=f"C{i}", zorder=3)
        front, best = [], -1.0
        for x, y in zip(xs, ys):
            if y > best:
                front.append((x, y))
                best = y
        ax.plot(*zip(*front), color=f"C{i}", label=f"{label} (best {name.lower()} up to each size)")
        if len(series) == 1:
            for k, (x, y, r) in enumerate(zip(xs, ys, rows)):
                ax.annotate(r.precision, (x, y), textcoords="offset points", fontsize=8,
                            xytext=(4, 6 if k % 2 == 0 else -12))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("model file size (KiB, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{name} vs model size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_throughput_vs_bits(results, path) -> Path:
    """Images per second against bits (log2 x-axis), one line per model."""
    return _against_bits(results, path, lambda r: r.images_per_s, "throughput (images / s)",
                         "Inference speed vs precision")


def plot_sensitivity(rows, precision: str, path) -> Path:
    """Horizontal bars: accuracy drop per layer when only that layer is quantized; SQNR annotated."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    names = [r["layer"] for r in rows]
    drops = [r["drop"] for r in rows]
    ax.barh(names, drops, color=["tab:red" if d > 0.1 + 1e-9 else "tab:blue" for d in drops])
    for i, r in enumerate(rows):
        ax.annotate(f"SQNR {r['sqnr_db']:.1f} dB", (max(drops[i], 0), i), xytext=(4, -3),
                    textcoords="offset points", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"accuracy drop (points) with only this layer at {precision} (red: more than 0.1)")
    ax.set_title(f"Per-layer sensitivity to {precision}")
    ax.grid(True, axis="x", alpha=0.3)
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_sweep(results, out_dir) -> list:
    """The sweep plots into ``out_dir``: three with labels, agreement and SQNR ones without."""
    out = Path(out_dir)
    quality = "accuracy" if _labelled(results) else "agreement"
    paths = [plot_accuracy_vs_bits(results, out / f"{quality}_vs_bits.png"),
             plot_accuracy_vs_size(results, out / f"{quality}_vs_size.png"),
             plot_throughput_vs_bits(results, out / "throughput_vs_bits.png")]
    if not _labelled(results) and any(r.sqnr_db is not None and math.isfinite(r.sqnr_db)
                                      for result in results for r in result.results):
        paths.append(plot_sqnr_vs_bits(results, out / "sqnr_vs_bits.png"))
    return paths
