"""`lateralnorm study reprobe`: probes recomputed on stored runs, replaced only where the retrained run is the
stored model (its final metrics equal), one run at a time; everything else in the store stays as it was."""

from __future__ import annotations

import sqlite3

import pytest

from lateralnorm.cli import main
from lateralnorm.errors import UsageError
from lateralnorm.study import InlineExecutor, Store, run_study, validate_spec
from lateralnorm.study import executors as ex_mod
from lateralnorm.study.reprobe import reprobe
from test_study_run import RAW, fake_run


def _probe_values(db) -> dict:  # noqa: ANN001
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT r.cell_label, r.seed, p.probe, p.json FROM probe_results p JOIN runs r USING (run_id)"
        ).fetchall()
    finally:
        con.close()
    return {(c, s, p): j for c, s, p, j in rows}


def test_reprobe_replaces_only_the_same_models_probes(tmp_path, monkeypatch):
    version = {"v": 1}
    monkeypatch.setattr(ex_mod, "_run_probes", lambda names, run_dir: {n: {"v": version["v"]} for n in names})
    monkeypatch.setattr("lateralnorm.study.spec._known_probes", lambda: ("sparsity", "crosstalk"))
    spec = validate_spec({**RAW, "probes": ["sparsity", "crosstalk"], "grid": {"lr": [0.01, 0.1]}})
    out = tmp_path / "study"
    run_study(spec, out, executor=InlineExecutor(fake_run), echo=lambda s: None)
    db = out / "study.db"
    before = _probe_values(db)
    assert len(before) == 8 and all(j == '{"v": 1}' for j in before.values())
    con = sqlite3.connect(db)  # one run of the lr = 0.1 cell no longer matches what the trainer gives
    con.execute(
        "UPDATE final_metrics SET test_acc = 0.123 WHERE run_id = "
        "(SELECT run_id FROM runs WHERE cell_label LIKE '%lr=0.1%' AND seed = 1)"
    )
    con.commit()
    con.close()

    version["v"] = 2
    lines: list[str] = []
    report = reprobe(out, ["crosstalk"], ["lr=0.1"], executor=InlineExecutor(fake_run), echo=lines.append)
    assert len(report.replaced) == 1 and len(report.differ) == 1 and not report.failed and not report.ok
    assert "test_acc" in report.differ[0][1] and "0.123" in report.differ[0][1]
    after = _probe_values(db)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {(label, 0, "crosstalk") for (label, seed, probe) in before if "lr=0.1" in label}
    assert after[next(iter(changed))] == '{"v": 2}'
    with Store(out) as store:
        assert store.counts()["done"] == 4 and store.check()[0] == []
        (record,) = store.meta()["reprobes"]  # which rows were recomputed, and which kept
        assert record["probes"] == ["crosstalk"] and record["replaced"] == report.replaced
        assert record["kept"] == [report.differ[0][0]]
    assert any("not the stored model" in line for line in lines)
    with pytest.raises(UsageError, match="no finished run .* holds crosstalk in cells matching lr=7"):
        reprobe(out, ["crosstalk"], ["lr=7"], executor=InlineExecutor(fake_run))
    assert _probe_values(db) == after


def test_reprobe_refuses_bad_input(tmp_path, capsys):
    with pytest.raises(UsageError, match="unknown probe"):
        reprobe(tmp_path, ["crosstlk"])
    with pytest.raises(UsageError, match="holds no study"):
        reprobe(tmp_path, ["crosstalk"])
    assert main(["study", "reprobe", str(tmp_path), "--probe", "crosstalk"]) != 0
    err = capsys.readouterr().err
    assert "holds no study" in err and len(err.strip().splitlines()) == 1


def test_a_matrix_kappa_learned_alpha_run_that_differs_is_told_how_it_was_stored(monkeypatch):
    """Runs stored before 2026-12-07 stop 38 differentiated the composite formula for a matrix κ with a learned α
    (no `matrix_learned_alpha` in their versions): a CPU run of that kind that does not retrain to its stored model
    is told the switch that retrains it that way. Not told: a fixed α, an O(N) κ, CUDA runs, runs stored the way
    in use now, unreadable specs."""
    from lateralnorm.study.reprobe import matrix_alpha_hint

    run = {"model": "mlp", "norm": "dn:kappa=full,learn_alpha=true,alpha=1", "device": "cpu", "out_dir": "x"}
    monkeypatch.delenv("LATERALNORM_MATRIX_LEARNED_ALPHA", raising=False)
    assert "LATERALNORM_MATRIX_LEARNED_ALPHA=formula" in matrix_alpha_hint(run, {"torch": "2.13.0"})
    assert "LATERALNORM_MATRIX_LEARNED_ALPHA=formula" in matrix_alpha_hint(
        {**run, "norm": "gdn:learn_alpha=true"}, {}
    )
    assert matrix_alpha_hint(run, {"matrix_learned_alpha": "kernel"}) == ""
    assert matrix_alpha_hint({**run, "norm": "dn:kappa=full,alpha=1"}, {}) == ""
    assert matrix_alpha_hint({**run, "norm": "dn:learn_alpha=true,alpha=1"}, {}) == ""
    assert matrix_alpha_hint({**run, "device": "cuda"}, {}) == ""
    assert matrix_alpha_hint({**run, "norm": "dn:kappa=nonsense"}, {}) == ""
    monkeypatch.setenv("LATERALNORM_MATRIX_LEARNED_ALPHA", "formula")
    assert matrix_alpha_hint(run, {}) == ""
    assert "LATERALNORM_MATRIX_LEARNED_ALPHA=kernel" in matrix_alpha_hint(
        run, {"matrix_learned_alpha": "kernel"}
    )


