"""Where generated data sets are cached: $LATERALNORM_CACHE, else ~/.cache/lateralnorm."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    env = os.environ.get("LATERALNORM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lateralnorm"


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
