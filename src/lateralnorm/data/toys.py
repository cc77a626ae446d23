"""Small generated data sets: 2-D toys and the 1-D `temperature` folding task.

Each generator draws `samples` points with a NumPy generator seeded by `seed` and splits them 80/20.

- moons, circles: scikit-learn's `make_moons` / `make_circles` with noise 0.1 (circles: factor 0.5).
- xor: x ~ U[-1, 1]², label 1 when x₀·x₁ > 0 (four quadrants, not linearly separable).
- spirals: two interleaved arms r = t, angle = 3π·t + kπ (k the class), t ~ U(0.1, 1), noise σ = 0.03.
- temperature: one reading t ~ U(-15, 45) °C; label 1 ("extreme") when t < 0 or t > 30, else 0
  ("normal"). A single threshold cannot separate it: the net must fold the line, which is what the
  LayerNorm "stretching and folding" argument is about.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TOY_DEFAULT_SAMPLES = 1000


def _moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    return make_moons(n, noise=0.1, random_state=int(rng.integers(2**31)))


def _circles(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_circles

    return make_circles(n, noise=0.1, factor=0.5, random_state=int(rng.integers(2**31)))


def _xor(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1, 1, size=(n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def _spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, size=n)
    t = rng.uniform(0.1, 1.0, size=n)
    angle = 3 * np.pi * t + y * np.pi
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + rng.normal(0, 0.03, size=(n, 2))
    return x, y.astype(np.int64)


def _temperature(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = rng.uniform(-15.0, 45.0, size=(n, 1))
    return t, ((t[:, 0] < 0) | (t[:, 0] > 30)).astype(np.int64)


TOYS: dict[str, Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "moons": _moons,
    "circles": _circles,
    "xor": _xor,
    "spirals": _spirals,
    "temperature": _temperature,
}


def make_toy(name: str, samples: int | None, seed: int) -> dict[str, np.ndarray]:
    """x_* float32 (N, 2) or (N, 1), y_* int64, split 80/20 (at least one test point)."""
    n = int(samples or TOY_DEFAULT_SAMPLES)
    rng = np.random.default_rng(seed)
    x, y = TOYS[name](n, rng)
    n_train = min(max(1, int(0.8 * n)), n - 1)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}
