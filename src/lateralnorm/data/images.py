"""Image data sets: Fashion-MNIST and MNIST from IDX files, scikit-learn's bundled 8×8 digits.

IDX files are looked for, in order, in: `data_dir` (and `data_dir/<name>`), `$LATERALNORM_DATA/<name>`
(and `$LATERALNORM_DATA`), the Debian package's folder (Fashion-MNIST only) and `<cache>/<name>`.
Images come back as uint8 arrays (N, 1, H, W) and int64 labels; scaling happens in `lateralnorm.data`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from lateralnorm.data.cache import cache_dir
from lateralnorm.data.idx import DataFileError, read_idx

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"], "mnist": []}
HOW_TO_GET = {
    "fashion-mnist": "install the Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist)",
    "mnist": "download the four MNIST IDX files",
}


def candidate_dirs(name: str, data_dir: str | None = None) -> list[Path]:
    """Folders searched for `name`'s IDX files, first match wins."""
    dirs: list[Path] = []
    if data_dir:
        dirs += [Path(data_dir), Path(data_dir) / name]
    env = os.environ.get("LATERALNORM_DATA")
    if env:
        dirs += [Path(env) / name, Path(env)]
    dirs += [Path(p) for p in SYSTEM_DIRS.get(name, [])]
    dirs.append(cache_dir() / name)
    return dirs


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in (".gz", ""):
        p = folder / (stem + suffix)
        if p.is_file():
            return p
    return None


def find_idx_files(name: str, data_dir: str | None = None) -> dict[str, Path]:
    """The four IDX files of `name` from the first folder holding all of them; a clear error otherwise."""
    searched = candidate_dirs(name, data_dir)
    for folder in searched:
        found = {key: _find(folder, stem) for key, stem in IDX_FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    where = ", ".join(str(d) for d in searched)
    files = ", ".join(f"{s}.gz" for s in IDX_FILES.values())
    raise DataFileError(
        f"{name} not found (looked in {where}); {HOW_TO_GET[name]}, or put the four files ({files}) "
        f"in --data-dir or $LATERALNORM_DATA/{name}"
    )


@lru_cache(maxsize=4)
def _load_idx_set(paths: tuple[tuple[str, str, float], ...]) -> dict[str, np.ndarray]:
    """Read and check the four files (cached per process by path and modification time)."""
    arrays = {key: read_idx(path) for key, path, _mtime in paths}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        xpath, ypath = (dict((k, p) for k, p, _ in paths)[f"{v}_{split}"] for v in ("x", "y"))
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataFileError(f"{xpath}: expected uint8 images (N, H, W), got {x.dtype} {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataFileError(f"{ypath}: {y.shape[0]} labels for {len(x)} images in {xpath}")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataFileError(f"{ypath}: labels outside 0..9; download it again")
    files = {k: p for k, p, _ in paths}
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataFileError(
            f"{files['x_train']} holds {arrays['x_train'].shape[1]}×{arrays['x_train'].shape[2]} images but "
            f"{files['x_test']} holds {arrays['x_test'].shape[1]}×{arrays['x_test'].shape[2]}: the four files must "
            "come from one data set"
        )
    if 0 in arrays["x_train"].shape or 0 in arrays["x_test"].shape:
        raise DataFileError(f"{files['x_train']} or {files['x_test']} holds no images; download them again")
    return arrays


def load_idx_dataset(name: str, data_dir: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """(arrays, source) with x_* uint8 (N, 1, 28, 28) and y_* int64 (N,)."""
    found = find_idx_files(name, data_dir)
    key = tuple((k, str(p), p.stat().st_mtime) for k, p in sorted(found.items()))
    arrays = _load_idx_set(key)
    out = {
        "x_train": arrays["x_train"][:, None],
        "y_train": arrays["y_train"].astype(np.int64),
        "x_test": arrays["x_test"][:, None],
        "y_test": arrays["y_test"].astype(np.int64),
    }
    return out, str(found["x_train"].parent)


def load_digits_arrays() -> dict[str, np.ndarray]:
    """scikit-learn's 1797 8×8 digits (values 0..16), split 80/20 by a fixed permutation (seed 0)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    n_train = int(0.8 * len(y))
    tr, te = perm[:n_train], perm[n_train:]
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}
