"""Plan determinism and the SQLite store: round trip, idempotence, one-transaction results, schema."""

from __future__ import annotations

import sqlite3

import pytest

from lateralnorm.errors import UsageError
from lateralnorm.runconfig import EpochMetrics, RunResult
from lateralnorm.study import Study
from lateralnorm.study.plan import plan
from lateralnorm.study.spec import validate_spec
from lateralnorm.study.store import SCHEMA_VERSION, Store

RAW = {
    "name": "t",
    "seeds": [0, 1],
    "baseline": {"norm": "ln", "lr": 0.01},
    "base": {"epochs": 2, "width": 8},
    "grid": {"norm": ["ln", "none"], "lr": [0.01, 0.1, 0.2]},
}


def result_for(p, acc: float = 0.5, status: str = "done", probes: dict | None = None) -> RunResult:
    history = [
        EpochMetrics(
            epoch=e,
            train_loss=1 / e,
            train_acc=acc,
            test_loss=1 / e,
            test_acc=acc,
            lr=0.1,
            wall_s=0.1,
            samples_per_s=100.0,
            grad_norm=float(e),
        )  # fmt: skip
        for e in (1, 2)
    ]
    return RunResult(
        run_id=p.run_id, config=p.config.model_dump(mode="json"), status=status, test_acc=acc, test_loss=1.0,
        train_acc=acc, train_loss=float("nan"), history=history, wall_s=0.2, out_dir=p.config.out_dir,
        probes=probes or {},
    )  # fmt: skip


def test_plan_is_deterministic_seed_major_and_readable(tmp_path):
    spec = validate_spec(RAW)
    a, b = plan(spec, tmp_path), plan(validate_spec(dict(RAW)), tmp_path)
    assert [p.run_id for p in a] == [p.run_id for p in b]
    assert len(a) == 12 and len({p.run_id for p in a}) == 12
    assert [p.seed for p in a] == [0] * 6 + [1] * 6
    assert a[0].cell == {"norm": "ln", "lr": 0.01} and a[0].cell_label == "norm=ln, lr=0.01"
    assert a[0].run_id.startswith("mlp-ln-post-s0-") and a[0].run_id == a[0].config.run_id()
    assert a[0].config.out_dir == str(tmp_path / "artifacts" / a[0].run_id)
    # an id depends on what changes the result only
    assert (
        plan(validate_spec({**RAW, "base": {**RAW["base"], "threads": 3}}), "elsewhere")[0].run_id
        == a[0].run_id
    )
    assert (
        plan(validate_spec({**RAW, "base": {**RAW["base"], "width": 9}}), tmp_path)[0].run_id != a[0].run_id
    )


def test_plan_refuses_cells_that_give_the_same_run():
    spec = validate_spec({**RAW, "grid": {"lr": [0.1, "0.1"]}, "baseline": None})
    with pytest.raises(UsageError, match="give the same run"):
        plan(spec, "x")


