import os

# the Triton kernels of dn are tested on the CPU by Triton's interpreter; Triton reads this when it is first
# imported, which torch may do, so it is set before anything else
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from lateralnorm.cache_root import cache_dir  # noqa: E402

# unit tests run on one thread per worker: fast on 2 cores with pytest -n 2, and deterministic
torch.set_num_threads(1)
# tests get their own data cache; the compiled CPU kernel (keyed by its source, torch and the CPU) is shared
# with the user's, so `make setup`'s build is reused
os.environ.setdefault("LATERALNORM_KERNEL_CACHE", str(cache_dir()))
os.environ.setdefault("LATERALNORM_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache-tests"))


def pytest_configure(config):
    """Build the compiled CPU kernel of dn once, before the xdist workers start (they load it)."""
    if hasattr(config, "workerinput"):
        return
    from lateralnorm.norms import cpu_kernel

    try:
        cpu_kernel.build()
    except Exception as exc:  # noqa: BLE001 - the kernel tests skip with the reason; dn uses the PyTorch kernel
        print(f"note: the CPU kernel could not be built: {exc!s:.200}")


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run a test inside an empty working directory (runs/ defaults land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
