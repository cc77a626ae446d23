"""Comparing two answer sets (lateralnorm.report.compare): a reference and a re-run made with stand-in
trainers whose verdicts are known — one cell keeps its verdict, one moves to "no detectable difference"
with its sign kept, one reverses — and the CLI's `results --compare`."""

from __future__ import annotations

from pathlib import Path

import pytest

from lateralnorm.cli import main
from lateralnorm.errors import UsageError
from lateralnorm.report.compare import compare_sets, render_markdown, study_folders
from lateralnorm.runconfig import EpochMetrics, RunConfig, RunResult
from lateralnorm.study import run_study, validate_spec

WOBBLE = {0: 0.000, 1: 0.010, 2: -0.006, 3: 0.004}
NOISE = {0: 0.02, 1: -0.025, 2: 0.01, 3: -0.004}
# accuracy per norm in each set: relu better in both; rms worse, then noisy around the baseline (moved,
# sign kept); gelu better, then worse (a reversal)
REFERENCE = {"ln": 0.60, "relu": 0.70, "rms": 0.55, "gelu": 0.65}
RERUN = {"ln": 0.60, "relu": 0.69, "rms": 0.595, "gelu": 0.55}


def stand_in(acc: dict[str, float]):
    def run(config: RunConfig) -> RunResult:
        a = acc[config.norm] + WOBBLE[config.seed] + (NOISE[config.seed] if config.norm == "rms" else 0.0)
        history = [EpochMetrics(epoch=1, train_loss=1.0, train_acc=a, test_loss=1.0, test_acc=a, lr=config.lr,
                                wall_s=0.01, samples_per_s=1000.0)]  # fmt: skip
        return RunResult(run_id=config.run_id(), config=config.model_dump(mode="json"), status="done",
                         test_acc=a, train_acc=a, test_loss=1 - a, history=history, samples_per_s=1000.0,
                         num_params=10, wall_s=0.1, out_dir=config.out_dir)  # fmt: skip

    return run


SPEC = {"name": "cmp", "seeds": [0, 1, 2, 3], "baseline": {"norm": "ln"}, "base": {"epochs": 1, "width": 8},
        "grid": {"norm": list(REFERENCE)}}  # fmt: skip


def answer_set(root: Path, acc: dict[str, float], folders: tuple[str, ...] = ("cmp-mnist1d",)) -> Path:
    for folder in folders:
        run_study(validate_spec(SPEC), root / "studies" / folder, executor="inline", run_fn=stand_in(acc),
                  echo=lambda _: None)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("compare")
    ref = answer_set(base / "ref", REFERENCE, ("cmp-mnist1d", "only-in-ref"))
    return ref, answer_set(base / "new", RERUN)


def test_the_comparison_finds_the_kept_the_moved_and_the_reversed_verdict(sets):
    ref, new = sets
    studies = compare_sets(ref, new)
    assert [s.folder for s in studies] == ["cmp-mnist1d", "only-in-ref"]
    assert studies[1].missing == "candidate" and not studies[1].cells
    cells = {c.cell: c for c in studies[0].cells}
    assert set(cells) == {"norm=relu", "norm=rms", "norm=gelu"}  # the baseline cell is not compared
    relu, rms, gelu = cells["norm=relu"], cells["norm=rms"], cells["norm=gelu"]
    assert (relu.reference, relu.candidate) == ("better", "better") and relu.same_verdict
    assert relu.ref_diff[0] == pytest.approx(0.10) and relu.cand_diff[0] == pytest.approx(0.09)
    assert relu.within_ci is False  # the wobble is shared by both cells: the reference CI is ±0 wide
    assert (rms.reference, rms.candidate) == ("worse", "no_difference") and not rms.same_verdict
    assert rms.cand_diff[0] < 0 and not rms.reversal  # moved with its sign kept
    assert (gelu.reference, gelu.candidate) == ("better", "worse") and gelu.reversal
    assert studies[0].same == 1 and len(studies[0].reversals) == 1