def test_a_low_rank_run_that_differs_is_told_how_it_was_stored(monkeypatch):
    """Runs stored before 2026-12-07 took torch's matmuls in a low-rank κ's pool (no `lowrank_products` in their
    versions): a CPU run of rank <= 16 that does not retrain to its stored model is told the switch that retrains
    it that way. Not told: other norms (whatever its folder is called), ranks past the kernel's, CUDA runs, runs
    stored with the products in use now."""
    from lateralnorm.study.reprobe import lowrank_hint

    lowrank = {"model": "mlp", "norm": "dn:kappa=lowrank:8,alpha=2", "device": "cpu", "out_dir": "x"}
    monkeypatch.delenv("LATERALNORM_LOWRANK_PRODUCTS", raising=False)
    assert "LATERALNORM_LOWRANK_PRODUCTS=torch" in lowrank_hint(lowrank, {"torch": "2.13.0"})
    assert "LATERALNORM_LOWRANK_PRODUCTS=torch" in lowrank_hint(lowrank, {"lowrank_products": "torch"})
    assert lowrank_hint(lowrank, {"lowrank_products": "kernel"}) == ""
    assert lowrank_hint({"norm": "ln", "out_dir": "results/lowrank_sweep/r1"}, {}) == ""
    assert lowrank_hint({**lowrank, "norm": "dn:kappa=lowrank:32"}, {}) == ""
    assert lowrank_hint({**lowrank, "device": "cuda"}, {}) == ""
    monkeypatch.setenv("LATERALNORM_LOWRANK_PRODUCTS", "torch")
    assert lowrank_hint(lowrank, {}) == ""
    assert "LATERALNORM_LOWRANK_PRODUCTS=kernel" in lowrank_hint(lowrank, {"lowrank_products": "kernel"})


def test_a_channels_first_matrix_kappa_run_that_differs_is_told_how_it_was_stored(monkeypatch):
    """Runs stored before 2026-12-07 stop 43 (no `channel_pool` in their versions) ran a CNN's matrix κ over the
    channels on rows: such a CPU run that does not retrain to its stored model is told the switch that retrains
    it that way. Not told: an MLP's (features-last) κ, a centered κ, a learned α, a low-rank κ, CUDA runs, runs
    stored the way in use now."""
    from lateralnorm.study.reprobe import channel_pool_hint

    run = {"model": "cnn1d", "norm": "gdn", "device": "cpu", "out_dir": "x"}
    monkeypatch.delenv("LATERALNORM_CHANNEL_POOL", raising=False)
    assert "LATERALNORM_CHANNEL_POOL=rows" in channel_pool_hint(run, {"torch": "2.13.0"})
    assert "LATERALNORM_CHANNEL_POOL=rows" in channel_pool_hint(
        {**run, "model": "cnn", "norm": "dn:kappa=full"}, {}
    )
    assert channel_pool_hint(run, {"channel_pool": "planes"}) == ""
    assert channel_pool_hint({**run, "model": "mlp"}, {}) == ""
    assert channel_pool_hint({**run, "norm": "dn:kappa=full,center=true"}, {}) == ""
    assert channel_pool_hint({**run, "norm": "gdn:learn_alpha=true"}, {}) == ""
    assert channel_pool_hint({**run, "norm": "dn:kappa=lowrank:4"}, {}) == ""
    assert channel_pool_hint({**run, "norm": "dn:kappa=band:2"}, {}) == ""
    assert channel_pool_hint({**run, "device": "cuda"}, {}) == ""
    monkeypatch.setenv("LATERALNORM_CHANNEL_POOL", "rows")
    assert channel_pool_hint(run, {}) == ""
    assert "LATERALNORM_CHANNEL_POOL=planes" in channel_pool_hint(run, {"channel_pool": "planes"})
