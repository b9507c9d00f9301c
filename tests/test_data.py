"""Dataset loaders (npz, IDX, PNG folders), preprocessing, errors and the bundled MNIST checksum."""
import gzip
import struct
import zlib

import numpy as np
import pytest

from lowbit.data import load_folder, load_idx, load_npz, mnist, preprocess, read_idx
from lowbit.data import bundled as mnist_mod
from lowbit.data.idx import write_idx
from lowbit.errors import InputError


def write_png_gray(path, img):
    """A minimal 8-bit grayscale PNG writer (independent of the reader under test)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, (5, 4, 3), dtype=np.uint8), rng.integers(0, 10, 5).astype(np.uint8)


def test_preprocess_uint8_gray_and_color(rng):
    u = rng.integers(0, 256, (2, 4, 3), dtype=np.uint8)
    x = preprocess(u)
    assert x.dtype == np.float32 and x.shape == (2, 1, 4, 3)
    np.testing.assert_allclose(x[:, 0], u / 255.0, rtol=1e-6)
    c = rng.integers(0, 256, (2, 4, 3, 3), dtype=np.uint8)
    xc = preprocess(c, mean=[0.1, 0.2, 0.3], std=0.5)
    assert xc.shape == (2, 3, 4, 3)
    np.testing.assert_allclose(xc[1, 2], (c[1, :, :, 2] / 255.0 - 0.3) / 0.5, rtol=1e-5, atol=1e-6)


def test_preprocess_float_nchw_passes_and_errors(rng):
    f = rng.random((2, 3, 4, 4))
    assert preprocess(f).dtype == np.float32
    with pytest.raises(InputError, match=r"expected \(N, C, H, W\)"):
        preprocess(rng.random((2, 4, 4)))
    with pytest.raises(InputError, match="dtype int32"):
        preprocess(np.zeros((2, 4, 4), np.int32))
    with pytest.raises(InputError, match="one per channel"):
        preprocess(np.zeros((2, 4, 4, 3), np.uint8), mean=[0.1, 0.2])


def test_load_npz_splits_and_subsets(tmp_path, images):
    x, y = images
    p = tmp_path / "d.npz"
    np.savez(p, x_test=x, y_test=y)  # only the test subset
    xt, yt = load_npz(p, "test")
    assert xt.shape == (5, 1, 4, 3) and xt.dtype == np.float32 and yt.dtype == np.int64
    np.testing.assert_array_equal(yt, y)
    with pytest.raises(InputError, match=r"lacks key\(s\) \['x_train', 'y_train'\]; it has \['x_test', 'y_test'\]"):
        load_npz(p, "train")


def test_load_npz_errors(tmp_path, images):
    x, y = images
    with pytest.raises(InputError, match="not found"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "count.npz", x_test=x, y_test=y[:4])
    with pytest.raises(InputError, match="4 labels for 5 images"):
        load_npz(tmp_path / "count.npz")
    np.savez(tmp_path / "shape.npz", x_test=x[0], y_test=y)
    with pytest.raises(InputError, match="expected"):
        load_npz(tmp_path / "shape.npz")
    np.savez(tmp_path / "ydtype.npz", x_test=x, y_test=y.astype(np.float32))
    with pytest.raises(InputError, match="expected integer"):
        load_npz(tmp_path / "ydtype.npz")
    np.savez(tmp_path / "pickle.npz", x_test=np.array([{"a": 1}] * 5, dtype=object), y_test=y)
    with pytest.raises(InputError, match="pickle"):
        load_npz(tmp_path / "pickle.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(InputError, match="unknown split"):
        load_npz(tmp_path / "count.npz", "val")


@pytest.mark.parametrize("compressed", [False, True])
def test_idx_raw_and_gz(tmp_path, images, compressed):
    x, y = images
    write_idx(tmp_path / "img", x)
    write_idx(tmp_path / "lab", y)
    if compressed:
        for name in ("img", "lab"):
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress((tmp_path / name).read_bytes()))
    suffix = ".gz" if compressed else ""
    header = (tmp_path / "img").read_bytes()[:16]
    assert header == bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 3])  # hand-written IDX header
    np.testing.assert_array_equal(read_idx(tmp_path / f"img{suffix}"), x)
    xs, ys = load_idx(tmp_path / f"img{suffix}", tmp_path / f"lab{suffix}")
    np.testing.assert_allclose(xs[:, 0], x / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ys, y)


def test_idx_errors(tmp_path, images):
    x, y = images
    with pytest.raises(InputError, match="not found"):
        read_idx(tmp_path / "nope")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(InputError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "img", x)
    (tmp_path / "short").write_bytes((tmp_path / "img").read_bytes()[:-1])
    with pytest.raises(InputError, match="data bytes"):
        read_idx(tmp_path / "short")
    write_idx(tmp_path / "lab", y[:3])
    with pytest.raises(InputError, match="3 labels for 5 images"):
        load_idx(tmp_path / "img", tmp_path / "lab")


def test_png_folder(tmp_path, rng):
    imgs = {}
    for label in ("0", "1", "10", "2"):
        (tmp_path / label).mkdir()
        imgs[label] = rng.integers(0, 256, (2, 5, 4), dtype=np.uint8)
        for i, img in enumerate(imgs[label]):
            write_png_gray(tmp_path / label / f"{i}.png", img)
    x, y, classes = load_folder(tmp_path)
    assert classes == ["0", "1", "2", "10"]  # numeric order
    assert x.shape == (8, 1, 5, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(x[6:, 0], imgs["10"] / 255.0, rtol=1e-6)


def test_png_folder_errors(tmp_path, rng):
    with pytest.raises(InputError, match="not found"):
        load_folder(tmp_path / "none")
    with pytest.raises(InputError, match="no class sub-folders"):
        load_folder(tmp_path)
    (tmp_path / "a").mkdir()
    write_png_gray(tmp_path / "a" / "0.png", np.zeros((4, 4), np.uint8))
    write_png_gray(tmp_path / "a" / "1.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(InputError, match="different shapes"):
        load_folder(tmp_path)
    with pytest.raises(InputError, match=r"class folder .*b not found"):
        load_folder(tmp_path, classes=["a", "b"])
    (tmp_path / "a" / "2.png").write_bytes(b"garbage")
    (tmp_path / "a" / "1.png").unlink()
    with pytest.raises(InputError, match="cannot read image"):
        load_folder(tmp_path)


def test_bundled_mnist_checksum_and_contents():
    mnist_mod.verify()  # file md5 1645a3b4...
    x, y = mnist("test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert list(y[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    with pytest.raises(InputError, match="unknown split"):
        mnist("validation")


def test_mnist_checksum_rejects_altered_and_accepts_rebuilt(tmp_path):
    with np.load(mnist_mod.PATH, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    np.savez(tmp_path / "rebuilt.npz", **arrays)  # new container, same arrays: passes on the array md5s
    mnist_mod.verify(tmp_path / "rebuilt.npz")
    arrays["y_test"] = arrays["y_test"].copy()
    arrays["y_test"][0] = 3
    np.savez(tmp_path / "altered.npz", **arrays)
    with pytest.raises(InputError, match=r"fails its checksum: array\(s\) \['y_test'\]"):
        mnist_mod.verify(tmp_path / "altered.npz")
    with pytest.raises(InputError, match="not found"):
        mnist_mod.verify(tmp_path / "missing.npz")
