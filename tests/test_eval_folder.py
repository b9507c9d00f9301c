"""`lowbit eval --data FOLDER`: JPEG/PNG folders of any size, with and without labels, any output shape.

Expected values come from Pillow + numpy and onnxruntime in this file, never from lowbit's metrics.
"""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import lowbit
from lowbit.cli import main
from lowbit.data import mnist
from lowbit.data.images import ImageBatches, preprocessing_for, scan_folder
from lowbit.errors import InputError
from lowbit.evaluate.label_free import Comparison, LayerSQNR
DEEP = str(Path(__file__).resolve().parents[1] / "models" / "deep_convnet.onnx")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _save(model, path):
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def rgb_classifier(path, size=32, seed=0):
    """Conv 3->8 (3x3) + Relu + GlobalAveragePool + Flatten + Gemm 8->10, input (N, 3, size, size)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 1.0, (10, 8)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r1"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "rgb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def segmenter(path, seed=1):
    """Conv 3->4 (3x3) + Relu + Conv 4->5 (1x1): a (N, 5, H, W) map from a dynamic (N, 3, H, W) input."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 1.0, (5, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "seg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, "H", "W"])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def photo_folder(root, rng, count=12):
    """Flat folder of JPEG/PNG photos of varied sizes and modes, one corrupt file; returns the readable paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        w, h = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
        if i % 4 == 1:
            img = img.convert("L")
        if i % 4 == 2:
            img = img.convert("RGBA")
        path = root / (f"img{i:02d}.jpg" if i % 2 == 0 and img.mode != "RGBA" else f"img{i:02d}.png")
        img.save(path)
        paths.append(path)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return sorted(paths)


def pil_input(path, size, channels=3):
    """The default preprocessing written out: resize to (H, W) bilinear, RGB (or L), / 255, CHW."""
    img = Image.open(path).convert("RGB" if channels == 3 else "L")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)  # as the .npz loader scales uint8 images
    return x[None] if x.ndim == 2 else x.transpose(2, 0, 1)


def ort_run(model_path, x):
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def sqnr(ref, out):
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - out) ** 2))


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# ---- preprocessing ---------------------------------------------------------------------------


def test_default_preprocessing_is_a_plain_resize_to_the_model_size(tmp_path, rng):
    prep = preprocessing_for((None, 3, 16, 24))
    assert prep.describe() == "resize to 16x24, RGB, /255"
    pixels = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "same.png")
    x = prep(Image.open(tmp_path / "same.png"))
    np.testing.assert_allclose(x, pixels.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    np.testing.assert_array_equal(prep(Image.open(tmp_path / "big.png")), pil_input(tmp_path / "big.png", (16, 24)))
    gray = preprocessing_for((None, 1, 28, 28))
    assert gray.describe() == "resize to 28x28, L (grayscale), /255"
    assert gray(Image.open(tmp_path / "big.png")).shape == (1, 28, 28)


def test_imagenet_preset_crops_the_centre_and_normalises(tmp_path, rng):
    prep = preprocessing_for((1, 3, 224, 224), preset="imagenet")
    assert prep.resize == 256 and prep.describe().startswith("resize shorter side to 256, centre crop 224x224, RGB")
    pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # already 256: only the crop and the normalisation
    Image.fromarray(pixels).save(tmp_path / "a.png")
    expected = ((pixels[16:240, 16:240] / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(prep(Image.open(tmp_path / "a.png")), expected, atol=1e-5)
    # 300x200 (WxH): shorter side 200 -> 256, so 384x256, then the centre 224x224 from (80, 16)
    wide = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    Image.fromarray(wide).save(tmp_path / "w.png")
    resized = np.asarray(Image.fromarray(wide).resize((384, 256), Image.BILINEAR), np.float64)
    expected = ((resized[16:240, 80:304] / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(prep(Image.open(tmp_path / "w.png")), expected, atol=1e-5)
    bgr = preprocessing_for((1, 3, 224, 224), preset="imagenet", bgr=True)
    np.testing.assert_allclose(bgr(Image.open(tmp_path / "a.png")),
                               ((pixels[16:240, 16:240, ::-1] / 255.0 - MEAN[::-1]) / STD[::-1]).transpose(2, 0, 1),
                               atol=1e-5)
    over = preprocessing_for((None, 3, None, None), preset="imagenet", size=(299, 299), mean=0.5, std=(0.5, 0.25, 1))
    assert over.size == (299, 299) and over.resize == 342 and over.mean == (0.5,) * 3 and over.std == (0.5, 0.25, 1.0)


def test_preprocessing_errors():
    with pytest.raises(InputError, match="dynamic height/width.*--size"):
        preprocessing_for((None, 3, None, None))
    with pytest.raises(InputError, match="--size 32x32 but the model takes 28x28"):
        preprocessing_for((None, 1, 28, 28), size=32)
    with pytest.raises(InputError, match="NHWC"):
        preprocessing_for((None, 224, 224, 3))
    with pytest.raises(InputError, match="mean has 2 values"):
        preprocessing_for((None, 3, 8, 8), mean=(0.1, 0.2))
    with pytest.raises(InputError, match="pass --mean and --std"):
        preprocessing_for((None, 1, 28, 28), preset="imagenet")


# ---- metrics ---------------------------------------------------------------------------------


def test_comparison_matches_numpy_over_batches(rng):
    ref = rng.normal(size=(50, 12)).astype(np.float32)
    out = (ref + rng.normal(0, 0.7, ref.shape)).astype(np.float32)
    c = Comparison()
    for start in (0, 17, 40):  # uneven batches
        stop = {0: 17, 17: 40, 40: 50}[start]
        c.update(ref[start:stop], out[start:stop])
    got = c.result()
    top = ref.argmax(1)
    assert got["agreement"] == np.mean(out.argmax(1) == top)
    order = np.argsort(-out, axis=1)[:, :5]
    assert got["agreement_top5"] == np.mean([top[i] in order[i] for i in range(50)])
    assert got["sqnr_db"] == pytest.approx(sqnr(ref, out), rel=1e-9)
    maps = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    noisy = (maps + rng.normal(0, 0.5, maps.shape)).astype(np.float32)
    m = Comparison()
    m.update(maps, noisy)
    got = m.result()
    assert got["agreement"] == np.mean(maps.argmax(1) == noisy.argmax(1)) and got["agreement_top5"] is None
    assert got["sqnr_db"] == pytest.approx(sqnr(maps, noisy), rel=1e-9)
    same = Comparison()
    same.update(ref, ref)
    assert same.result()["sqnr_db"] == np.inf and same.result()["agreement"] == 1.0
    layers = LayerSQNR()
    layers.update({"a": maps, "b": maps}, {"a": noisy, "b": np.zeros((3, 1), np.uint64)})
    assert set(layers.result()) == {"a"} and layers.result()["a"] == pytest.approx(sqnr(maps, noisy), rel=1e-9)


# ---- folders ---------------------------------------------------------------------------------


def test_scan_layouts_and_streamed_batches(tmp_path, rng):
    paths = photo_folder(tmp_path / "flat", rng, count=7)
    images = scan_folder(tmp_path / "flat")
    assert not images.labelled and len(images.files) == 8  # 7 photos + the corrupt file
    batches = ImageBatches(images, preprocessing_for((None, 3, 10, 12)), batch_size=3, warn=None)
    got = list(batches)
    assert [len(x) for x, _ in got] == [2, 3, 2]  # broken.jpg (sorted first) is left out of the first batch
    assert all(y is None for _, y in got) and list(images.skipped) == [str(tmp_path / "flat" / "broken.jpg")]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), np.stack([pil_input(p, (10, 12)) for p in paths]))
    (tmp_path / "mixed" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "mixed" / "cat" / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "mixed" / "b.png")
    with pytest.raises(InputError, match="both images and class sub-folders"):
        scan_folder(tmp_path / "mixed")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        scan_folder(tmp_path / "empty")


@pytest.fixture(scope="module")
def mnist_folder(tmp_path_factory):
    """300 MNIST test digits as ROOT/<digit>/*.png plus a corrupt file; the same digits as an .npz."""
    root = tmp_path_factory.mktemp("mnist_folder")
    x, y = mnist("test")
    u8 = np.rint(x[:300, 0] * 255).astype(np.uint8)
    for c in range(10):
        (root / "digits" / str(c)).mkdir(parents=True)
    names = []
    for i in range(300):
        names.append(root / "digits" / str(y[i]) / f"{i:04d}.png")
        Image.fromarray(u8[i]).save(names[-1])
    (root / "digits" / "3" / "0000_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    order = sorted(range(300), key=lambda i: (y[i], names[i].name))  # class folders in numeric order, files sorted
    np.savez(root / "same.npz", x_test=u8[order], y_test=y[:300][order])
    np.savez(root / "cal.npz", x_train=np.rint(mnist("train")[0][:100, 0] * 255).astype(np.uint8))
    return root


def test_labelled_folder_gives_the_npz_numbers(mnist_folder, tmp_path, capsys):
    precisions = "fp32,int8,int4"
    assert main(["eval", DEEP, "--data", str(mnist_folder / "digits"), "--precisions", precisions,
                 "--calibration", str(mnist_folder / "cal.npz"), "--out", str(tmp_path / "folder")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("preprocessing: resize to 28x28, L (grayscale), /255") == 1
    assert captured.err.count("warning: skipped") == 1 and "0000_bad.png" in captured.err
    assert "1 unreadable file(s) skipped" in captured.out and "layer SQNR dB" in captured.out
    assert main(["eval", DEEP, "--data", str(mnist_folder / "same.npz"), "--precisions", precisions,
                 "--calibration", str(mnist_folder / "cal.npz"), "--out", str(tmp_path / "npz")]) == 0
    folder = json.loads((tmp_path / "folder" / "results.json").read_text())
    arrays = json.loads((tmp_path / "npz" / "results.json").read_text())
    assert folder["n_test"] == arrays["n_test"] == 300 and folder["skipped"] == 1 and folder["labelled"]
    for a, b in zip(folder["results"], arrays["results"]):
        for key in ("precision", "accuracy", "top5", "drop", "agreement", "agreement_top5", "size_bytes"):
            assert a[key] == b[key], (a["precision"], key)
        assert a["sqnr_db"] == b["sqnr_db"] or a["sqnr_db"] == pytest.approx(b["sqnr_db"], rel=1e-9)
    data = np.load(mnist_folder / "same.npz")
    x = data["x_test"][:, None].astype(np.float32) * np.float32(1 / 255)
    reference = ort_run(DEEP, x)
    assert folder["results"][0]["accuracy"] == np.mean(reference.argmax(1) == data["y_test"])
    int8 = lowbit.load(folder["results"][1]["model_file"]).run(x)
    assert folder["results"][1]["agreement"] == np.mean(int8.argmax(1) == reference.argmax(1))
    assert folder["results"][1]["sqnr_db"] == pytest.approx(sqnr(reference, int8), rel=1e-4)
    layers = folder["layer_sqnr"]["int8"]
    assert list(layers) == ["relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7", "logits"]
    assert layers["logits"] == pytest.approx(sqnr(reference[:256], int8[:256]), rel=1e-4)  # the first 256 samples
    assert all(v > 10 for v in layers.values())
    for name in ("results.md", "results.csv", "accuracy_vs_bits.png", "accuracy_vs_size.png", "throughput_vs_bits.png"):
        assert (tmp_path / "folder" / name).stat().st_size > 0


def test_unlabelled_rgb_folder_reports_agreement_and_sqnr(tmp_path, rng, capsys):
    model = rgb_classifier(tmp_path / "rgb.onnx")
    paths = photo_folder(tmp_path / "photos", rng)
    out = tmp_path / "out"
    assert main(["eval", model, "--data", str(tmp_path / "photos"), "--precisions", "fp32,int8",
                 "--batch-size", "5", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "preprocessing: resize to 32x32, RGB, /255" in captured.err
    header = captured.out.splitlines()[1]
    assert "accuracy" not in header and "drop" not in header and "agree w/ fp32" in header and "SQNR dB" in header
    doc = json.loads((out / "results.json").read_text())
    assert doc["n_test"] == len(paths) and doc["skipped"] == 1 and doc["labelled"] is False
    fp32, int8 = doc["results"]
    assert fp32["accuracy"] is None and fp32["drop"] is None and fp32["agreement"] == 1 and fp32["sqnr_db"] is None
    x = np.stack([pil_input(p, (32, 32)) for p in paths])
    reference = ort_run(model, x)
    q = lowbit.load(int8["model_file"]).run(x)
    top = reference.argmax(1)
    assert int8["agreement"] == np.mean(q.argmax(1) == top)
    assert int8["agreement_top5"] == np.mean([top[i] in np.argsort(-q[i])[:5] for i in range(len(x))])
    assert int8["sqnr_db"] == pytest.approx(sqnr(reference, q), rel=1e-4)
    assert set(doc["layer_sqnr"]["int8"]) == {"r1", "y"}
    for name in ("agreement_vs_bits.png", "agreement_vs_size.png", "throughput_vs_bits.png", "sqnr_vs_bits.png"):
        assert (out / name).stat().st_size > 0
    assert not (out / "accuracy_vs_bits.png").exists()


def test_labels_file_names_classes(tmp_path, rng):
    model = rgb_classifier(tmp_path / "rgb.onnx")
    paths = photo_folder(tmp_path / "photos", rng, count=8)
    names = ["cat", "dog", "eel"]
    labels = [names[i % 3] for i in range(len(paths))]
    lines = [f"{p.name} {label}" for p, label in zip(paths, labels)]
    (tmp_path / "labels.txt").write_text("# file label\n" + "\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["eval", model, "--data", str(tmp_path / "photos"), "--labels", str(tmp_path / "labels.txt"),
                 "--precisions", "fp32", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    x = np.stack([pil_input(p, (32, 32)) for p in paths])
    y = np.array([names.index(label) for label in labels])
    assert doc["labelled"] and doc["results"][0]["accuracy"] == np.mean(ort_run(model, x).argmax(1) == y)
    (tmp_path / "labels.txt").write_text("missing.jpg 1\n")
    assert main(["eval", model, "--data", str(tmp_path / "photos"), "--labels", str(tmp_path / "labels.txt"),
                 "--precisions", "fp32", "--out", str(tmp_path / "o2")]) == 2


def test_segmentation_map_gets_per_pixel_agreement(tmp_path, rng, capsys):
    model = segmenter(tmp_path / "seg.onnx")
    paths = photo_folder(tmp_path / "photos", rng, count=6)
    args = ["eval", model, "--data", str(tmp_path / "photos"), "--precisions", "fp32,int8"]
    assert main(args + ["--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lowbit: error: ") and "--size" in err[-1] and not (tmp_path / "no").exists()
    out = tmp_path / "out"
    assert main(args + ["--size", "12x16", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["output"] == "map" and "agree/position" in capsys.readouterr().out
    x = np.stack([pil_input(p, (12, 16)) for p in paths])
    reference = ort_run(model, x)
    q = lowbit.load(doc["results"][1]["model_file"]).run(x)
    int8 = doc["results"][1]
    assert int8["agreement"] == np.mean(q.argmax(1) == reference.argmax(1)) and int8["agreement_top5"] is None
    assert int8["sqnr_db"] == pytest.approx(sqnr(reference, q), rel=1e-4)
    assert (out / "sqnr_vs_bits.png").stat().st_size > 0


def test_folder_user_errors(tmp_path, rng, capsys):
    model = rgb_classifier(tmp_path / "rgb.onnx")
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"nope")
    (tmp_path / "junk" / "b.png").write_bytes(b"")
    np.savez(tmp_path / "d.npz", x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.int64))
    runs = [["eval", model, "--data", str(tmp_path / "empty")],
            ["eval", model, "--data", str(tmp_path / "junk")],
            ["eval", model, "--data", str(tmp_path / "missing")],
            ["eval", DEEP, "--data", str(tmp_path / "d.npz"), "--preprocess", "imagenet"]]
    for argv in runs:
        assert main(argv + ["--precisions", "fp32", "--out", str(tmp_path / "out")]) == 2, argv
    with pytest.raises(SystemExit) as exc:  # argparse refuses the value itself
        main(["eval", model, "--data", str(tmp_path / "junk"), "--size", "0", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lowbit: error")]
    assert len(err) == 4 and "no images" in err[0] and "could be decoded" in err[1] and "not found" in err[2]
    assert "apply to image folders" in err[3]
    assert not (tmp_path / "out").exists()
