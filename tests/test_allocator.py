"""allocator.keep_freed_memory: glibc keeps a training step's freed pages (checked by the page faults a matrix-κ
`dn` step takes), the opt-out leaves the defaults, and the processes lateralnorm owns set it. Each case runs
in a fresh interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

FAULTS_PER_ROUND = """
import resource, sys, torch
from lateralnorm.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(30):  # a step's worth of large tensors: 8 x 1.5 MiB alive at once, then all freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [torch.empty(384 * 1024).fill_(1.0) for _ in range(8)]
    del tensors
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, *faults)
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_kept_memory_removes_the_page_faults_of_repeated_steps():
    """Eight 1.5 MiB tensors alive at once, then freed, thirty times (the pattern of a training step: a
    (1024, 512) low-rank-κ `dn` step took ~1000 faults a step with glibc's defaults). With the defaults the
    second round faults its pages in again (the first freed the heap's top: more than twice the threshold);
    with the fixed thresholds the rounds reuse the pages (measured: 2 945 faults vs 0; the heap still grows
    now and then, by 768–1 152 pages in one round)."""
    kept, *with_kept = _python(FAULTS_PER_ROUND, "keep").split()
    _, *with_defaults = _python(FAULTS_PER_ROUND, "default").split()
    assert kept == "True"
    assert int(with_defaults[1]) > 1000, with_defaults  # 8 x 1.5 MiB = 3 072 pages of 4 KiB
    # kept: 28 more rounds take fewer faults than one round's pages (only the heap's growth, now and then)
    assert sum(int(f) for f in with_kept[2:]) < 3072, with_kept


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
