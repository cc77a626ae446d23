import os

import pytest
import torch

# unit tests run on one thread per worker: fast on 2 cores with pytest -n 2, and deterministic
torch.set_num_threads(1)
os.environ.setdefault("LATERALNORM_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache-tests"))


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run a test inside an empty working directory (runs/ defaults land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
