"""Data sets: the IDX reader (known answers, corruption), every data set name, views, standardization."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lateralnorm.data import DATASETS, DataFileError, load_dataset, read_idx, write_idx
from lateralnorm.data.images import IDX_FILES, SYSTEM_DIRS, find_idx_files
from lateralnorm.data.toys import TOYS, make_toy
from lateralnorm.errors import UsageError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- IDX reader


def test_idx_known_bytes(tmp_path):
    """A hand-written IDX file: magic 0x00000803 (uint8, 3 dims), dims 2×2×3, then 12 bytes."""
    blob = bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big") * 2 + (3).to_bytes(4, "big") + bytes(range(12))
    (tmp_path / "a").write_bytes(blob)
    arr = read_idx(tmp_path / "a")
    assert arr.dtype == np.uint8 and arr.shape == (2, 2, 3)
    assert arr[1, 0, 2] == 8 and arr.ravel().tolist() == list(range(12))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / "x", arr, compress=compress)
    back = read_idx(tmp_path / "x")
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, arr)


def test_idx_big_endian_int32(tmp_path):
    blob = bytes([0, 0, 0x0C, 1]) + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + (256).to_bytes(4, "big")
    (tmp_path / "b").write_bytes(blob)
    assert read_idx(tmp_path / "b").tolist() == [1, 256]


def _valid(tmp_path: Path) -> bytes:
    write_idx(tmp_path / "ok", np.zeros((4, 5, 5), dtype=np.uint8))
    return (tmp_path / "ok").read_bytes()


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda b: b"\x01\x02" + b[2:], "bad magic"),
        (lambda b: b[:2] + b"\x42" + b[3:], "unknown IDX element type"),
        (lambda b: b[:-7], "truncated"),
        (lambda b: b + b"\x00\x00", "longer than its header"),
        (lambda b: b[:9], "truncated inside its header"),
        (lambda b: gzip.compress(b)[:-20], "corrupt or truncated gzip"),
        (lambda b: b"", "not an IDX file"),
    ],
)
def test_idx_corruption_names_the_file(tmp_path, mutate, words):
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(mutate(_valid(tmp_path)))
    with pytest.raises(DataFileError) as e:
        read_idx(bad)
    assert str(bad) in str(e.value) and words in str(e.value)
    assert isinstance(e.value, UsageError)


# ---------------------------------------------------------------- IDX data sets


def _write_fake_mnist(folder: Path, n_train: int = 30, n_test: int = 10, compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = {"x_train": n_train, "y_train": n_train, "x_test": n_test, "y_test": n_test}
    for key, stem in IDX_FILES.items():
        n = sizes[key]
        arr = rng.integers(0, 256, (n, 28, 28)) if key.startswith("x") else np.arange(n) % 10
        write_idx(folder / (stem + (".gz" if compress else "")), arr.astype(np.uint8), compress=compress)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_data_dir(tmp_path, compress):
    _write_fake_mnist(tmp_path / "mnist", compress=compress)
    d = load_dataset("mnist", data_dir=str(tmp_path))
    assert d.x_train.shape == (30, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert d.y_train.dtype == torch.int64 and d.y_train[:12].tolist() == [*range(10), 0, 1]
    assert d.meta.num_classes == 10 and d.meta.input_shape == (1, 28, 28)


def test_idx_env_var_and_order(tmp_path, monkeypatch):
    _write_fake_mnist(tmp_path / "env" / "mnist", n_train=20)
    monkeypatch.setenv("LATERALNORM_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist").y_train) == 20
    _write_fake_mnist(tmp_path / "explicit", n_train=40)  # --data-dir wins over the environment
    assert len(load_dataset("mnist", data_dir=str(tmp_path / "explicit")).y_train) == 40


def test_idx_missing_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv("LATERALNORM_DATA", raising=False)
    with pytest.raises(UsageError, match="download the four MNIST IDX files"):
        find_idx_files("mnist", str(tmp_path))
    monkeypatch.setitem(SYSTEM_DIRS, "fashion-mnist", [])  # as on a machine without the Debian package
    with pytest.raises(UsageError, match="apt-get install dataset-fashion-mnist") as e:
        find_idx_files("fashion-mnist", str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_idx_label_count_mismatch(tmp_path):
    _write_fake_mnist(tmp_path, n_train=30)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8), compress=True)
    with pytest.raises(DataFileError, match="29 labels for 30 images"):
        load_dataset("mnist", data_dir=str(tmp_path))


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_real_files():
    d = load_dataset("fashion-mnist", subset=1000)
    assert d.x_train.shape == (1000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.y_test.bincount().tolist() == [1000] * 10  # the test split is balanced
    assert abs(d.x_train.mean().item()) < 1e-4 and abs(d.x_train.std().item() - 1) < 1e-3
    assert "fashion-mnist" in d.meta.source


# ---------------------------------------------------------------- every data set


@pytest.mark.parametrize(
    "name", [n for n in DATASETS if n not in ("fashion-mnist", "mnist", "fortunes")]
)  # text: test_text_lm
def test_every_generated_dataset(name):
    d = load_dataset(name, samples=200 if name != "digits" else None)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.x_train.shape[1:] == d.x_test.shape[1:] == d.meta.input_shape
    assert len(d.x_train) == len(d.y_train) and len(d.x_test) == len(d.y_test) > 0
    assert int(d.y_train.max()) < d.meta.num_classes
    assert torch.isfinite(d.x_train).all()


def test_shapes_and_classes():
    assert load_dataset("mnist1d", samples=100).meta.input_shape == (40,)
    assert load_dataset("digits").meta.input_shape == (1, 8, 8)
    assert load_dataset("moons", samples=50).meta.num_classes == 2
    assert load_dataset("temperature", samples=50).meta.input_shape == (1,)


def test_mnist1d_default_is_the_paper_split():
    d = load_dataset("mnist1d")
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)


def test_mnist1d_cached_and_leaves_global_rng_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("LATERALNORM_CACHE", str(tmp_path))
    np.random.seed(123)
    random.seed(123)
    a = load_dataset("mnist1d", samples=60)
    assert np.random.rand() == np.random.RandomState(123).rand()  # state untouched by make_dataset
    assert random.random() == random.Random(123).random()
    files = list(tmp_path.glob("mnist1d-60-*.npz"))
    assert len(files) == 1
    b = load_dataset("mnist1d", samples=60)  # from the cache
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_toy_labels_known_answers():
    t = make_toy("temperature", 500, seed=1)
    temp = t["x_train"][:, 0]
    assert np.array_equal(t["y_train"], ((temp < 0) | (temp > 30)).astype(np.int64))
    x = make_toy("xor", 300, seed=2)
    assert np.array_equal(x["y_train"], (x["x_train"][:, 0] * x["x_train"][:, 1] > 0).astype(np.int64))
    assert set(TOYS) <= set(DATASETS)


def test_toys_seeded():
    a, b, c = (load_dataset("spirals", samples=100, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


# ---------------------------------------------------------------- standardization and views


def test_standardization_uses_training_split_only():
    d = load_dataset("moons", samples=400, seed=0)
    raw = make_toy("moons", 400, seed=0)
    mean, std = raw["x_train"].mean(0, dtype=np.float64), raw["x_train"].std(0, dtype=np.float64)
    expected = (raw["x_test"] - mean) / std
    assert np.allclose(d.x_test.numpy(), expected, atol=1e-5)
    assert np.allclose(d.x_train.mean(0).numpy(), 0, atol=1e-5)
    assert np.allclose(d.meta.standardization["mean"], mean, atol=1e-5)


def test_subset_and_its_statistics():
    full = load_dataset("digits")
    sub = load_dataset("digits", subset=100)
    assert len(sub.y_train) == 100 and torch.equal(sub.y_train, full.y_train[:100])
    assert abs(sub.x_train.mean().item()) < 1e-5  # statistics of the subset actually trained on
    with pytest.raises(UsageError, match="subset 5000 is outside"):
        load_dataset("digits", subset=5000)


def test_sequential_view():
    d = load_dataset("digits", sequential=True)
    assert d.meta.input_shape == (8, 8) and d.meta.sequential
    flat = load_dataset("digits")
    assert torch.equal(d.x_train[5, 3], flat.x_train[5, 0, 3])  # step 3 is row 3
    assert load_dataset("mnist1d", samples=60, sequential=True).meta.input_shape == (40, 1)


def test_random_labels_seeded_and_only_train():
    a = load_dataset("digits", random_labels=True, seed=1)
    b = load_dataset("digits", random_labels=True, seed=1)
    c = load_dataset("digits", random_labels=True, seed=2)
    true = load_dataset("digits")
    assert torch.equal(a.y_train, b.y_train) and not torch.equal(a.y_train, c.y_train)
    assert (a.y_train == true.y_train).float().mean() < 0.3  # about 1/10 agree by chance
    assert torch.equal(a.y_test, true.y_test)


def test_unknown_dataset_suggests():
    with pytest.raises(UsageError, match="did you mean 'mnist1d'"):
        load_dataset("mnist1dd")
    with pytest.raises(UsageError, match="samples >= 2"):
        load_dataset("xor", samples=1)
