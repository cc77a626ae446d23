"""`benchmarks/gpu_check.py` itself, run the way a lent GPU machine runs it but on the CPU (`--device cpu`):
device time is scarce, so a script that fails on a check of its own making (a model family it feeds the wrong
input, an import it lacks) must fail here first, in the default suite. Sections a and b (the correctness
checks; c is timing), in this process."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lateralnorm.models import MODELS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load(name: str):  # noqa: ANN202
    """benchmarks/gpu_check.py as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_gpu_check_sections_a_and_b_pass_on_cpu(capsys, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)  # the script also writes $OUT/gpu_check.txt when $OUT is set
    script = _load("gpu_check_under_test")
    status = script.main(["--device", "cpu", "--quick", "--sections", "ab"])
    out = capsys.readouterr().out
    assert status == 0, out[-4000:]
    assert "OK: 0 failing check(s) in a/b" in out
    for model in MODELS:  # every model family took its step (a new family cannot be left out silently)
        assert f"PASS    b.model   {model} norm=ln " in out, f"no passing model step for {model!r}"


def test_gpu_check_target5_section_runs_on_cpu(capsys, monkeypatch):
    """Section t (issue 13's target 5) builds its tables in both types and judges each ratio; on the CPU the
    Triton rows are skipped with the reason, and its misses never change the exit status."""
    monkeypatch.delenv("OUT", raising=False)
    script = _load("gpu_check_target5")
    status = script.main(["--device", "cpu", "--quick", "--sections", "t"])
    out = capsys.readouterr().out
    assert status == 0, out[-4000:]
    assert "target 5 at (64, 128) float32" in out and "target 5 at (64, 128) bfloat16" in out
    assert "needs CUDA and Triton" in out
    rows = [line for line in out.splitlines() if line.startswith(("PASS    t.target5", "FAIL    t.target5"))]
    assert len(rows) == 2 and all("dn:kappa=full" in r and "× nn.Linear(N,N) (≤ 1.3)" in r for r in rows)


def test_gpu_check_triton_rows_pass_under_the_interpreter():
    """Section a.triton's check itself, run on the CPU by Triton's interpreter (set in conftest): an O(N) pool
    and a matrix pool's element work reach the kernels and match the float64 path."""
    import pytest
    import torch

    pytest.importorskip("triton")
    from lateralnorm import create_norm

    script = _load("gpu_check_triton")
    for name in ("dn:kappa=band:2", "gdn", "dn:kappa=lowrank:4"):
        ok, detail = script.check_triton(create_norm, name, torch.device("cpu"), interpreted=True)
        assert ok, f"{name}: {detail}"


def test_timing_table_keeps_going_past_a_module_that_fails(capsys, monkeypatch):
    """One module that raises (a kernel that does not compile) gets a 'failed' row; the others are timed."""
    import torch
    from torch import nn

    monkeypatch.delenv("OUT", raising=False)
    script = _load("gpu_check_table")

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("does not compile")

    mods = {"nn.LayerNorm": nn.LayerNorm(8), "broken": Broken(), "nn.Linear(N,N)": nn.Linear(8, 8)}
    med = script.timing_table("t", mods, (4, 8), torch.device("cpu"), rounds=1, iters=1)
    out = capsys.readouterr().out
    assert set(med) == {"nn.LayerNorm", "nn.Linear(N,N)"} and all(v > 0 for v in med.values())
    assert "| broken | failed |" in out and "RuntimeError: does not compile" in out
