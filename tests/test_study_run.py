"""Running studies: resume, fail-fast, retry, probes, the lock, the real trainer end to end.

`fake_run` here is also the stand-in trainer of test_study_kill.py (its workers import this module)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lateralnorm.cli import main
from lateralnorm.errors import UsageError
from lateralnorm.runconfig import EpochMetrics, RunConfig, RunResult
from lateralnorm.study import InlineExecutor, Store, Study, load_spec, run_study, validate_spec
from lateralnorm.study import executors as ex_mod
from lateralnorm.study.runner import StudyLock

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "studies" / "example_quick.toml"


def fake_run(config: RunConfig) -> RunResult:
    """A stand-in trainer: logs "run_id pid" to $FAKE_RUN_LOG, sleeps $FAKE_RUN_DELAY, fails for
    lr >= $FAKE_RUN_MAX_LR (default 0.5), diverges for lr == 0.25, else 'trains' config.epochs epochs."""
    if log := os.environ.get("FAKE_RUN_LOG"):
        with open(log, "a") as f:
            f.write(f"{config.run_id()} {os.getpid()}\n")
    if config.lr == float(os.environ.get("FAKE_RUN_EXIT_LR", "-1")):
        time.sleep(0.3)
        os._exit(9)  # the worker process dies, as on an out-of-memory kill
    time.sleep(float(os.environ.get("FAKE_RUN_DELAY", "0")))
    if config.lr >= float(os.environ.get("FAKE_RUN_MAX_LR", "0.5")):
        raise ValueError(f"lr={config.lr} is too large for the fake trainer")
    acc = 0.5 + 0.01 * config.seed + config.lr
    history = [
        EpochMetrics(
            epoch=e,
            train_loss=1 / e,
            train_acc=acc,
            test_loss=1 / e,
            test_acc=acc,
            lr=config.lr,
            wall_s=0.01,
            samples_per_s=1.0,
        )  # fmt: skip
        for e in range(1, config.epochs + 1)
    ]
    diverged = config.lr == 0.25
    return RunResult(
        run_id=config.run_id(), config=config.model_dump(mode="json"), status="diverged" if diverged else "done",
        test_acc=None if diverged else acc, diverged_step=3 if diverged else None, history=history,
        out_dir=config.out_dir,
    )  # fmt: skip


RAW = {
    "name": "fake",
    "seeds": [0, 1],
    "baseline": {"lr": 0.01},
    "base": {"epochs": 2},
    "grid": {"lr": [0.01, 0.1, 0.25, 0.5]},
}


def logged(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_resume_fail_fast_and_retry_failed(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_RUN_LOG", str(log))
    spec, out, lines = validate_spec(RAW), tmp_path / "study", []

    r = run_study(spec, out, executor=InlineExecutor(fake_run), fail_fast=True, echo=lines.append)
    assert r.stopped_early and (r.done, r.diverged, len(r.failed)) == (2, 1, 1)
    assert any("FAILED" in x and "ValueError: lr=0.5 is too large" in x for x in lines)
    with Store(out) as store:
        assert store.counts() == {"pending": 4, "running": 0, "done": 2, "failed": 1, "diverged": 1}

    r = run_study(spec, out, executor=InlineExecutor(fake_run), echo=lines.append)  # resume: 4 pending only
    assert (r.skipped, r.done, r.diverged, len(r.failed)) == (3, 2, 1, 1)
    assert len(logged(log)) == 8 and len(set(logged(log))) == 8  # nothing ran twice

    monkeypatch.setenv("FAKE_RUN_MAX_LR", "9")  # the cause of the failures is fixed
    r = run_study(spec, out, executor=InlineExecutor(fake_run), retry_failed=True, echo=lines.append)
    assert r.done == 2 and not r.failed and len(logged(log)) == 10
    r = run_study(spec, out, executor=InlineExecutor(fake_run), echo=lines.append)  # idempotent
    assert r.skipped == 8 and r.done == 0 and len(logged(log)) == 10

    with Study.load(out) as study:
        runs = study.runs()
        assert runs["status"].value_counts().to_dict() == {"done": 6, "diverged": 2}
        assert runs.loc[runs["lr"] == 0.5, "attempts"].tolist() == [2, 2]
        assert len(study.epochs()) == 16
        table = study.summary().set_index("cell")
        assert table.loc["lr=0.1", "mean_diff"] == pytest.approx(0.09)
        assert table.loc["lr=0.25", "n_diverged"] == 2


def test_probes_run_after_training_and_are_stored(tmp_path, monkeypatch):
    calls = []

    def probes(names, run_dir):
        calls.append((names, run_dir))
        return {
            n: {"value": 0.5, "run_dir": run_dir} if n == "sparsity" else {"error": "ValueError: no"}
            for n in names
        }

    monkeypatch.setattr(ex_mod, "_run_probes", probes)
    monkeypatch.setattr("lateralnorm.study.spec._known_probes", lambda: ("sparsity", "crosstalk"))
    spec = validate_spec({**RAW, "probes": ["sparsity", "crosstalk"], "grid": {"lr": [0.01, 0.25]}})
    run_study(spec, tmp_path, executor=InlineExecutor(fake_run), echo=lambda s: None)
    assert len(calls) == 2  # diverged runs are not probed
    with Study.load(tmp_path) as study:
        probes_df = study.probes()
        assert len(probes_df) == 4 and set(probes_df["probe"]) == {"sparsity", "crosstalk"}
        assert probes_df.loc[probes_df["probe"] == "sparsity", "value"].tolist() == [0.5, 0.5]
    with pytest.raises(UsageError, match="unknown probe 'sparsty'; did you mean 'sparsity'"):
        validate_spec({**RAW, "probes": ["sparsty"]})
    with pytest.raises(UsageError, match="set checkpoint = true"):
        validate_spec({**RAW, "probes": ["sparsity"], "base": {"checkpoint": False}})


def test_second_driver_is_refused_and_folder_must_match(tmp_cwd, capsys):
    spec_path = tmp_cwd / "spec.toml"
    spec_path.write_text(EXAMPLE.read_text())
    study_dir = tmp_cwd / "runs" / "example_quick"
    study_dir.mkdir(parents=True)
    with StudyLock(study_dir):
        assert main(["study", "run", str(spec_path), "--executor", "inline"]) == 2
    err = capsys.readouterr().err
    assert "in use by another `lateralnorm study` run or reprobe" in err and f"pid {os.getpid()}" in err
    assert not (study_dir / "study.db").exists()

    spec = load_spec(spec_path)
    run_study(spec.model_copy(update={"grid": {"norm": ["ln"], "placement": ["post"]}, "seeds": [0]}),
              study_dir, executor=InlineExecutor(fake_run), echo=lambda s: None)  # fmt: skip
    with pytest.raises(UsageError, match="holds study 'example_quick', not 'example_quick --variant quick'"):
        run_study(load_spec(spec_path, "quick"), study_dir, executor=InlineExecutor(fake_run))


def test_real_trainer_then_status_summary_export(tmp_cwd, capsys):
    assert main(["study", "run", str(EXAMPLE), "--variant", "quick", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 runs, 0 finished" in out and "4 done, 0 diverged, 0 failed" in out
    study_dir = tmp_cwd / "runs" / "example_quick"
    with Study.load(study_dir) as study:
        runs = study.runs()
        assert (runs["status"] == "done").all() and runs["test_acc"].between(0, 1).all()
        assert runs["out_dir"].map(lambda d: (Path(d) / "config.json").exists()).all()
        assert len(study.epochs()) == 4  # 1 epoch each
        probes = study.probes()  # the spec's probes ran on each trained run
        assert len(probes) == 4 and set(probes["probe"]) == {"sparsity"}
        assert all("error" not in r and r["layers"] for r in probes["result"]), probes["result"].tolist()
    assert main(["study", "status", str(study_dir)]) == 0
    assert "done 4" in capsys.readouterr().out
    assert main(["study", "summary", str(study_dir)]) == 0
    assert "norm=relu>ln, placement=pre" in capsys.readouterr().out
    for fmt in ("csv", "parquet"):
        assert main(["study", "export", str(study_dir), "--format", fmt]) == 0
        assert (study_dir / f"runs.{fmt}").stat().st_size > 0
    assert not list(study_dir.glob(".runs.*"))  # no temp files left


def test_a_dead_worker_does_not_fail_its_siblings_run(tmp_path, monkeypatch):
    """One run kills its worker process: that run fails (after a retry on its own), the run beside it in the
    other worker, caught in the broken pool, is run again on its own and finishes."""
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    monkeypatch.setenv("FAKE_RUN_DELAY", "1.0")
    monkeypatch.setenv("FAKE_RUN_EXIT_LR", "0.5")
    spec = validate_spec({**RAW, "seeds": [0], "baseline": None, "grid": {"lr": [0.5, 0.01]}})
    lines: list[str] = []
    report = run_study(spec, tmp_path, executor=ex_mod.LocalExecutor(2, "test_study_run:fake_run", threads=1),
                       echo=lines.append)  # fmt: skip
    assert report.done == 1 and len(report.failed) == 1
    assert "worker process died (also when run alone)" in report.failed[0][1]
    with Study.load(tmp_path) as study:
        runs = study.runs().set_index("lr")
    assert runs.loc[0.01, "status"] == "done" and runs.loc[0.5, "status"] == "failed"


def _env_of_worker(name: str) -> str | None:
    return os.environ.get(name)


def test_pool_workers_start_from_the_fork_server_with_the_drivers_current_environment(monkeypatch):
    """On Linux the pool forks its workers from a fork server that has torch imported; a variable the driver
    sets after that server started (by an earlier pool) is still what the next pool's workers see."""
    assert ex_mod.default_context() == "forkserver"
    first = ex_mod.LocalExecutor(1, threads=1)
    first.start()
    assert first.pool.submit(_env_of_worker, "LATERALNORM_TEST_ENV").result() is None
    first.shutdown()
    monkeypatch.setenv("LATERALNORM_TEST_ENV", "set later")
    second = ex_mod.LocalExecutor(1, threads=1)
    second.start()
    try:
        assert second.pool.submit(_env_of_worker, "LATERALNORM_TEST_ENV").result() == "set later"
        assert second.pool._mp_context.get_start_method() == "forkserver"  # noqa: SLF001
    finally:
        second.shutdown()


def test_summary_marks_every_stratum_baseline(tmp_path, capsys):
    """A compare_within study pairs each cell with its stratum's baseline: the summary marks each of them
    as a baseline (not as a cell with no comparison) and says so in its title."""
    spec = validate_spec(
        {
            "name": "strata",
            "seeds": [0, 1, 2],
            "baseline": {"lr": 0.01},
            "compare_within": ["epochs"],
            "grid": {"lr": [0.01, 0.1], "epochs": [1, 2]},
        }
    )
    out = tmp_path / "study"
    run_study(spec, out, executor=InlineExecutor(fake_run), echo=lambda s: None)
    assert main(["study", "summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert "each cell vs its stratum's baseline" in text
    assert text.count("baseline ") >= 2  # one per stratum (epochs 1 and 2), each marked
    lines = [ln for ln in text.splitlines() if "lr=0.01" in ln]
    assert len(lines) == 2 and all("*" in ln and "baseline" in ln for ln in lines)
