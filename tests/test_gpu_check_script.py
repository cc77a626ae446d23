"""`benchmarks/gpu_check.py` itself, run the way a lent GPU machine runs it but on the CPU (`--device cpu`):
device time is scarce, so a script that fails on a check of its own making (a model family it feeds the wrong
input, an import it lacks) must fail here first, in the default suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lateralnorm.models import MODELS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_sections_a_and_b_pass_on_cpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--sections", "ab"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "OK: 0 failing check(s) in a/b" in out
    for model in MODELS:  # every model family took its step (a new family cannot be left out silently)
        assert f"PASS    b.model   {model} norm=ln " in out, f"no passing model step for {model!r}"
