"""Where generated data sets are cached: $LATERALNORM_CACHE, else ~/.cache/lateralnorm."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lateralnorm.atomic import atomic_path
from lateralnorm.cache_root import cache_dir

__all__ = ["cache_dir", "load_npz", "save_npz"]


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cached .npz, or None when it is missing or unreadable (then it is regenerated)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError):
        return None


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays atomically (temp file in the same folder, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
