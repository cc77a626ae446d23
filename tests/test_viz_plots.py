"""Study plots from synthetic frames (known numbers), the probe-result adapters, and `viz study`'s errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from lateralnorm.cli import main
from lateralnorm.errors import UsageError
from lateralnorm.study import stats
from lateralnorm.viz import plots

CELLS = ["norm=ln", "norm=relu>ln", "norm=dn"]
TS = [0.0, 0.5, 1.0, 4.0, 16.0]


def _frames():
    runs, epochs, probes = [], [], []
    for k, cell in enumerate(CELLS):
        for seed in range(3):
            rid = f"{cell}-{seed}"
            runs.append(
                {
                    "run_id": rid,
                    "cell": cell,
                    "seed": seed,
                    "status": "done",
                    "test_acc": 0.8 + 0.01 * k + 0.001 * seed,
                }
            )
            for e in range(4):
                epochs.append({"run_id": rid, "cell": cell, "seed": seed, "epoch": e, "test_acc": 0.5 + 0.1 * e + 0.01 * seed,
                               "test_loss": 1.0 / (e + 1)})  # fmt: skip
            d = [t * (k == 0) / (1 + t) for t in TS]
            probes.append({"run_id": rid, "cell": cell, "seed": seed, "probe": "crosstalk",
                           "result": {"layers": {"n0": {"t_rel": TS, "D": {"median": d, "mean": d}},
                                                 "n1": {"t_rel": TS, "n_samples": 0}}}})  # fmt: skip
            probes.append(
                {
                    "run_id": rid,
                    "cell": cell,
                    "seed": seed,
                    "probe": "sparsity",
                    "result": {
                        "layers": {"n0": {"hoyer": 0.1 * k, "rows": 5}, "n1": {"hoyer": 0.1 * k + 0.2}}
                    },
                }
            )
            probes.append(
                {
                    "run_id": rid,
                    "cell": cell,
                    "seed": seed,
                    "probe": "invariance",
                    "result": {"layers": {"n0": {"scale_change_max": 0.0, "shift_change_max": float(k)}}},
                }
            )
    return pd.DataFrame(runs), pd.DataFrame(epochs), pd.DataFrame(probes)


def _lines(fig: Figure):
    return [ln for ln in fig.axes[0].get_lines() if ln.get_label() and not ln.get_label().startswith("_")]


def test_learning_curves_plot_the_seed_mean():
    _, epochs, _ = _frames()
    fig = plots.learning_curves(epochs)
    lines = _lines(fig)
    assert [ln.get_label() for ln in lines] == [f"{c}  (n = 3 seeds)" for c in CELLS]
    np.testing.assert_allclose(lines[0].get_ydata(), [0.51, 0.61, 0.71, 0.81])  # mean of seeds 0, 1, 2
    assert fig.axes[0].get_xlabel() == "epoch" and fig.axes[0].get_ylabel() == "test accuracy"
    with pytest.raises(UsageError, match="lacks column"):
        plots.learning_curves(epochs.drop(columns=["seed"]))


def test_forest_plot_marks_intervals_that_exclude_zero():
    diffs = pd.DataFrame({"cell": ["a", "b", "c"], "mean_diff": [0.02, -0.01, 0.001],
                          "diff_ci_low": [0.01, -0.02, -0.01], "diff_ci_high": [0.03, 0.0 - 1e-3, 0.012],
                          "n_pairs": [5, 5, 5]})  # fmt: skip
    fig = plots.forest_plot(diffs, "base")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "c", "a"]  # sorted by difference
    ci_lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2 and ln.get_linestyle() == "-"]
    colors = {tuple(np.round(ln.get_xdata(), 4)): ln.get_color() for ln in ci_lines}
    assert colors[(0.01, 0.03)] == "#2e9d5b" and colors[(-0.02, -0.001)] == "#e4572e"
    assert colors[(-0.01, 0.012)] == "#5b6475"  # crosses 0: neutral grey
    assert "base" in ax.get_title()


def test_probe_adapters_and_crosstalk_curve():
    _, _, probes = _frames()
    ct = plots.crosstalk_frame(probes)
    assert len(ct) == len(CELLS) * 3 * len(TS)  # the layer without samples is skipped
    ln = ct[(ct.cell == "norm=ln") & (ct.t == 1.0)]
    np.testing.assert_allclose(ln["D"], 0.5)
    fig = plots.crosstalk_curves(ct)
    lines = _lines(fig)
    np.testing.assert_allclose(lines[0].get_ydata(), [t / (1 + t) for t in TS])
    np.testing.assert_allclose(lines[1].get_ydata(), 0.0)
    sp = plots.layer_stat_frame(probes, "sparsity", "hoyer")
    assert set(sp.columns) == {"run_id", "cell", "seed", "layer", "value"} and len(sp) == 18
    fig = plots.metric_bars(sp, title="t")
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [0.1, 0.2, 0.3])  # mean over the two layers, then over seeds


def test_plot_frames_writes_every_plot(tmp_path):
    runs, epochs, probes = _frames()
    files = plots.plot_frames(runs, epochs, probes, tmp_path, baseline="norm=ln", dpi=30)
    assert sorted(p.name for p in files) == sorted(
        [
            "learning_curves.png",
            "learning_curves_loss.png",
            "forest.png",
            "crosstalk.png",
            "sparsity.png",
            "invariance_scale.png",
            "invariance_shift.png",
        ]  # fmt: skip
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)  # no temp files left
    with pytest.raises(UsageError, match="baseline 'norm=bn' is not a cell"):
        plots.plot_frames(runs, epochs, probes, tmp_path, baseline="norm=bn")


def test_cli_viz_study_errors(tmp_cwd, capsys):
    assert main(["viz", "study", "missing"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _fake_run(config):
    """A stand-in trainer with known metrics and a crosstalk probe result (no training)."""
    from lateralnorm.runconfig import EpochMetrics, RunResult

    acc = 0.6 + (0.05 if config.norm == "relu>ln" else 0.0) + 0.01 * config.seed
    history = [
        EpochMetrics(
            epoch=e,
            train_loss=1 / e,
            train_acc=acc,
            test_loss=1 / e,
            test_acc=acc * e / 2,
            lr=config.lr,
            wall_s=0.01,
            samples_per_s=1.0,
        )  # fmt: skip
        for e in (1, 2)
    ]
    d = [0.0 if config.norm == "relu>ln" else t / (1 + t) for t in TS]
    probes = {"crosstalk": {"layers": {"n0": {"t_rel": TS, "D": {"median": d}}}}}
    return RunResult(run_id=config.run_id(), config=config.model_dump(mode="json"), status="done", test_acc=acc,
                     test_loss=0.5, history=history, probes=probes)  # fmt: skip


def test_viz_study_reads_a_study_folder(tmp_cwd, capsys):
    from lateralnorm.study import run_study, validate_spec

    raw = {"name": "pics", "seeds": [0, 1, 2], "baseline": {"norm": "ln"},
           "base": {"epochs": 2, "checkpoint": False}, "grid": {"norm": ["ln", "relu>ln"]}}  # fmt: skip
    run_study(validate_spec(raw), tmp_cwd / "s", executor="inline", run_fn=_fake_run, echo=lambda _: None)
    assert main(["viz", "study", "s", "-o", "pics"]) == 0
    names = [p.split("/")[-1] for p in capsys.readouterr().out.split()]
    assert names == ["learning_curves.png", "learning_curves_loss.png", "forest.png", "crosstalk.png"]
    assert all((tmp_cwd / "pics" / n).stat().st_size > 5000 for n in names)
    assert main(["viz", "study", "s", "--baseline", "norm=bn"]) == 2
    assert "is not a cell" in capsys.readouterr().err


def test_the_forest_plot_draws_and_names_the_studys_interval_level(tmp_path, monkeypatch):
    """A sequential study's intervals are wider than 95%: the figure must draw them at the study's level and
    say so (the report's tables and the figures in results/ then show the same intervals)."""
    runs = pd.DataFrame({"cell": ["base", "a"] * 4, "seed": [0, 0, 1, 1, 2, 2, 3, 3], "status": "done",
                         "test_acc": [0.50, 0.52, 0.50, 0.53, 0.50, 0.515, 0.50, 0.535]})  # fmt: skip
    drawn = []
    real = plots.forest_plot
    monkeypatch.setattr(
        plots, "forest_plot", lambda d, *a, **k: drawn.append((d, k["level"])) or real(d, *a, **k)
    )
    for confidence in (0.95, 0.99):
        plots.plot_frames(runs, pd.DataFrame(), pd.DataFrame(), tmp_path / str(confidence), "base",
                          confidence=confidence)  # fmt: skip
        assert (tmp_path / str(confidence) / "forest.png").is_file()
    (d95, level95), (d99, level99) = drawn
    assert (level95, level99) == ("95%", "99%")
    span = {
        k: float(d["diff_ci_high"].iloc[0] - d["diff_ci_low"].iloc[0]) for k, d in (("95", d95), ("99", d99))
    }
    assert span["99"] > span["95"] * 1.5  # t quantiles at 3 degrees of freedom: 5.84 vs 3.18
    assert "99% CI" in real(d99, "base", level="99%").axes[0].get_title()
    assert stats.level_label(1 - 0.05 / 3) == "98.3%"


def test_study_figures_use_the_metric_the_study_judges(tmp_path, monkeypatch):
    """A study judged on test loss (the transformer study) gets a forest plot of test loss, both from
    `lateralnorm viz study` and in the answer set's figures/."""
    from lateralnorm import results
    from lateralnorm.study import run_study, validate_spec

    raw = {"name": "lossy", "metric": "test_loss", "seeds": [0, 1, 2], "baseline": {"norm": "ln"},
           "base": {"epochs": 2, "checkpoint": False}, "grid": {"norm": ["ln", "relu>ln"]}}  # fmt: skip
    run_study(validate_spec(raw), tmp_path / "s", executor="inline", run_fn=_fake_run, echo=lambda _: None)
    metrics = []
    real = plots.forest_plot
    monkeypatch.setattr(plots, "forest_plot", lambda d, b, m, **k: metrics.append(m) or real(d, b, m, **k))
    plots.plot_study(tmp_path / "s", tmp_path / "pics")
    results._figures([tmp_path / "s"], tmp_path / "answer", capacity=[])
    assert metrics == ["test_loss", "test_loss"]
    assert (tmp_path / "answer" / "figures" / "s" / "forest.svg").is_file()


def test_a_loss_that_goes_up_is_drawn_as_worse():
    diffs = pd.DataFrame({"cell": ["up", "down"], "mean_diff": [0.5, -0.5], "diff_ci_low": [0.4, -0.6],
                          "diff_ci_high": [0.6, -0.4]})  # fmt: skip
    for metric, up_color in (("test_loss", "#e4572e"), ("test_acc", "#2e9d5b")):
        ax = plots.forest_plot(diffs, "base", metric).axes[0]
        colors = {
            tuple(np.round(ln.get_xdata(), 2)): ln.get_color()
            for ln in ax.get_lines()
            if len(ln.get_xdata()) == 2
        }
        assert colors[(0.4, 0.6)] == up_color and colors[(-0.6, -0.4)] != up_color
