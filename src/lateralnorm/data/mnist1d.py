"""MNIST-1D (Greydanus 2020): ten 1-D templates, randomly padded, scaled, sheared, translated and noised
into 40-sample signals. Generated offline with `mnist1d.data.make_dataset` and its default arguments
(4000 train / 1000 test, the paper's data), never its downloader; cached as .npz.
"""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np

from lateralnorm.data.cache import cache_dir, load_npz, save_npz


def mnist1d_args(samples: int | None = None) -> dict:
    """The package's default generation arguments, with `num_samples` replaced when `samples` is given."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    if samples is not None:
        args["num_samples"] = int(samples)
    return args


def load_mnist1d_arrays(samples: int | None = None) -> tuple[dict[str, np.ndarray], str]:
    """(arrays, source): x_* float32 (N, 40), y_* int64 (N,). Generation is fixed by the package's seed
    (42), so every run sees the same data; the cache file name carries a hash of the arguments."""
    args = mnist1d_args(samples)
    digest = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:10]
    path = cache_dir() / f"mnist1d-{args['num_samples']}-{digest}.npz"
    arrays = load_npz(path)
    if arrays is None:
        arrays = _generate(args)
        save_npz(path, arrays)
    return arrays, f"mnist1d.data.make_dataset (cached at {path})"


def _generate(args: dict) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset reseeds the global `random` and NumPy generators: keep the caller's state
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x_train": d["x"].astype(np.float32),
        "y_train": d["y"].astype(np.int64),
        "x_test": d["x_test"].astype(np.float32),
        "y_test": d["y_test"].astype(np.int64),
    }
