"""Study plots: learning curves with seed bands, a forest plot against the baseline, cross-talk curves D(t),
sparsity and invariance bars. Each plot takes a tidy DataFrame (columns documented per function), so it can
be drawn from synthetic frames in tests; `plot_study` reads a study folder and writes them all.

Every function returns a matplotlib Figure (no pyplot state); `save_figure` writes it atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lateralnorm.atomic import atomic_path
from lateralnorm.errors import UsageError
from lateralnorm.study.stats import lower_is_better, t_interval

PALETTE = ("#2a6fdb", "#e4572e", "#2e9d5b", "#8a5cc7", "#f2a541", "#17a2b8", "#7f7f7f", "#c2185b", "#5d4037")
LABELS = {"test_acc": "test accuracy", "train_acc": "train accuracy", "test_loss": "test loss",
          "train_loss": "train loss"}  # fmt: skip


def _need(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UsageError(
            f"{what}: the table lacks column(s) {', '.join(missing)} (it has: {', '.join(map(str, df.columns))})"
        )


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _style(i: int) -> str:
    """Line styles cycle with the colours so that overlapping lines (e.g. several at 0) stay visible."""
    return ("-", "--", "-.", ":")[i % 4]


def _ci95(values: np.ndarray) -> float:
    """Half-width of the 95% t interval of the mean (0 for fewer than 2 values)."""
    lo, hi = t_interval(values[np.isfinite(values)])
    return float((hi - lo) / 2) if np.isfinite(hi) else 0.0


def _pretty(metric: str) -> str:
    return LABELS.get(metric, metric.replace("_", " "))


# ------------------------------------------------------------------------------------------ learning curves
def learning_curves(
    epochs: pd.DataFrame, metric: str = "test_acc", by: str = "cell", title: str | None = None
) -> Figure:
    """Mean over seeds per `by` group against epoch, with a band of ±1 standard deviation over seeds.

    epochs: columns `by` (e.g. cell), seed, epoch, `metric` (one row per run and epoch, as Study.epochs()).
    """
    _need(epochs, (by, "seed", "epoch", metric), "learning curves")
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.subplots()
    for i, (name, g) in enumerate(epochs.groupby(by, sort=False)):
        per_epoch = g.groupby("epoch")[metric]
        mean, std, n = per_epoch.mean(), per_epoch.std(ddof=1).fillna(0.0), per_epoch.count()
        ax.plot(mean.index, mean.values, color=_color(i), lw=2, marker="o", ms=3, ls=_style(i),
                label=f"{name}  (n = {int(n.max())} seeds)")  # fmt: skip
        ax.fill_between(mean.index, mean - std, mean + std, color=_color(i), alpha=0.18, lw=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(_pretty(metric))
    ax.grid(True, color="#e7ebf1")
    ax.set_title(title or f"{_pretty(metric)} per epoch: mean over seeds, band ±1 s.d.", fontsize=11)
    ax.legend(fontsize=8, loc="best")
    return fig


# ---------------------------------------------------------------------------------------------- forest plot
def forest_plot(
    diffs: pd.DataFrame, baseline: str, metric: str = "test_acc", by: str = "cell", level: str = "95%"
) -> Figure:
    """Each cell's mean paired difference to the baseline with its confidence interval (at `level`, the level
    the intervals in `diffs` were computed at: a sequential study's are wider than 95%).

    diffs: columns `by`, mean_diff, diff_ci_low, diff_ci_high, and optionally n_pairs and p_t_holm
    (the output of lateralnorm.study.stats.paired_vs_baseline). Intervals that exclude 0 are drawn solid.
    """
    _need(diffs, (by, "mean_diff", "diff_ci_low", "diff_ci_high"), "forest plot")
    good_sign = -1.0 if lower_is_better(metric) else 1.0  # a loss that goes down is the better one
    d = diffs.dropna(subset=["mean_diff"]).sort_values("mean_diff").reset_index(drop=True)
    fig = Figure(figsize=(7.5, 1.2 + 0.42 * max(len(d), 1)), layout="constrained")
    ax = fig.subplots()
    ax.axvline(0.0, color="#5b6475", lw=1, ls="--")
    for i, row in d.iterrows():
        lo, hi = row["diff_ci_low"], row["diff_ci_high"]
        has_ci = np.isfinite(lo) and np.isfinite(hi)
        clear = has_ci and (lo > 0 or hi < 0)
        color = ("#2e9d5b" if row["mean_diff"] * good_sign > 0 else "#e4572e") if clear else "#5b6475"
        if has_ci:
            ax.plot([lo, hi], [i, i], color=color, lw=2.2, alpha=1.0 if clear else 0.6)
        ax.plot(row["mean_diff"], i, "s", color=color, ms=7)
        note = []
        if "n_pairs" in d.columns:
            note.append(f"n={int(row['n_pairs'])}")
        if "p_t_holm" in d.columns and np.isfinite(row["p_t_holm"]):
            note.append(f"p_holm={row['p_t_holm']:.2g}")
        if note:
            ax.annotate("  ".join(note), (1.01, i), xycoords=("axes fraction", "data"), va="center", fontsize=8,
                        color="#5b6475")  # fmt: skip
    ax.set_yticks(range(len(d)), [str(c) for c in d[by]])
    ax.set_ylim(-0.7, max(len(d), 1) - 0.3)
    ax.set_xlabel(f"difference in {_pretty(metric)} vs baseline (cell − baseline, paired on seed)")
    ax.grid(True, axis="x", color="#e7ebf1")
    ax.set_title(f"Each cell against the baseline\n'{baseline}': mean difference and {level} CI", fontsize=11)
    if d.empty:
        ax.text(0.5, 0.5, "no comparable cells", transform=ax.transAxes, ha="center")
    return fig


# ------------------------------------------------------------------------------------------ cross-talk D(t)
def crosstalk_curves(curves: pd.DataFrame, by: str = "cell", value: str = "D") -> Figure:
    """Cross-talk D(t) = ‖z_P(t) − z_P(0)‖/‖z_P(0)‖ as one silent unit is driven down by t (pool RMS units).

    curves: columns `by`, t, `value`, and optionally seed and layer; lines are means over seeds and
    layers, the band spans the smallest to the largest run mean.
    """
    _need(curves, (by, "t", value), "cross-talk curves")
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.subplots()
    run_cols = [c for c in ("seed", "run_id") if c in curves.columns]
    for i, (name, g) in enumerate(curves.groupby(by, sort=False)):
        per_run = g.groupby(run_cols + ["t"])[value].mean().reset_index() if run_cols else g
        agg = per_run.groupby("t")[value].agg(["mean", "min", "max"])
        ax.plot(
            agg.index, agg["mean"], color=_color(i), lw=2, marker="o", ms=3, label=str(name), ls=_style(i)
        )
        ax.fill_between(agg.index, agg["min"], agg["max"], color=_color(i), alpha=0.15, lw=0)
    ax.set_xscale("symlog", linthresh=0.25)
    ax.set_xlabel("drive t of one silent unit (y_j − t), in units of the pool's RMS")
    ax.set_ylabel("disturbance D(t) of the active units" if value == "D" else value)
    ax.grid(True, color="#e7ebf1")
    ax.set_title("Cross-talk: how much pushing one unit negative moves the positive ones", fontsize=11)
    ax.legend(fontsize=8, loc="upper left")
    return fig


# ------------------------------------------------------------------------------------------------ bar plots
def metric_bars(values: pd.DataFrame, value: str = "value", by: str = "cell", title: str = "",
                ylabel: str | None = None) -> Figure:  # fmt: skip
    """Mean per `by` group as a bar with its 95% CI, every run as a dot.

    values: columns `by`, `value`, optionally seed (several rows per run, e.g. per layer, are averaged first).
    """
    _need(values, (by, value), "bar plot")
    keys = [by] + [c for c in ("run_id", "seed") if c in values.columns]
    runs = values.groupby(keys, sort=False)[value].mean().reset_index()
    groups = list(runs.groupby(by, sort=False))
    fig = Figure(figsize=(max(6.0, 1.3 * len(groups) + 2), 4.6), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # fixed jitter: same picture every time
    for i, (_, g) in enumerate(groups):
        v = g[value].to_numpy(dtype=float)
        mean = float(np.nanmean(v)) if v.size else math.nan
        ax.bar(i, mean, color=_color(i), alpha=0.55, width=0.7, yerr=_ci95(v), capsize=4, ecolor="#1d2330")
        ax.scatter(
            i + rng.uniform(-0.15, 0.15, v.size), v, s=14, color=_color(i), edgecolor="white", zorder=3
        )
    names = [str(n) for n, _ in groups]
    crowded = len(groups) > 4 or max((len(n) for n in names), default=0) > 14
    ax.set_xticks(
        range(len(groups)), names, rotation=25 if crowded else 0, ha="right" if crowded else "center"
    )
    ax.set_ylabel(ylabel or value.replace("_", " "))
    ax.grid(True, axis="y", color="#e7ebf1")
    ax.set_axisbelow(True)
    ax.set_title(title or f"{value}: mean with 95% CI, dots are runs", fontsize=11)
    return fig


# ------------------------------------------------------------------------------ probe results → tidy frames
def _layers(result: Any) -> dict[str, dict]:
    if isinstance(result, dict) and isinstance(result.get("layers"), dict):
        return {k: v for k, v in result["layers"].items() if isinstance(v, dict)}
    return {}


def crosstalk_frame(probes: pd.DataFrame, stat: str = "median") -> pd.DataFrame:
    """Study.probes() rows of the crosstalk probe → columns run_id, cell, seed, layer, t, D.

    Per layer the probe stores t_rel and D as quantiles over samples ({"mean", "median", ...}) or a list;
    `stat` picks the quantile."""
    rows = []
    for rec in probes[probes["probe"] == "crosstalk"].to_dict("records") if len(probes) else []:
        for layer, res in _layers(rec["result"]).items():
            ts, d = res.get("t_rel"), res.get("D")
            if isinstance(d, dict):
                d = d.get(stat, d.get("mean"))
            if not ts or not isinstance(d, list):
                continue
            for t, v in zip(ts, d):
                rows.append({"run_id": rec["run_id"], "cell": rec["cell"], "seed": rec["seed"], "layer": layer,
                             "t": float(t), "D": float(v)})  # fmt: skip
    return pd.DataFrame(rows, columns=["run_id", "cell", "seed", "layer", "t", "D"])


def layer_stat_frame(probes: pd.DataFrame, probe: str, stat: str) -> pd.DataFrame:
    """Study.probes() rows of one probe → columns run_id, cell, seed, layer, value (the layer's `stat`)."""
    rows = []
    for rec in probes[probes["probe"] == probe].to_dict("records") if len(probes) else []:
        for layer, res in _layers(rec["result"]).items():
            v = res.get(stat)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                rows.append({"run_id": rec["run_id"], "cell": rec["cell"], "seed": rec["seed"], "layer": layer,
                             "value": float(v)})  # fmt: skip
    return pd.DataFrame(rows, columns=["run_id", "cell", "seed", "layer", "value"])


# ------------------------------------------------------------------------------------------------- output
def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write a figure to `path` atomically (temp file, then os.replace); deterministic PNG metadata."""
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, metadata={"Software": None} if out.suffix == ".png" else None)
    return out


def plot_frames(runs: pd.DataFrame, epochs: pd.DataFrame, probes: pd.DataFrame, out_dir: str | os.PathLike[str],
                baseline: str | dict[str, str] | None = None, metric: str = "test_acc", dpi: int = 110,
                formats: tuple[str, ...] = ("png",), confidence: float = 0.95) -> list[Path]:  # fmt: skip
    """Every plot the frames allow (as Study.runs()/.epochs()/.probes() return them) into out_dir, once per
    file format. `baseline` is one cell label or a map cell -> its baseline (a compare_within study);
    `metric` the one the study judges; `confidence` the level of the forest plot's intervals (the study's)."""
    from lateralnorm.study import stats

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Figure]] = []
    if len(epochs) and metric in epochs.columns:
        figures.append(("learning_curves", learning_curves(epochs, metric)))
        if "test_loss" in epochs.columns and epochs["test_loss"].notna().any():
            figures.append(("learning_curves_loss", learning_curves(epochs, "test_loss")))
        if "grad_norm_max" in epochs.columns and epochs["grad_norm_max"].notna().any():
            figures.append(("grad_norm", learning_curves(epochs, "grad_norm_max")))
    if baseline is not None and len(runs):
        if isinstance(baseline, str) and baseline not in set(runs["cell"]):
            cells = ", ".join(map(repr, pd.unique(runs["cell"])))
            raise UsageError(f"baseline {baseline!r} is not a cell of this study; cells: {cells}")
        diffs = stats.paired_vs_baseline(runs, baseline, metric, confidence=confidence)
        label = baseline if isinstance(baseline, str) else "each cell's own baseline"
        figures.append(("forest", forest_plot(diffs, label, metric, level=stats.level_label(confidence))))
    ct = crosstalk_frame(probes)
    if len(ct):
        figures.append(("crosstalk", crosstalk_curves(ct)))
    sp = layer_stat_frame(probes, "sparsity", "hoyer")
    if len(sp):
        figures.append(("sparsity", metric_bars(sp, title="Sparsity of the norm outputs\n(Hoyer: 0 dense, 1 one-hot; mean over layers)",
                                                ylabel="Hoyer sparsity")))  # fmt: skip
    folds = layer_stat_frame(probes, "folds", "folds_per_unit")
    if len(folds):
        figures.append(("folds", metric_bars(folds, title="Folds: direction changes per unit along lines\n(0 for a linear map; mean over layers)",
                                             ylabel="folds per unit")))  # fmt: skip
    for stat, what, name in (("scale_change_max", "scaling", "invariance_scale"),
                             ("shift_change_max", "shifting", "invariance_shift")):  # fmt: skip
        inv = layer_stat_frame(probes, "invariance", stat)
        if len(inv):
            fig = metric_bars(inv, title=f"Invariance to {what} the input\nlargest relative output change (0 = invariant)", ylabel=f"max relative change ({what})")  # fmt: skip
            figures.append((name, fig))
    return [save_figure(fig, out / f"{name}.{ext}", dpi) for name, fig in figures for ext in formats]


def capacity_bars(records: list[dict[str, Any]]) -> Figure:
    """Training accuracy on random labels (memorization) per norm and depth: mean over seeds, dots are seeds."""
    frame = pd.DataFrame(records)
    _need(frame, ("norm", "depth", "train_acc"), "capacity plot")
    depths = sorted(frame["depth"].unique())
    norms = list(pd.unique(frame["norm"]))
    fig = Figure(figsize=(7.5, 4.4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(norms), 1)
    for j, norm in enumerate(norms):
        for k, depth in enumerate(depths):
            v = (
                frame[(frame["norm"] == norm) & (frame["depth"] == depth)]["train_acc"].to_numpy(dtype=float)
                * 100
            )
            x = k + (j - (len(norms) - 1) / 2) * width
            ax.bar(x, v.mean() if v.size else math.nan, width=width * 0.9, color=_color(j), alpha=0.6,
                   label=str(norm) if k == 0 else None)  # fmt: skip
            ax.scatter(np.full(v.size, x), v, s=10, color=_color(j), edgecolor="white", zorder=3)
    if "chance" in frame.columns:
        ax.axhline(float(frame["chance"].iloc[0]) * 100, color="#5b6475", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(depths)), [f"depth {d}" for d in depths])
    ax.set_ylabel("training accuracy on random labels (%)")
    w = int(frame["width"].iloc[0]) if "width" in frame.columns else None
    n = int(frame["samples"].iloc[0]) if "samples" in frame.columns else None
    ax.set_title(
        f"Memorization capacity: {n} random labels, width {w}\n[Linear → norm] × depth → Linear, full-batch Adam",
        fontsize=11,
    )
    ax.grid(True, axis="y", color="#e7ebf1")
    ax.set_axisbelow(True)
    ax.legend(fontsize=8)
    return fig


def plot_study(study_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
               baseline: str | None = None, metric: str | None = None) -> list[Path]:  # fmt: skip
    """Read a study folder (lateralnorm.study.Study) and write its plots; returns the files written. The
    metric defaults to the one the study's spec judges, the baseline to the study's (per cell for a
    compare_within study), and the forest plot's intervals take the study's level."""
    from lateralnorm.study import Study

    path = Path(study_dir)
    if not path.is_dir():
        raise UsageError(
            f"study folder '{path}' does not exist; give the folder `lateralnorm study run` wrote"
        )
    study = Study.load(path)
    try:
        runs, epochs, probes, meta = study.runs(), study.epochs(), study.probes(), study.meta
        base = baseline if baseline is not None else study.baselines
        confidence = study.confidence
    finally:
        study.close()
    if runs.empty:
        raise UsageError(f"study '{path}' has no runs yet; run it first (lateralnorm study run)")
    metric = metric or (meta.get("spec") or {}).get("metric") or "test_acc"
    written = plot_frames(
        runs, epochs, probes, out_dir if out_dir is not None else path / "plots", base, metric,
        confidence=confidence,
    )  # fmt: skip
    if not written:
        raise UsageError(f"study '{path}' has no finished runs with metrics to plot yet")
    return written