def test_store_round_trip_and_dataframes(tmp_path):
    planned = plan(validate_spec(RAW), tmp_path)
    with Store(tmp_path) as store:
        assert store.add_runs(planned) == 12 and store.add_runs(planned) == 0  # idempotent
        store.set_meta(name="t", baseline="norm=ln, lr=0.01", axes=["norm", "lr"], workers=2)
        store.mark_running(planned[0].run_id, "w1")
        store.record_result(
            result_for(planned[0], 0.7, probes={"sparsity": {"hoyer": 0.25, "curve": [1, 2]}})
        )
        store.mark_running(planned[1].run_id, "w1")
        store.record_result(result_for(planned[1], 0.1, status="diverged"))
        store.mark_running(planned[2].run_id, "w1")
        store.record_failure(planned[2].run_id, "ValueError: boom", "Traceback...", 0.5)
        store.mark_running(planned[3].run_id, "w1")  # left running, as by a killed driver
        assert store.counts() == {"pending": 8, "running": 1, "done": 1, "failed": 1, "diverged": 1}
        assert store.integrity_check() == "ok"

    with Study.load(tmp_path) as study:
        assert study.name == "t" and study.baseline == "norm=ln, lr=0.01" and study.axes == ["norm", "lr"]
        runs = study.runs()
        assert len(runs) == 12 and runs["run_id"].tolist() == [p.run_id for p in planned]
        first = runs.iloc[0]
        assert first["status"] == "done" and first["test_acc"] == 0.7 and first["norm"] == "ln"
        assert first["width"] == 8 and first["cell"] == "norm=ln, lr=0.01" and first["attempts"] == 1
        assert runs["train_loss"].isna().iloc[0]  # NaN survives as missing
        assert runs.iloc[2]["error"] == "ValueError: boom" and runs.iloc[1]["status"] == "diverged"
        epochs = study.epochs()
        assert len(epochs) == 4 and set(epochs["run_id"]) == {planned[0].run_id, planned[1].run_id}
        assert epochs["grad_norm"].tolist() == [1.0, 2.0, 1.0, 2.0]  # extra epoch metrics become columns
        probes = study.probes()
        assert (
            len(probes) == 1
            and probes.iloc[0]["hoyer"] == 0.25
            and probes.iloc[0]["result"]["curve"] == [1, 2]
        )
        assert study.eta_s() == pytest.approx(9 * (0.2 + 0.2 + 0.5) / 3 / 2)  # 9 left, mean 0.3 s, 2 workers
        with pytest.raises(sqlite3.OperationalError):  # readers never write
            study.store.conn.execute("DELETE FROM runs")

    with Store(tmp_path) as store:
        assert store.requeue_running() == 1 and store.counts()["running"] == 0
        store.mark_running(planned[0].run_id, "w2")  # a rerun replaces results, never duplicates them
        store.record_result(result_for(planned[0], 0.9))
        assert (
            store.rows("SELECT COUNT(*) FROM epoch_metrics WHERE run_id=?", (planned[0].run_id,))[0][0] == 2
        )
        assert store.rows("SELECT COUNT(*) FROM probe_results")[0][0] == 0
        assert store.rows("SELECT test_acc, attempts FROM final_metrics JOIN runs USING (run_id) WHERE run_id=?",
                          (planned[0].run_id,))[0][:] == (0.9, 2)  # fmt: skip


def test_result_and_status_land_in_one_transaction(tmp_path):
    planned = plan(validate_spec(RAW), tmp_path)
    with Store(tmp_path) as store:
        store.add_runs(planned)
        store.mark_running(planned[0].run_id, "w")
        # the status update is the last statement: make it fail after the metrics went in
        store.conn.execute(
            "CREATE TRIGGER boom BEFORE UPDATE OF status ON runs WHEN NEW.status = 'done' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
        with pytest.raises(sqlite3.IntegrityError, match="boom"):
            store.record_result(result_for(planned[0], probes={"sparsity": {"x": 1}}))
        assert store.counts()["running"] == 1
        for table in ("final_metrics", "epoch_metrics", "probe_results"):
            assert store.rows(f"SELECT COUNT(*) FROM {table}")[0][0] == 0


def test_schema_version_and_missing_store(tmp_path):
    with Store(tmp_path) as store:
        assert store.rows("SELECT version FROM schema_version")[0][0] == SCHEMA_VERSION
        assert store.rows("PRAGMA journal_mode")[0][0] == "wal"
        store.conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(UsageError, match="newer"):
        Store(tmp_path)
    with pytest.raises(UsageError, match="not a study folder"):
        Study.load(tmp_path / "nothing")


def test_threads_column_is_planned_or_recorded(tmp_path):
    """runs()'s `threads`: the planned count where the spec set one, else the torch threads the run recorded
    training with (`versions`: a reduction split over more threads may add in another order); blank for a run
    that recorded none (stored before it was recorded)."""
    import torch

    from lateralnorm.train import versions

    assert versions()["torch_threads"] == str(torch.get_num_threads())
    planned = plan(validate_spec(RAW), tmp_path)
    fixed = plan(validate_spec({**RAW, "base": {**RAW["base"], "threads": 3}}), tmp_path / "b")
    with Store(tmp_path) as store:
        store.add_runs(planned[:2])
        store.set_meta(name="t", baseline="norm=ln, lr=0.01", axes=["norm", "lr"], workers=1)
        for p, recorded in zip(planned[:2], ({"torch_threads": "2"}, {})):
            store.mark_running(p.run_id, "w1")
            store.record_result(result_for(p).model_copy(update={"versions": recorded}))
    with Study.load(tmp_path) as study:
        assert study.runs()["threads"].tolist()[:1] == [2] and study.runs()["threads"].isna().tolist()[1]
    with Store(tmp_path / "b") as store:
        store.add_runs(fixed[:1])
        store.set_meta(name="t", baseline="norm=ln, lr=0.01", axes=["norm", "lr"], workers=1)
        store.mark_running(fixed[0].run_id, "w1")
        store.record_result(result_for(fixed[0]).model_copy(update={"versions": {"torch_threads": "1"}}))
    with Study.load(tmp_path / "b") as study:
        assert study.runs()["threads"].tolist() == [3]  # as planned