def test_a_set_compared_with_itself_agrees_everywhere(sets):
    ref, _ = sets
    (s, _) = compare_sets(ref, ref)
    assert s.same == len(s.cells) == 3 and not s.reversals
    assert s.within == 3  # every difference lies in its own interval, a zero-width one included
    assert s.runs_paired == s.runs_equal == 16  # 4 norms × 4 seeds, each run the same to the last bit


def test_runs_are_paired_by_run_id_and_compared_to_the_last_bit(sets):
    """The re-run's ln runs repeat the reference's; relu, rms and gelu changed their accuracy: 4 of 16 equal. A
    run equal but for one ulp of its test loss, or for its status, is not equal; NaN metrics equal each other."""
    import numpy as np
    import pandas as pd

    from lateralnorm.report.compare import equal_runs

    (s, _) = compare_sets(*sets)
    assert (s.runs_paired, s.runs_equal) == (16, 4)
    ref = pd.DataFrame({"run_id": ["a", "b", "c", "d", "e"], "status": ["done"] * 4 + ["diverged"],
                        "test_acc": [0.5, 0.6, np.nan, 0.7, np.nan], "test_loss": [1.0, 2.0, 3.0, 4.0, np.nan]})  # fmt: skip
    new = ref.copy()
    new.loc[1, "test_loss"] = np.nextafter(2.0, 3.0)  # one ulp
    new.loc[3, "status"] = "failed"
    new = pd.concat(
        [new, pd.DataFrame({"run_id": ["z"], "status": ["done"], "test_acc": [0.1], "test_loss": [1.0]})]
    )
    assert equal_runs(ref, new) == (5, 3)  # a, c (NaN = NaN) and e; z is in one table only


def test_the_markdown_names_every_moved_cell_and_the_totals(sets):
    text = render_markdown(compare_sets(*sets), "ref", "new")
    assert "| cmp-mnist1d | 1 of 3 |" in text and "| **all** | **1 of 3** |" in text
    assert "| runs equal in every final metric (paired by run id) |" in text.splitlines()[0]
    assert text.splitlines()[2].endswith("| 4 of 16 |") and "| **4 of 16** |" in text
    assert "only-in-ref | not in new |" in text
    assert "- norm=rms: worse" in text and "→ no detectable difference" in text
    assert "- norm=gelu: better +5.00" in text and "**reversal**" in text
    assert "norm=relu:" not in text  # kept verdicts are only counted


def test_results_compare_writes_the_comparison_and_refuses_a_bad_reference(sets, tmp_path, capsys):
    ref, new = sets
    manifest = tmp_path / "none.toml"
    manifest.write_text("")  # an empty manifest: nothing to run, the report needs a study
    with pytest.raises(UsageError, match="holds no study folders"):
        study_folders(tmp_path)
    assert main(["results", str(manifest), "--out", str(new), "--compare", str(tmp_path)]) == 2
    assert "holds no study folders" in capsys.readouterr().err
    assert main(["results", str(manifest), "--out", str(new), "--compare", str(new)]) == 2
    assert "is the output folder itself" in capsys.readouterr().err
    assert not (new / "comparison.md").exists()  # nothing written before the checks


def test_the_compare_command_prints_and_writes_the_table(sets, tmp_path, capsys):
    ref, new = sets
    out = tmp_path / "cmp.md"
    assert main(["compare", str(ref), str(new), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| cmp-mnist1d | 1 of 3 |" in printed and out.read_text().startswith(f"# {new} against {ref}")
    assert main(["compare", str(ref), str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_several_re_runs_list_the_cells_whose_verdict_is_not_stable(sets, capsys):
    ref, new = sets
    assert main(["compare", str(ref), str(new), str(ref)]) == 0  # two re-runs: the changed one and a copy
    text = capsys.readouterr().out
    across = text[text.index("## Across") :]
    assert "| cmp-mnist1d | 3 | 1 of 3 |" in across  # relu is better in all three sets
    assert "- norm=rms: worse -4.97; no detectable difference -0.48; worse -4.97" in across
    assert "- norm=gelu: better +5.00; worse -5.00; better +5.00" in across
    assert "norm=relu:" not in across
