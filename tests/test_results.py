"""`lateralnorm results` (make results) end to end on a tiny manifest: the studies run in order with progress
and a time estimate, then report, runs.csv, figures and the stamp; a second call resumes without training;
--report-only keeps the runs' provenance in the stamp."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from lateralnorm import results

SPEC = """
name = "tiny"
seeds = [0, 1]
baseline = { norm = "ln" }
[base]
dataset = "moons"
samples = 200
model = "mlp"
width = 8
depth = 1
epochs = 2
batch_size = 32
lr = 0.01
checkpoint = false
[grid]
norm = ["ln", "relu>ln"]
[variants.other]
seeds = [0, 1, 2]
"""


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    (tmp_path / "tiny.toml").write_text(SPEC)
    m = tmp_path / "set.toml"
    m.write_text(
        '[[study]]\nspec = "tiny.toml"\nminutes = 1\n[[study]]\nspec = "tiny.toml"\nvariant = "other"\nminutes = 2\n'
    )
    monkeypatch.setattr(results, "CAPACITY", dict(specs=["none", "ln"], widths=[4], depths=[1], seeds=[0], samples=32,
                                                 steps=5))  # fmt: skip
    return m


@pytest.mark.slow  # a minute or more: real training in a worker pool, the report, the figures, three times
def test_the_answer_set_runs_resumes_and_keeps_its_provenance(manifest, tmp_path):
    out, said = tmp_path / "answers", []
    stamp = results.run_all(manifest, out, workers=1, echo=said.append)
    assert [line.split("  ")[0] for line in said if line.startswith("=== [")] == [
        "=== [1/2] tiny-moons", "=== [2/2] tiny-other",
    ]  # fmt: skip
    assert "estimated left 3m" in said[0]  # the manifest's minutes, before anything is measured
    for name in ("report.html", "runs.csv", "capacity.json", "STAMP.json"):
        assert (out / name).is_file(), name
    assert (out / "figures" / "tiny-moons" / "forest.png").is_file()
    assert (out / "figures" / "tiny-other" / "forest.svg").is_file()
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 + 2 * 3  # both studies, every run
    assert stamp["runs"]["tiny-other"]["done"] == 6 and set(stamp["wall_s"]) == {"tiny-moons", "tiny-other"}
    assert stamp["machine"]["cores"] and stamp["commit"] and "report_rebuilt" not in stamp
    assert stamp["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()

    again = results.run_all(manifest, out, workers=1, echo=said.append)  # resumes: nothing left to train
    assert again["runs"] == stamp["runs"]
    rebuilt = results.run_all(manifest, out, workers=1, report_only=True, echo=said.append)
    assert rebuilt["date"] == again["date"] and rebuilt["machine"] == again["machine"]  # the runs' provenance
    assert rebuilt["report_rebuilt"]["date"] >= again["date"]
    assert json.loads((out / "STAMP.json").read_text()) == rebuilt
