"""report.html: one self-contained page; it renders in headless Chromium and shows results.json's numbers."""
import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import lowbit
from lowbit.cli import main
from lowbit.data import mnist
from lowbit.zoo import MODELS_DIR

FINETUNED = MODELS_DIR / "deep_convnet_binary.lowbit"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["eval", "--precisions", "fp32,int8,binary", "--include", str(FINETUNED), "--limit", "300",
                 "--calibration-size", "100", "--out", str(out)]) == 0
    return out


class Cells(HTMLParser):
    """``{precision: {key: (data-value, text)}}`` of the results table, and every src/href."""

    def __init__(self):
        super().__init__()
        self.rows, self.links, self._row, self._cell = {}, [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "tr" and "data-precision" in attrs:
            self._row = self.rows.setdefault(attrs["data-precision"], {})
        elif tag == "td" and self._row is not None and "data-key" in attrs:
            self._cell = [attrs["data-key"], attrs["data-value"], ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            key, value, text = self._cell
            self._row[key] = (json.loads(value), text.strip())
            self._cell = None
        elif tag == "tr":
            self._row = None


def parse(text: str) -> Cells:
    cells = Cells()
    cells.feed(text)
    return cells


def assert_numbers_match(cells: Cells, doc: dict):
    """Each row's numbers, as stored and as shown, are results.json's (formats written out here, not imported)."""
    assert list(cells.rows) == [r["precision"] for r in doc["results"]]
    shown = {"accuracy": lambda v: f"{100 * v:.2f}", "drop": lambda v: f"{v:+.2f}", "size_bytes": lambda v: f"{v:,}",
             "agreement": lambda v: f"{100 * v:.2f}", "bits": str, "images_per_s": lambda v: f"{v:,.0f}"}
    for row in doc["results"]:
        cell = cells.rows[row["precision"]]
        for key, fmt in shown.items():
            value, text = cell[key]
            assert value == row[key], (row["precision"], key)
            assert text == fmt(row[key]), (row["precision"], key, text)


def test_report_is_self_contained_and_holds_the_results(sweep_dir):
    text = (sweep_dir / "report.html").read_text(encoding="utf-8")
    doc = json.loads((sweep_dir / "results.json").read_text())
    cells = parse(text)
    assert_numbers_match(cells, doc)
    assert cells.links and all(link.startswith("data:image/png;base64,") for link in cells.links)
    assert "<script" not in text and "<link" not in text and "url(" not in text and "@import" not in text
    for link in cells.links:  # every image decodes to a PNG
        assert base64.b64decode(link.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(cells.links) == len(list(sweep_dir.glob("*.png")))
    for needle in ("Model summary", "conv1", "Precision of each layer", "Calibration and settings",
                   "lowbit eval --precisions fp32,int8,binary --include", "onnxruntime"):
        assert needle in text


def test_fine_tuned_row_sits_next_to_the_post_training_one(sweep_dir):
    doc = json.loads((sweep_dir / "results.json").read_text())
    names = [r["precision"] for r in doc["results"]]
    assert names == ["fp32", "int8", "binary", "binary (fine-tuned)"]
    tuned = doc["results"][3]
    assert tuned["bits"] == 1 and Path(tuned["model_file"]) == FINETUNED
    x, y = mnist("test")
    scores = lowbit.load(FINETUNED).run(x[:300])
    assert tuned["accuracy"] == np.mean(scores.argmax(1) == y[:300]) > 0.95
    assert doc["results"][2]["accuracy"] < 0.5  # post-training binary, for contrast


def test_onnxruntime_reference_is_measured_on_the_same_images(sweep_dir):
    pytest.importorskip("onnxruntime")
    doc = json.loads((sweep_dir / "results.json").read_text())
    reference = doc["reference"]
    fp32, int8 = reference["onnxruntime fp32"], reference["onnxruntime int8 (QDQ, per-channel)"]
    assert len(fp32["runs"]) == 3 and fp32["images_per_s"] > 0 and int8["images_per_s"] > 0
    assert fp32["accuracy"] == doc["results"][0]["accuracy"]  # same images, same fp32 network
    assert abs(int8["accuracy"] - fp32["accuracy"]) < 0.02


def _browser():
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def test_report_renders_in_headless_chromium(sweep_dir, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium found (apt-get install -y chromium): the rendering check did not run")
    page = (sweep_dir / "report.html").resolve().as_uri()
    flags = FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert_numbers_match(parse(dom.stdout), json.loads((sweep_dir / "results.json").read_text()))
    shot = tmp_path / "page.png"
    run = subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,2000", page],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape == (2000, 1200)
    ink = np.mean(pixels < 200)
    assert ink > 0.03, f"only {ink:.1%} of the screenshot is not white"
    assert np.mean(pixels[1000:] < 200) > 0.01  # the plots below the tables are drawn too


def test_quiet_prints_no_table_and_no_progress(tmp_path, capsys):
    assert main(["--quiet", "eval", "--precisions", "fp32", "--limit", "50", "--calibration-size", "20",
                 "--no-reference", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert re.fullmatch(r"wrote [^\n]*report\.html\n", captured.out), captured.out
    assert captured.err == ""
    assert main(["eval", "--precisions", "fp32", "--limit", "50", "--calibration-size", "20", "--no-reference",
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "sweep  1/1" in captured.err and "precision" in captured.out.splitlines()[1]
