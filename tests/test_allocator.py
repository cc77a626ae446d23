"""allocator.keep_freed_memory: glibc keeps a training step's freed pages (checked by the page faults a matrix-κ
`dn` step takes), the opt-out leaves the defaults, and the processes lateralnorm owns set it. Each case runs
in a fresh interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

FAULTS_PER_STEP = """
import resource, sys, torch
from lateralnorm.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
from lateralnorm import create_norm
torch.set_num_threads(1)
m = create_norm("dn:kappa=lowrank:16", 512)
x, g = torch.randn(1024, 512, requires_grad=True), torch.randn(1024, 512)
for _ in range(3):
    x.grad = None; m(x).backward(g)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    x.grad = None; m(x).backward(g)
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_kept_memory_removes_the_page_faults_of_a_large_step():
    """(1024, 512) float32: with glibc's defaults a low-rank-κ step frees more than twice its largest tensor and
    glibc hands the heap's top back, so the next step faults its pages in again (~1000 faults a step here);
    with the fixed thresholds the step reuses them (0–150 faults, by the heap layout: at least halved is asserted)."""
    kept, with_kept = _python(FAULTS_PER_STEP, "keep").split()
    _, with_defaults = _python(FAULTS_PER_STEP, "default").split()
    assert kept == "True"
    assert float(with_defaults) > 2 * max(float(with_kept), 1.0), (with_defaults, with_kept)


def test_opt_out_and_once():
    code = "from lateralnorm import allocator as a; print(a.keep_freed_memory(), a.keep_freed_memory())"
    assert _python(code) == "True True"
    assert _python(code, env={"LATERALNORM_MALLOC": "system"}) == "False False"


def test_the_processes_lateralnorm_owns_keep_their_freed_memory():
    """A study pool's worker and the `lateralnorm` command set it; importing the library does not."""
    worker = (
        "import os\nfrom lateralnorm.study.executors import _init_worker\n_init_worker(1, os.getpid())\n"
        "from lateralnorm import allocator\nprint(allocator._done)"
    )
    assert _python(worker) == "True"
    cli = "from lateralnorm import allocator\nfrom lateralnorm.cli import main\nmain(['norms'])\nprint(allocator._done)"
    assert _python(cli).splitlines()[-1] == "True"
    assert (
        _python("import lateralnorm, torch\nfrom lateralnorm import allocator\nprint(allocator._done)")
        == "None"
    )
