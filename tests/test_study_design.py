"""The full studies' design: include/exclude cells, compare_within strata, learning-rate tuning on a
validation split, seeds until resolved (sequential α-spending), and the trainer settings they need."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lateralnorm.data import load_dataset
from lateralnorm.errors import UsageError
from lateralnorm.runconfig import EpochMetrics, RunConfig, RunResult
from lateralnorm.study import (
    InlineExecutor,
    Store,
    Study,
    adaptive,
    load_spec,
    plan,
    run_study,
    stats,
    tuning,
    validate_spec,
)
from lateralnorm.study.plan import baseline_map, cells
from lateralnorm.study.spec import AdaptiveSpec

ROOT = Path(__file__).resolve().parent.parent
STUDIES = sorted(
    p for p in (ROOT / "studies").glob("q*.toml") if not p.stem.startswith("qt")
)  # image/signal sets


# ------------------------------------------------------------------------------------------------ spec
RAW = {
    "name": "design",
    "seeds": [0, 1],
    "baseline": {"norm": "ln", "placement": "post"},
    "compare_within": ["activation"],
    "exclude": [{"norm": "none", "placement": "pre"}],
    "include": [{"norm": "ln", "placement": "only", "activation": "relu"}],
    "base": {"epochs": 1, "width": 8},
    "grid": {"norm": ["ln", "none"], "placement": ["post", "pre"], "activation": ["relu", "gelu"]},
}


def test_include_exclude_and_compare_within_shape_the_cells_and_their_baselines():
    spec = validate_spec(RAW)
    labels = [", ".join(f"{k}={v}" for k, v in c.items()) for c in cells(spec)]
    assert len(labels) == 2 * 2 * 2 - 2 + 1  # product, less none×pre (2 activations), plus LN-only
    assert "norm=none, placement=pre, activation=relu" not in labels
    assert labels[-1] == "norm=ln, placement=only, activation=relu"
    b = baseline_map(spec)
    assert b["norm=ln, placement=pre, activation=gelu"] == "norm=ln, placement=post, activation=gelu"
    assert b["norm=none, placement=post, activation=relu"] == "norm=ln, placement=post, activation=relu"
    assert b["norm=ln, placement=only, activation=relu"] == "norm=ln, placement=post, activation=relu"
    assert len(plan(spec, "/tmp/x")) == 2 * len(labels)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"exclude": [{"nrom": "none"}]}, "'nrom' is not a grid axis; did you mean 'norm'"),
        ({"exclude": [{"norm": "rms"}]}, "'rms' is not among grid.norm"),
        ({"include": [{"norm": "ln", "placement": "only"}]}, "missing: activation"),
        ({"include": [{"norm": "ln", "placement": "post", "activation": "relu"}]}, "already a cell"),
        ({"compare_within": ["depth"]}, "'depth' is not a grid axis"),
        ({"baseline": {"norm": "ln"}}, "missing: placement"),
        ({"baseline": {"norm": "ln", "placement": "post", "activation": "relu"}}, "is a compare_within axis"),
        ({"exclude": [{"norm": "ln", "placement": "post"}]}, "baseline cell for activation=relu is excluded"),
        ({"tune": {"lr": [0.01]}}, "at least 2"),
        ({"tune": {"lr": [0.01, 0.1], "seeds": [0]}}, "tuning seeds must differ"),
        ({"tune": {"lr": [0.01, -1.0]}}, "tune.lr"),
        ({"adaptive": {"max_seeds": 1, "min_effect": 0.01}}, "greater than or equal to 2"),
        ({"adaptive": {"max_seeds": 10}}, "min_effect"),
    ],
)
def test_design_mistakes_are_one_line_errors(change, message):
    with pytest.raises(UsageError, match=message):
        validate_spec({**RAW, **change})


def test_adaptive_needs_a_baseline_and_tune_cannot_share_the_lr_axis():
    raw = {k: v for k, v in RAW.items() if k not in ("baseline", "compare_within")}
    with pytest.raises(UsageError, match="set baseline"):
        validate_spec({**raw, "adaptive": {"max_seeds": 4, "min_effect": 0.01}})
    with pytest.raises(UsageError, match="either tune it or list it"):
        validate_spec(
            {**raw, "exclude": [], "include": [], "grid": {"lr": [0.1, 0.2]}, "tune": {"lr": [0.01, 0.1]}}
        )


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_shipped_full_studies_cover_both_datasets_with_tuning_and_adaptive_seeds(path):
    full, fashion = load_spec(path), load_spec(path, "fashion")
    assert full.base["dataset"] == "mnist1d" and fashion.base["dataset"] == "fashion-mnist"
    for spec in (full, fashion):
        assert spec.tune is not None and spec.adaptive is not None and spec.baseline is not None
    if "quick" in full.variants:  # the demo stays small: no tuning, no adaptive seeds
        quick = load_spec(path, "quick")
        assert quick.tune is None and quick.adaptive is None and len(quick.seeds) == 3


def test_the_manifest_lists_every_full_study_on_both_datasets():
    from lateralnorm.results import load_manifest

    entries = load_manifest(ROOT / "studies" / "results.toml")
    listed = {(e.spec.name, e.variant) for e in entries}
    # every MLP/CNN/RNN question on MNIST-1D and Fashion-MNIST, and the transformer study on its text
    assert listed == {(p.name, v) for p in STUDIES for v in (None, "fashion")} | {
        ("qt_transformer_norms.toml", None)
    }


# --------------------------------------------------------------------------------------- statistics
def test_stratified_baselines_pair_each_cell_with_its_own():
    rows = []
    for seed in range(4):
        for cell, acc in (("a@8", 0.5), ("b@8", 0.6), ("a@128", 0.7), ("b@128", 0.7)):
            rows.append(
                {
                    "cell": cell,
                    "seed": seed,
                    "status": "done",
                    "test_acc": acc + 0.01 * seed + 0.001 * seed**2 * (cell == "b@8"),
                }
            )
    runs = pd.DataFrame(rows)
    out = stats.paired_vs_baseline(runs, {"a@8": "a@8", "b@8": "a@8", "a@128": "a@128", "b@128": "a@128"})
    out = out.set_index("cell")
    assert list(out.index) == ["b@8", "b@128"] and out.loc["b@8", "baseline"] == "a@8"
    d = np.array([0.1 + 0.001 * s**2 for s in range(4)])
    assert out.loc["b@8", "mean_diff"] == pytest.approx(d.mean())
    assert out.loc["b@128", "mean_diff"] == pytest.approx(0.0)
    # a wider level gives a wider interval around the same mean
    wide = stats.paired_vs_baseline(runs, {"b@8": "a@8", "a@8": "a@8"}, confidence=0.99).set_index("cell")
    assert wide.loc["b@8", "diff_ci_low"] < out.loc["b@8", "diff_ci_low"]


# ------------------------------------------------------------------------------------------- tuning
def test_tuning_picks_the_best_validation_rate_and_avoids_unstable_rates():
    spec = validate_spec({**RAW, "tune": {"lr": [0.001, 0.01, 0.1]}})
    rows = []
    for cell in cells(spec):
        for lr, acc in ((0.001, 0.50), (0.01, 0.60), (0.1, 0.70)):
            status = "diverged" if (lr == 0.1 and cell["activation"] == "gelu") else "done"
            rows.append({**cell, "lr": lr, "status": status, "test_acc": None if status != "done" else acc})
    table = tuning.grid_table(spec, pd.DataFrame(rows))
    chosen = tuning.choose(table)
    assert chosen["norm=ln, placement=post, activation=relu"] == 0.1
    assert chosen["norm=ln, placement=post, activation=gelu"] == 0.01  # 0.1 diverged there
    assert table["chosen"].sum() == len(cells(spec)) and tuning.complete(table, 1)


def test_tune_spec_never_reads_the_test_set():
    spec = validate_spec({**RAW, "tune": {"lr": [0.001, 0.01], "holdout": 0.2}})
    t = tuning.tune_spec(spec)
    assert t.base["holdout"] == 0.2 and "lr" not in t.base and t.grid["lr"] == [0.001, 0.01]
    assert all(p.config.holdout == 0.2 for p in plan(t, "/tmp/t"))
    assert len(plan(t, "/tmp/t")) == 2 * len(cells(spec))


def test_holdout_is_a_fixed_split_of_the_training_set():
    full = load_dataset("digits")
    val = load_dataset("digits", holdout=0.25)
    n = len(full.y_train)
    assert len(val.y_train) + len(val.y_test) == n and len(val.y_test) == round(n * 0.25)
    assert val.meta.evaluation == "validation" and full.meta.evaluation == "test"
    again = load_dataset("digits", holdout=0.25, seed=7)
    assert torch_equal(val.y_test, again.y_test)  # the same split for every seed
    # the validation samples are training samples (standardization differs, so compare labels' counts)
    assert int(val.y_test.bincount(minlength=10).sum()) == len(val.y_test)
    with pytest.raises(UsageError, match="empty split"):
        load_dataset("digits", holdout=1e-6)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_new_fields_keep_old_run_ids_and_change_them_when_set():
    base = RunConfig()
    assert "holdout" not in base.key() and "kappa_decay" not in base.key()
    assert RunConfig(holdout=0.1).run_id() != base.run_id()
    assert RunConfig(kappa_decay=0.0).run_id() != base.run_id()


def test_kappa_decay_reaches_every_kappa_parameter_and_nothing_else():
    from lateralnorm.models import build_model
    from lateralnorm.train import _optimizer

    for norm, n_kappa in (("dn:kappa=full", 2), ("dn:kappa=lowrank:4", 4), ("ln", 0)):
        config = RunConfig(model="mlp", norm=norm, width=8, depth=2, kappa_decay=0.5, weight_decay=0.0)
        model = build_model(config, (40,), 10)
        groups = _optimizer(config, model).param_groups
        assert len(groups[1]["params"]) == n_kappa and groups[1]["weight_decay"] == 0.5
        assert groups[0]["weight_decay"] == 0.0
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_trainer_records_gradient_norms(tmp_path):
    from lateralnorm.train import run

    r = run(
        RunConfig(dataset="digits", model="mlp", width=8, epochs=2, out_dir=str(tmp_path), checkpoint=False),
        progress=False,
    )
    for m in r.history:
        assert 0 < m.grad_norm_mean <= m.grad_norm_max and math.isfinite(m.grad_norm_max)


# ----------------------------------------------------------------------------------------- adaptive
def test_alpha_is_spent_evenly_over_the_planned_looks():
    a = AdaptiveSpec(batch=3, max_seeds=11, min_effect=0.01)
    assert adaptive.max_looks(a, 5) == 3 and adaptive.alpha_per_look(a, 5) == pytest.approx(0.05 / 3)
    assert adaptive.max_looks(AdaptiveSpec(batch=2, max_seeds=5, min_effect=0.01), 5) == 1
    assert "K = 3" in adaptive.rule_text(a, 5) and "0.9833" in adaptive.rule_text(a, 5)


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"cell": c, "seed": s, "status": "done", "test_acc": v} for c, vs in values.items()
                         for s, v in enumerate(vs)])  # fmt: skip


def test_a_look_resolves_clear_and_small_effects_and_adds_seeds_to_the_rest():
    a = AdaptiveSpec(batch=2, max_seeds=7, min_effect=0.01)
    base = [0.60, 0.62, 0.58, 0.61, 0.59]
    runs = _runs({
        "base": base,
        "clear": [x + 0.05 + 0.001 * i for i, x in enumerate(base)],        # a large, steady gain
        "tiny": [x + 0.0005 * (-1) ** i for i, x in enumerate(base)],       # any difference < 1 pt
        "noisy": [x + d for x, d in zip(base, (0.03, -0.04, 0.05, -0.02, 0.01))],  # unresolved
    })  # fmt: skip
    b = {c: "base" for c in ("base", "clear", "tiny", "noisy")}
    seeds = {c: [0, 1, 2, 3, 4] for c in b}
    lk = adaptive.look(runs, b, a, 5, seeds)
    assert lk.resolved == {"clear": "difference", "tiny": "small"}
    assert lk.unresolved == ["noisy"] and lk.add == {"noisy": [5, 6], "base": [5, 6]}
    capped = adaptive.look(runs, b, a, 5, {**seeds, "noisy": list(range(7))})
    assert capped.capped == ["noisy"] and capped.add == {}
    assert adaptive.seeds_needed(1.0, 5, 0.5) == 20 and adaptive.seeds_needed(math.nan, 5, 0.5) is None


def fake_noisy(config: RunConfig) -> RunResult:
    """Accuracy from (norm, lr, seed): 'good' is +5 pts, 'noisy' ± 4 pts by seed parity; lr 0.01 best."""
    rng = np.random.default_rng(config.seed)
    acc = 0.6 + 0.002 * rng.standard_normal() - abs(math.log10(config.lr) + 2) * 0.05
    acc += {"base": 0.0, "good": 0.05, "noisy": 0.04 * (-1) ** config.seed}[config.norm.split(":")[0]]
    m = EpochMetrics(epoch=1, train_loss=1, train_acc=acc, test_loss=1, test_acc=acc, lr=config.lr, wall_s=0.0,
                     samples_per_s=1.0)  # fmt: skip
    return RunResult(run_id=config.run_id(), config=config.model_dump(mode="json"), status="done", test_acc=acc,
                     train_acc=acc, history=[m], out_dir=config.out_dir)  # fmt: skip


def test_runner_tunes_then_adds_seeds_until_resolved_and_resumes_without_rerunning(tmp_path, monkeypatch):
    raw = {
        "name": "seq", "seeds": [0, 1, 2], "baseline": {"norm": "ln"},
        "base": {"epochs": 1}, "grid": {"norm": ["ln", "rms", "none"]},
        "tune": {"lr": [0.001, 0.01, 0.1]}, "adaptive": {"batch": 2, "max_seeds": 7, "min_effect": 0.001},
    }  # fmt: skip
    spec = validate_spec(raw)

    def trainer(config: RunConfig) -> RunResult:
        alias = {"ln": "base", "rms": "good", "none": "noisy"}[config.norm]
        return fake_noisy(config.model_copy(update={"norm": alias}))

    lines: list[str] = []
    run_study(spec, tmp_path, executor=InlineExecutor(trainer), echo=lines.append)
    with Study(tmp_path) as s:
        meta, runs = s.meta, s.runs()
    assert meta["tuned_lr"] == {"norm=ln": 0.01, "norm=rms": 0.01, "norm=none": 0.01}
    assert set(runs["lr"]) == {0.01}  # every main run uses the chosen rate
    with Study(tmp_path / "tune") as t:
        assert len(t.runs()) == 9 and set(t.runs()["holdout"]) == {0.1}
    per_cell = runs.groupby("cell")["seed"].nunique().to_dict()
    assert per_cell["norm=rms"] == 3  # resolved at the first look
    assert per_cell["norm=none"] == 7 and per_cell["norm=ln"] == 7  # unresolved: seeds to the cap
    assert meta["looks"][-1]["capped"] == ["norm=none"]
    assert meta["confidence"] == pytest.approx(1 - 0.05 / 3)
    n = len(runs)
    report = run_study(
        spec, tmp_path, executor=InlineExecutor(trainer), echo=lines.append
    )  # resume: nothing new
    assert report.done == 0
    with Study(tmp_path) as s:
        assert len(s.runs()) == n
        summary = s.summary().set_index("cell")  # the stored level and per-cell baselines are used
        assert summary.loc["norm=rms", "n_pairs"] == 3
    assert any("look 1" in x for x in lines)


def test_a_closed_store_is_one_file_readable_from_read_only_storage(tmp_path):
    spec = validate_spec({"name": "ro", "seeds": [0], "base": {"epochs": 1}, "grid": {"norm": ["ln"]}})
    run_study(spec, tmp_path / "s", executor=InlineExecutor(fake_noisy_ln), echo=lambda s: None)
    db = tmp_path / "s" / "study.db"
    assert not (tmp_path / "s" / "study.db-wal").exists()
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    (tmp_path / "s").chmod(0o555)
    db.chmod(0o444)
    try:
        with Store(tmp_path / "s", readonly=True) as store:
            assert store.counts()["done"] == 1
    finally:
        (tmp_path / "s").chmod(0o755)


def fake_noisy_ln(config: RunConfig) -> RunResult:
    return fake_noisy(config.model_copy(update={"norm": "base"}))


def test_report_shows_the_tuning_grid_the_looks_and_the_sequential_level(tmp_path):
    from lateralnorm.report import build_report

    raw = {
        "name": "seqrep", "seeds": [0, 1, 2], "baseline": {"norm": "ln"}, "base": {"epochs": 1},
        "grid": {"norm": ["ln", "rms", "none"]}, "tune": {"lr": [0.001, 0.01]},
        "adaptive": {"batch": 2, "max_seeds": 5, "min_effect": 0.001},
    }  # fmt: skip

    def trainer(config: RunConfig) -> RunResult:
        return fake_noisy(
            config.model_copy(update={"norm": {"ln": "base", "rms": "good", "none": "noisy"}[config.norm]})
        )

    run_study(validate_spec(raw), tmp_path / "s", executor=InlineExecutor(trainer), echo=lambda s: None)
    html, _ = build_report([tmp_path / "s"], tmp_path / "report.html")
    text = html.read_text()
    assert "Learning rate: chosen per cell" in text and "<b>" in text.split("Learning rate: chosen")[1]
    assert "Seeds until resolved" in text and "K = 2" in text and "Look 2" in text
    assert "difference [97.5% CI]" in text  # 1 − 0.05/2
    assert "seeds for the target width" in text  # the capped noisy cell says how many seeds it would need


def test_the_transformer_study_is_judged_on_the_loss_and_tunes_for_the_lowest():
    spec = load_spec(ROOT / "studies" / "qt_transformer_norms.toml")
    assert spec.metric == "test_loss" and spec.base["model"] == "gpt" and spec.base["dataset"] == "fortunes"
    quick = load_spec(ROOT / "studies" / "qt_transformer_norms.toml", "quick")
    assert quick.tune is None and quick.adaptive is None
    table = pd.DataFrame(
        {"cell": ["a", "a"], "lr": [0.01, 0.1], "n": [1, 1], "lost": [0, 0], "val_mean": [2.0, 1.5]}
    )
    assert tuning.choose(table, lower_is_better=True) == {"a": 0.1} and tuning.choose(table) == {"a": 0.01}
    with pytest.raises(UsageError, match="unknown metric 'test_los'; did you mean 'test_loss'"):
        validate_spec({**RAW, "metric": "test_los"})
