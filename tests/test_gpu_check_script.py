"""`benchmarks/gpu_check.py` itself, run the way a lent GPU machine runs it but on the CPU (`--device cpu`):
device time is scarce, so a script that fails on a check of its own making (a model family it feeds the wrong
input, an import it lacks) must fail here first, in the default suite. Sections a and b (the correctness
checks; c is timing), in this process."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lateralnorm.models import MODELS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_sections_a_and_b_pass_on_cpu(capsys, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)  # the script also writes $OUT/gpu_check.txt when $OUT is set
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    status = script.main(["--device", "cpu", "--quick", "--sections", "ab"])
    out = capsys.readouterr().out
    assert status == 0, out[-4000:]
    assert "OK: 0 failing check(s) in a/b" in out
    for model in MODELS:  # every model family took its step (a new family cannot be left out silently)
        assert f"PASS    b.model   {model} norm=ln " in out, f"no passing model step for {model!r}"
