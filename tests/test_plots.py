"""Sweep plots: axes that separate small losses, readable ticks, labels that never overlap, reference lines."""
import json

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from lowbit.evaluate import plots  # noqa: E402
from lowbit.evaluate.sweep import PrecisionResult, SweepResult  # noqa: E402


def row(precision, bits, accuracy, size, rate, agreement=None):
    return PrecisionResult(precision=precision, bits=bits, accuracy=accuracy, top5=1.0, drop=100 * (0.9952 - accuracy),
                           agreement=agreement if agreement is not None else accuracy / 0.9952, size_bytes=size,
                           images_per_s=rate, calibration_seconds=0.0, compile_seconds=0.0, overflow=0,
                           model_file="-")


def seed_like(reference=None):
    """The committed deep_convnet sweep's numbers (MNIST test, 10,000 images)."""
    rows = [row("fp32", 32, 0.9952, 460971, 4528), row("fp16", 16, 0.9952, 230472, 3727),
            row("bf16", 16, 0.9952, 198641, 3831), row("fp8-e4m3", 8, 0.9945, 104639, 1754),
            row("fp8-e5m2", 8, 0.9935, 91606, 1831), row("int8", 8, 0.9950, 120012, 9690),
            row("int4", 4, 0.9937, 56229, 10683), row("int2", 2, 0.1023, 17869, 10921),
            row("ternary", 2, 0.9732, 31612, 9765), row("binary", 1, 0.0892, 22430, 15950),
            row("binary (fine-tuned)", 1, 0.9906, 22685, 14452)]
    return SweepResult(model="deep_convnet", dataset="MNIST", n_test=10000, results=rows, reference=reference or {})


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, kept open for inspection."""
    kept, close = [], plt.close

    def keep(fig, path):
        fig.canvas.draw()
        kept.append(fig)
        return path
    monkeypatch.setattr(plots, "_save", keep)
    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    yield kept
    for fig in kept:
        close(fig)


def _pixel_y(ax, value):
    return ax.transData.transform((8, value))[1]


def test_drop_axis_separates_002_015_and_22_points(figures):
    plots.plot_accuracy_vs_bits([seed_like()], "unused.png")
    drop_axis, disagreement_axis = figures[0].axes[:2]
    assert drop_axis.get_yscale() == "symlog" and disagreement_axis.get_yscale() == "symlog"
    y = [_pixel_y(drop_axis, v) for v in (0.0, 0.02, 0.15, 2.2)]
    gaps = np.diff(y)
    assert (gaps > 25).all(), gaps  # at least 25 pixels between each (a linear 0-100 axis gives < 1)
    labels = [t.get_text() for t in drop_axis.get_yticklabels()]
    assert {"0", "0.01", "0.1", "1", "10", "100"} <= set(labels)


def _label_extents(ax):
    return [Text.get_window_extent(t) for t in ax.texts]


def _assert_no_overlap(ax):
    boxes = _label_extents(ax)
    assert boxes, "no labels drawn"
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (ax.texts[i].get_text(), ax.texts[j].get_text())


def test_labels_never_overlap_and_every_point_is_named(figures):
    plots.plot_accuracy_vs_bits([seed_like()], "a.png")
    plots.plot_accuracy_vs_size([seed_like()], "b.png")
    plots.plot_throughput_vs_bits([seed_like()], "c.png")
    for fig in figures:
        ax = fig.axes[0]
        _assert_no_overlap(ax)
        names = " ".join(t.get_text() for t in ax.texts)
        for precision in ("fp8-e5m2", "int8", "fp16", "bf16", "binary (fine-tuned)"):
            assert precision in names


def test_label_placement_is_deterministic():
    def positions():
        fig, ax = plt.subplots()
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 10)
        notes = plots.place_labels(ax, [(5, 5)] * 4 + [(5.2, 5.1), (9.9, 9.9)], [f"label {i}" for i in range(6)])
        fig.canvas.draw()
        out = [n.xyann for n in notes]
        boxes = [Text.get_window_extent(n) for n in notes]
        plt.close(fig)
        return out, boxes
    first, boxes = positions()
    assert first == positions()[0]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j])


def test_size_axis_has_several_readable_byte_ticks(figures):
    plots.plot_accuracy_vs_size([seed_like()], "unused.png")
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) >= 4 and all(label.endswith((" KB", " MB")) for label in labels), labels
    assert "100 KB" in labels


def test_pareto_front_and_byte_units():
    assert plots.pareto_front([(3, 1.0), (1, 90.0), (2, 0.5), (4, 0.5), (5, 0.0)]) == [(1, 90.0), (2, 0.5), (5, 0.0)]
    assert [plots.human_bytes(n) for n in (512, 22685, 460971, 2_300_000)] == ["512 B", "22.7 KB", "461 KB", "2.3 MB"]


def test_throughput_draws_the_onnxruntime_reference_lines(figures):
    reference = {"onnxruntime fp32": {"images_per_s": 8000.0, "runs": [8000.0], "accuracy": 0.9952},
                 "onnxruntime int8 (QDQ, per-channel)": {"images_per_s": 12000.0, "runs": [12000.0], "accuracy": 0.995}}
    plots.plot_throughput_vs_bits([seed_like(reference)], "unused.png")
    ax = figures[0].axes[0]
    assert ax.get_yscale() == "log"
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert sorted(line.get_ydata()[0] for line in dashed) == [8000.0, 12000.0]
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "onnxruntime fp32: 8,000 img/s" in legend and "onnxruntime int8" in legend
    assert len([t for t in ax.get_yticklabels(minor=True) if t.get_text()]) >= 2  # not a single "10,000"


def test_heatmap_from_the_sensitivity_files_in_the_folder(tmp_path):
    for precision, drops in (("int4", [0.01, 0.2]), ("int2", [3.0, 40.0])):
        rows = [{"layer": name, "op": "Conv", "accuracy": 0.99, "drop": d, "sqnr_db": 20.0 - 5 * d ** 0.5}
                for name, d in zip(("conv1", "fc1"), drops)]
        (tmp_path / f"sensitivity_{precision}.json").write_text(json.dumps({"precision": precision, "layers": rows}))
    table, title = plots.sensitivity_table(tmp_path)
    assert list(table) == ["int4", "int2"] and table["int2"]["fc1"]["drop"] == 40.0
    paths = plots.plot_sweep([seed_like()], tmp_path)
    assert tmp_path / "sensitivity_heatmap.png" in paths
    from PIL import Image

    with Image.open(tmp_path / "sensitivity_heatmap.png") as image:
        assert image.size[0] > 200 and image.size[1] > 150


def test_unlabelled_sweeps_plot_disagreement_only(tmp_path):
    result = seed_like()
    for r in result.results:
        r.accuracy = r.top5 = r.drop = None
    result.labelled = False
    names = [p.name for p in plots.plot_sweep([result], tmp_path)]
    assert names[:3] == ["agreement_vs_bits.png", "agreement_vs_size.png", "throughput_vs_bits.png"]
