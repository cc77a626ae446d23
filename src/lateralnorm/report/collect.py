"""Read one study folder into the plain data a report section needs: question, design, statistics,
verdicts, figures and raw records. Nothing here writes files; `build.py` renders and writes.

    view = collect(Path("runs/q1"), metric="test_acc")   # StudyView, or UsageError for a bad folder
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from lateralnorm.errors import UsageError
from lateralnorm.report import answers
from lateralnorm.report.verdict import Verdict, fmt_diff, fmt_num, fmt_p, scale_of, verdicts
from lateralnorm.study import Study, adaptive, stats, tuning
from lateralnorm.study.plan import plan
from lateralnorm.study.spec import AdaptiveSpec, StudySpec
from lateralnorm.viz import plots

# columns of the runs table shown inline (the CSV next to the report has every column)
RAW_COLUMNS = ("run_id", "cell", "seed", "status", "test_acc", "train_acc", "test_loss", "samples_per_s",
               "num_params", "wall_s", "error")  # fmt: skip


METRIC_LABELS = {"test_acc": "test accuracy %", "train_acc": "train accuracy %",
                 "test_loss": "test loss (nats per token)", "train_loss": "train loss (nats per token)"}  # fmt: skip


@dataclass
class FigureView:
    title: str
    caption: str
    data_uri: str  # data:image/png;base64,...
    wide: bool = False  # spans the full width of the page (bar plots of many cells)


@dataclass
class StudyView:
    """Everything one report section shows, already formatted as strings where it is text."""

    name: str
    path: Path
    anchor: str
    description: str
    header: list[str]  # paragraphs of the spec file's leading comment
    design: list[tuple[str, str]]  # (label, value) rows
    base: list[tuple[str, str]]  # the spec's [base] settings
    metric: str
    baseline: str | None
    axes: list[str]
    counts: dict[str, int]
    warnings: list[str]
    cells: list[dict[str, Any]]  # one row per cell for the cells table (verdict included)
    paired: list[dict[str, Any]]  # one row per compared cell
    answer: answers.Answer
    figures: list[FigureView] = field(default_factory=list)
    metric_label: str = "test accuracy %"
    level: str = "95%"  # interval level of every CI in the section (higher in a sequential study)
    sequential: list[str] = field(default_factory=list)  # the stopping rule and what each look decided
    tuning: list[dict[str, Any]] = field(default_factory=list)  # per cell: chosen rate, accuracy per rate
    tune_rates: list[float] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # every column, for the CSV
    verdicts: list[Verdict] = field(default_factory=list)


def spec_header(meta: dict[str, Any], study_dir: Path) -> list[str]:
    """The spec file's leading comment as paragraphs, from the copy the runner stored in the database
    (meta["spec_header"]); a file named in the database is never read. [] when there is none."""
    text = meta.get("spec_header")
    if not isinstance(text, str):
        text = ""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:  # a blank comment line, or a "Label:" line, starts a new paragraph
        starts = bool(line) and line.split(" ", 1)[0].endswith(":") and line[0].isupper()
        if (not line or starts) and current:
            paragraphs.append(" ".join(current))
            current = []
        if line:
            current.append(line)
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def figure_uri(fig: Figure, dpi: int = 90) -> str:
    """A matplotlib Figure as an inline PNG data URI (no pyplot state, deterministic metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _date(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError):
        return "–"


def _value(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


def _design(
    meta: dict[str, Any], runs: pd.DataFrame, finished: float | None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    spec = meta.get("spec") or {}
    grid = spec.get("grid") or {}
    n_cells = runs["cell"].nunique()
    seeds = spec.get("seeds") or sorted(runs["seed"].unique().tolist())
    design = [("grid", " × ".join(f"{axis} ∈ {{{', '.join(map(_value, vals))}}}" for axis, vals in grid.items())
               or "–"),
              ("cells × seeds", f"{n_cells} cells × {len(seeds)} seeds (seeds {', '.join(map(str, seeds))}) = "
                                f"{len(runs)} runs"),
              ("baseline", meta.get("baseline") or "none"),
              ("variant", meta.get("variant") or "full (no variant)"),
              ("probes", ", ".join(spec.get("probes") or []) or "none"),
              ("spec file", str(meta.get("spec_path") or "–")),
              ("run", f"started {_date(meta.get('created'))}, last run finished {_date(finished)}, "
                      f"{meta.get('executor', '?')} executor, {meta.get('workers', '?')} workers")]  # fmt: skip
    base = [(k, _value(v)) for k, v in (spec.get("base") or {}).items()]
    return design, base


def _mean_ci(row: Any, k: float) -> str:
    if not math.isfinite(float(row["mean"])):
        return "–"
    if not math.isfinite(float(row["ci_low"])):
        return f"{fmt_num(row['mean'] * k)}"
    half = (row["ci_high"] - row["ci_low"]) / 2 * k
    return f"{fmt_num(row['mean'] * k)} ± {fmt_num(half)}"


def _cells(runs: pd.DataFrame, table: pd.DataFrame, vs: list[Verdict], metric: str) -> list[dict[str, Any]]:
    k, _ = scale_of(metric)
    speed = stats.cell_summary(runs, "samples_per_s").set_index("cell")["mean"]
    train = stats.cell_summary(runs, "train_acc").set_index("cell")["mean"] if "train_acc" in runs else None
    out = []
    for (_, row), v in zip(table.iterrows(), vs):
        cell = row["cell"]
        out.append({
            "cell": cell, "n": int(row["n"]), "mean_ci": _mean_ci(row, k),
            "ci": f"[{fmt_num(row['ci_low'] * k)}, {fmt_num(row['ci_high'] * k)}]",
            "train": fmt_num(train[cell] * 100) if train is not None and pd.notna(train.get(cell)) else "–",
            "n_diverged": int(row["n_diverged"]), "n_failed": int(row["n_failed"]),
            "speed": f"{speed[cell]:,.0f}" if pd.notna(speed.get(cell)) else "–",
            "verdict": v.text, "kind": v.kind, "flags": list(v.flags),
        })  # fmt: skip
    return out


def _paired(table: pd.DataFrame, baseline: str | None, metric: str,
            min_effect: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
    if baseline is None or "mean_diff" not in table.columns:
        return []
    rows = []
    compared = (
        table[table["baseline"].notna()] if "baseline" in table.columns else table[table["cell"] != baseline]
    )
    for _, r in compared.iterrows():
        n = int(r["n_pairs"]) if pd.notna(r["n_pairs"]) else 0
        half = (float(r["diff_ci_high"]) - float(r["diff_ci_low"])) / 2 if n >= 2 else math.nan
        need = ""
        if min_effect and math.isfinite(half) and half > min_effect:
            est = adaptive.seeds_needed(half, n, min_effect)
            need = f"≈{est}" if est else ""
        rows.append({
            "baseline": str(r["baseline"]) if "baseline" in r.index else str(baseline), "need": need,
            "cell": r["cell"], "n_pairs": n,
            "diff": fmt_diff(r, metric) if pd.notna(r["mean_diff"]) else "–",
            "p_t": fmt_p(r["p_t"]), "p_t_holm": fmt_p(r["p_t_holm"]),
            "p_w_holm": fmt_p(r["p_wilcoxon_holm"]), "dz": fmt_num(r["cohens_dz"]),
        })  # fmt: skip
    return rows


def short_label(cell: str, width: int = 40) -> str:
    """A cell label for figures: 'norm=ln, placement=post' → 'ln, post' when the study has several axes
    (the design table names them), 'norm=' dropped for one axis; long specs wrapped at commas."""
    parts = [p.split("=", 1)[1] if "=" in p else p for p in cell.split(", ")]
    text = ", ".join(parts)
    if len(text) <= width:
        return text
    lines, line = [], ""
    for piece in text.replace(", ", ",").split(","):
        candidate = f"{line},{piece}" if line else piece
        if line and len(candidate) > width:
            lines.append(line + ",")
            line = piece
        else:
            line = candidate
    return "\n".join([*lines, line])


def _relabel(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(cell=frame["cell"].map(short_label)) if len(frame) else frame


def _figures(runs: pd.DataFrame, epochs: pd.DataFrame, probes: pd.DataFrame, table: pd.DataFrame,
             baseline: str | None, metric: str, level: str = "95%") -> list[FigureView]:  # fmt: skip
    """The study plots of lateralnorm.viz.plots, drawn in memory, with a caption saying how to read each.
    Cells are shown with short labels (`short_label`); the tables keep the full ones."""
    figs: list[FigureView] = []
    epochs, probes, table = _relabel(epochs), _relabel(probes), _relabel(table)
    baseline = short_label(baseline) if baseline is not None else None
    if len(epochs) and metric in epochs.columns and epochs[metric].notna().any():
        figs.append(FigureView("Learning curves", "Mean over seeds per epoch; the band is ±1 s.d. over seeds.",
                               figure_uri(plots.learning_curves(epochs, metric))))  # fmt: skip
    if baseline is not None and "mean_diff" in table.columns and table["mean_diff"].notna().any():
        diffs = table[table["cell"] != baseline]
        figs.append(FigureView(
            "Forest plot: each cell minus the baseline",
            "Squares: mean paired difference; bars: CI at the level of the tables above. Green/red: the CI excludes 0 (read the verdict "
            "for the Holm-corrected test); grey: it does not.",
            figure_uri(plots.forest_plot(diffs, baseline, metric, level=level))))  # fmt: skip
    ct = plots.crosstalk_frame(probes)
    if len(ct):
        figs.append(FigureView(
            "Cross-talk D(t)",
            "One non-positive input unit of a trained norm layer is driven down by t (in units of the pool's "
            "RMS); D is the relative change of the positive units' outputs (median over samples, mean over "
            "layers and seeds; band: range over runs). D = 0: no cross-talk.",
            figure_uri(plots.crosstalk_curves(ct))))  # fmt: skip
    for probe, stat, title, ylabel, caption in (
        ("sparsity", "hoyer", "Sparsity of the norm outputs", "Hoyer sparsity",
         "Hoyer sparsity of each norm layer's outputs on test inputs (0: all equal, 1: one-hot), mean over "
         "layers; bar: mean over runs with 95% CI, dots: runs."),
        ("invariance", "scale_change_max", "Invariance to input scaling", "max relative change",
         "Largest relative change of each norm layer's output when its input is scaled by c ∈ [0.1, 10] "
         "(0 = scale invariant)."),
        ("invariance", "shift_change_max", "Invariance to input shift", "max relative change",
         "Largest relative change of each norm layer's output when a constant is added to its input "
         "(0 = shift invariant)."),
        ("folds", "folds_per_unit", "Folds per unit", "direction changes per unit",
         "Direction changes of each norm layer's units along straight lines between test inputs (extended "
         "past both ends); 0 for a linear map."),
    ):  # fmt: skip
        frame = plots.layer_stat_frame(probes, probe, stat)
        if len(frame):
            fig = plots.metric_bars(frame, title=title, ylabel=ylabel)
            figs.append(FigureView(title, caption, figure_uri(fig), wide=fig.get_figwidth() > 9))
    return figs


def _sequential(meta: dict[str, Any], metric: str) -> list[str]:
    """The stopping rule of an adaptive study and what each look decided."""
    spec = meta.get("spec") or {}
    if not spec.get("adaptive"):
        return []
    a = AdaptiveSpec(**spec["adaptive"])
    k, unit = scale_of(metric)
    lines = [adaptive.rule_text(a, len(spec.get("seeds") or []), k, unit)]
    for look in meta.get("looks") or []:
        kinds = list((look.get("resolved") or {}).values())
        added = sum(len(v) for v in (look.get("added") or {}).values())
        text = (f"Look {look['look']} ({look['runs']} runs): {len(kinds)} resolved ({kinds.count('difference')} "
                f"with a difference, {kinds.count('small')} with any difference below {a.min_effect * k:g}{unit}), "
                f"{len(look.get('unresolved') or [])} unresolved")  # fmt: skip
        text += f" → {added} more runs." if added else "."
        if look.get("capped"):
            text += f" Unresolved at the cap of {a.max_seeds} seeds: {', '.join(look['capped'])} (the table gives the seeds each would need)."
        lines.append(text)
    return lines


def _tuning(path: Path, meta: dict[str, Any], metric: str) -> tuple[list[dict[str, Any]], list[float]]:
    """Per cell: the validation accuracy at every rate of the tuning grid and the rate chosen."""
    spec_raw = meta.get("spec") or {}
    tdir = path / tuning.TUNE_DIR
    if not spec_raw.get("tune") or not (tdir / "study.db").is_file():
        return [], []
    spec = StudySpec(**spec_raw)
    with Study(tdir) as t:
        table = tuning.grid_table(spec, t.runs(), metric)
    k, _ = scale_of(metric)
    rates = list(spec.tune.lr)  # type: ignore[union-attr]
    rows = []
    for cell, g in table.groupby("cell", sort=False):
        by_lr = {float(r["lr"]): r for _, r in g.iterrows()}
        vals = []
        for lr in rates:
            r = by_lr.get(lr)
            text = (
                "–"
                if r is None or not math.isfinite(float(r["val_mean"]))
                else fmt_num(float(r["val_mean"]) * k)
            )
            if r is not None and r["lost"]:
                text += f" ({int(r['lost'])} lost)"
            vals.append({"text": text, "chosen": bool(r is not None and r["chosen"])})
        finite = [float(r["val_mean"]) for r in by_lr.values() if math.isfinite(float(r["val_mean"]))]
        spread = fmt_num((max(finite) - min(finite)) * k) if len(finite) > 1 else "–"
        chosen = next((lr for lr in rates if by_lr.get(lr) is not None and by_lr[lr]["chosen"]), None)
        rows.append(
            {"cell": str(cell), "values": vals, "chosen": f"{chosen:g}" if chosen else "–", "spread": spread}
        )
    return rows, rates


def _grad_norms(epochs: pd.DataFrame) -> pd.Series | None:
    """cell -> mean over runs of (mean over epochs of the largest gradient norm of the epoch)."""
    if epochs.empty or "grad_norm_max" not in epochs.columns or epochs["grad_norm_max"].isna().all():
        return None
    per_run = epochs.groupby(["cell", "run_id"], sort=False)["grad_norm_max"].mean()
    return per_run.groupby(level=0, sort=False).mean()


def _raw(runs: pd.DataFrame) -> list[dict[str, Any]]:
    cols = [c for c in RAW_COLUMNS if c in runs.columns]
    out = []
    for rec in runs[cols].to_dict("records"):
        row = {}
        for c in cols:
            v = rec[c]
            if isinstance(v, float):
                v = "" if math.isnan(v) else (f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}")
            row[c] = "" if v is None else str(v)
        out.append(row)
    return out


def _current_plan_mask(meta: dict[str, Any], path: Path, runs: pd.DataFrame) -> pd.Series:
    """True for runs that the study's current spec (meta["spec"], rewritten by every `study run`) no longer
    plans. All False when the spec cannot be re-planned (then every run is kept)."""
    try:
        spec = StudySpec(**meta["spec"])
        ids = {
            p.run_id
            for p in plan(spec, path, lr_of=meta.get("tuned_lr"), extra_seeds=meta.get("extra_seeds"))
        }
    except Exception:  # an older or foreign meta: keep everything rather than guess
        return pd.Series(False, index=runs.index)
    return ~runs["run_id"].isin(ids)


@dataclass
class StudyStats:
    """A study folder's records and statistics, before anything is formatted: what the report section and
    `lateralnorm.report.compare` read. Runs of an earlier version of the spec are already left out."""

    path: Path
    name: str
    meta: dict[str, Any]
    runs: pd.DataFrame
    epochs: pd.DataFrame
    probes: pd.DataFrame
    counts: dict[str, int]
    stale: int  # runs left out: they belong to an earlier version of the spec
    last_finish: Any
    metric: str
    baseline: str | None  # the study's baseline cell, None when it has no runs
    baselines: str | dict[str, str] | None  # one cell, or cell -> its baseline (compare_within)
    confidence: float
    table: pd.DataFrame  # stats.summary_table
    verdicts: list[Verdict]


def study_stats(study_dir: str | Path, metric: str | None = None) -> StudyStats:
    """Read a study folder's records and compute its statistics and verdicts. UsageError (one line) when it
    is not a study folder or has nothing to report. `metric` defaults to the one the study's spec judges."""
    path = Path(study_dir)
    if not path.is_dir():
        raise UsageError(f"'{path}' is not a folder: give study folders written by `lateralnorm study run`")
    with Study.load(path) as study:
        meta, runs, epochs, probes, counts = (
            study.meta,
            study.runs(),
            study.epochs(),
            study.probes(),
            study.counts(),
        )
        last_finish = study.store.last_finished_at()
    name = meta.get("name") or path.name
    metric = metric or (meta.get("spec") or {}).get("metric") or "test_acc"
    stale = _current_plan_mask(meta, path, runs)
    if stale.any():  # runs of an earlier version of the spec (same name): not part of this study any more
        keep = set(runs.loc[~stale, "run_id"])
        runs = runs[~stale].reset_index(drop=True)
        epochs = epochs[epochs["run_id"].isin(keep)] if len(epochs) else epochs
        probes = probes[probes["run_id"].isin(keep)] if len(probes) else probes
        counts = {k: int((runs["status"] == k).sum()) for k in counts}
    if runs.empty:
        raise UsageError(
            f"study '{path}' has no runs: run it first (lateralnorm study run SPEC --out {path})"
        )
    if metric not in runs.columns:
        raise UsageError(f"unknown metric {metric!r}: use a column of the runs table, e.g. test_acc")
    finished = runs["status"].eq("done") & runs[metric].notna()
    if not finished.any():
        raise UsageError(
            f"study '{path}' has no finished runs with {metric} yet ({', '.join(f'{k} {v}' for k, v in counts.items() if v)}): "
            f"run or resume it first (lateralnorm study run SPEC --out {path})"
        )
    baseline = meta.get("baseline")
    if baseline is not None and baseline not in set(runs["cell"]):
        baseline = None
    baselines = meta.get("baselines") or baseline
    confidence = float(meta.get("confidence") or 0.95)
    compared = baselines if baseline is not None else None
    table = stats.summary_table(runs, compared, metric, confidence=confidence)
    vs = verdicts(table, compared, metric, alpha=1 - confidence)
    return StudyStats(path=path, name=name, meta=meta, runs=runs, epochs=epochs, probes=probes, counts=counts,
                      stale=int(stale.sum()), last_finish=last_finish, metric=metric, baseline=baseline,
                      baselines=baselines, confidence=confidence, table=table, verdicts=vs)  # fmt: skip


def collect(study_dir: str | Path, metric: str | None = None, anchor: str | None = None) -> StudyView:
    """Read a study folder into a report section. UsageError (one line) when it is not a study folder or has
    nothing to report. `metric` defaults to the one the study's spec judges (test_acc unless it says
    otherwise)."""
    st = study_stats(study_dir, metric)
    path, meta, runs, counts, metric = st.path, st.meta, st.runs, st.counts, st.metric
    baseline, baselines, confidence, table, vs = (
        st.baseline,
        st.baselines,
        st.confidence,
        st.table,
        st.verdicts,
    )
    warnings = []
    left = counts.get("pending", 0) + counts.get("running", 0)
    if left:
        warnings.append(f"{left} of {len(runs)} runs are not finished yet: every number here is provisional "
                        f"(resume with lateralnorm study run SPEC --out {path}).")  # fmt: skip
    if st.stale:
        warnings.append(f"{st.stale} run(s) in this folder belong to an earlier version of the spec "
                        "(their settings are not in its grid any more) and are left out.")  # fmt: skip
    lost = counts.get("failed", 0) + counts.get("diverged", 0)
    if lost:
        warnings.append(f"{counts.get('diverged', 0)} run(s) diverged and {counts.get('failed', 0)} failed; "
                        "they are left out of the statistics and flagged per cell.")  # fmt: skip
    design, base = _design(meta, runs, st.last_finish)
    spec = meta.get("spec") or {}
    tune_rows, tune_rates = _tuning(path, meta, metric)
    ctx = answers.Context(name=st.name, runs=runs, probes=st.probes, table=table, verdicts=vs, baseline=baseline,
                          metric=metric, grad_norms=_grad_norms(st.epochs),
                          baselines=baselines if isinstance(baselines, dict) else None,
                          confidence=confidence)  # fmt: skip
    return StudyView(
        name=st.name, path=path, anchor=anchor or st.name, description=spec.get("description") or "",
        header=spec_header(meta, path), design=design, base=base, metric=metric, baseline=baseline,
        axes=list(meta.get("axes") or []),
        counts=counts, warnings=warnings, cells=_cells(runs, table, vs, metric),
        paired=_paired(table, baseline, metric, (spec.get("adaptive") or {}).get("min_effect")),
        answer=answers.answer(ctx), metric_label=METRIC_LABELS.get(metric, metric), level=stats.level_label(confidence),
        sequential=_sequential(meta, metric), tuning=tune_rows, tune_rates=tune_rates,
        figures=_figures(runs, st.epochs, st.probes, table, baseline, metric, stats.level_label(confidence)), raw=_raw(runs), runs=runs, verdicts=vs,
    )  # fmt: skip
