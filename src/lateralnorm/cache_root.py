"""The folder lateralnorm caches things in (generated data sets, the compiled CPU kernel):
$LATERALNORM_CACHE, else ~/.cache/lateralnorm."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    env = os.environ.get("LATERALNORM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lateralnorm"
