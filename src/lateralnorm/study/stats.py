"""Statistics over a study's runs: pure functions, DataFrame in, DataFrame out.

Input is the runs table (`Study.runs()`): one row per run with at least a cell column, a `seed` column,
a `status` column and the metric. Only runs with status `done` and a finite metric count as samples;
`n_diverged` / `n_failed` report the rest.

    cell_summary(runs)          per cell: n, mean, std, 95% CI (t-based, or percentile bootstrap)
    paired_vs_baseline(runs, b) per cell vs the baseline cell (or each cell's own, b = {cell: baseline}),
                                paired on seed:
                                mean difference d̄ = mean(x_cell − x_base) with its t CI,
                                paired t-test (t = d̄ / (s_d/√n), n−1 dof), Wilcoxon signed-rank,
                                both Holm-corrected across cells, effect size Cohen's d_z = d̄ / s_d
    holm(p)                     Holm–Bonferroni adjusted p-values
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

CELL = "cell"


def level_label(confidence: float) -> str:
    """0.95 → '95%', 0.98333 → '98.3%': how an interval's level is written everywhere."""
    return f"{confidence:.1%}".replace(".0%", "%")


def lower_is_better(metric: str) -> bool:
    """Losses and error rates: a negative difference is the better one."""
    return "loss" in metric or metric.endswith("_err") or metric.endswith("error")


def _samples(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    if metric not in runs.columns:
        raise KeyError(
            f"no column {metric!r} in the runs table (columns: {', '.join(map(str, runs.columns))})"
        )
    ok = runs[metric].notna() & np.isfinite(pd.to_numeric(runs[metric], errors="coerce"))
    if "status" in runs.columns:
        ok &= runs["status"] == "done"
    return runs[ok]


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """mean ± t_{(1+c)/2, n−1} · s/√n; (nan, nan) for fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    mean, sem = x.mean(), x.std(ddof=1) / math.sqrt(x.size)
    half = sps.t.ppf((1 + confidence) / 2, x.size - 1) * sem
    return float(mean - half), float(mean + half)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (resampling with replacement, fixed seed)."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)  # (n_boot,)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def cell_summary(
    runs: pd.DataFrame,
    metric: str = "test_acc",
    by: str = CELL,
    confidence: float = 0.95,
    method: str = "t",
    n_boot: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per cell (in first-appearance order): by, n, mean, std, ci_low, ci_high, n_diverged, n_failed.
    method: "t" (Student t interval) or "bootstrap" (percentile bootstrap of the mean)."""
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap' (got {method!r})")
    samples = _samples(runs, metric)
    rows = []
    for cell in pd.unique(runs[by]):
        x = samples.loc[samples[by] == cell, metric].to_numpy(dtype=float)
        if method == "t":
            lo, hi = t_interval(x, confidence)
        else:
            lo, hi = bootstrap_interval(x, confidence, n_boot, seed)
        status = runs.loc[runs[by] == cell, "status"] if "status" in runs.columns else pd.Series(dtype=str)
        rows.append(
            {
                by: cell,
                "n": int(x.size),
                "mean": float(x.mean()) if x.size else math.nan,
                "std": float(x.std(ddof=1)) if x.size > 1 else math.nan,
                "ci_low": lo,
                "ci_high": hi,
                "n_diverged": int((status == "diverged").sum()),
                "n_failed": int((status == "failed").sum()),
            }
        )
    return pd.DataFrame(rows, columns=[by, "n", "mean", "std", "ci_low", "ci_high", "n_diverged", "n_failed"])


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni: sort the m finite p-values ascending, p̃_(k) = max_{j≤k} min(1, (m−j+1)·p_(j)).
    NaNs stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def _paired_tests(d: np.ndarray) -> tuple[float, float, float]:
    """(t statistic, t-test p, Wilcoxon p) for paired differences d. Degenerate cases: all d equal to 0
    gives p = 1; a constant nonzero d (no spread) gives t = ±inf, p = 0 for the t-test."""
    n = d.size
    if n < 2:
        return math.nan, math.nan, math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        if np.all(d == 0):
            return 0.0, 1.0, 1.0
        t, p_t = math.copysign(math.inf, d.mean()), 0.0
    else:
        t = d.mean() / (sd / math.sqrt(n))
        p_t = float(2 * sps.t.sf(abs(t), n - 1))
    if np.all(d == 0):
        p_w = 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p_w = float(sps.wilcoxon(d).pvalue)
    return float(t), p_t, p_w


def _effect(d: np.ndarray) -> dict[str, float]:
    """Mean difference and Cohen's d_z = mean(d) / sd(d) (±inf for a constant nonzero d, 0 for d ≡ 0)."""
    if d.size == 0:
        return {"mean_diff": math.nan, "cohens_dz": math.nan}
    mean = float(d.mean())
    if d.size < 2:
        dz = math.nan
    elif d.std(ddof=1) > 0:
        dz = mean / float(d.std(ddof=1))
    else:
        dz = math.copysign(math.inf, mean) if mean else 0.0
    return {"mean_diff": mean, "cohens_dz": dz}


Baseline = str | Mapping[str, str]


def baseline_map(runs: pd.DataFrame, baseline: Baseline, by: str = CELL) -> dict[str, str]:
    """cell -> the cell it is compared with. A string is one baseline for every cell (KeyError when no run
    has it); a mapping gives each cell its own (a stratified study: the baseline at the cell's batch size)."""
    if isinstance(baseline, str):
        if baseline not in set(runs[by]):
            raise KeyError(f"baseline cell {baseline!r} is not in the runs table")
        return {str(c): baseline for c in pd.unique(runs[by])}
    return {str(c): str(b) for c, b in baseline.items()}


def is_baseline(cell: str, mapping: Mapping[str, str]) -> bool:
    return mapping.get(cell) == cell


def paired_vs_baseline(
    runs: pd.DataFrame,
    baseline: Baseline,
    metric: str = "test_acc",
    by: str = CELL,
    pair_on: str = "seed",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Each cell against its baseline, paired on `pair_on` (runs sharing a seed share data order and init).

    Columns: by, baseline, n_pairs, mean_diff, diff_ci_low, diff_ci_high, t, p_t, p_wilcoxon, p_t_holm,
    p_wilcoxon_holm, cohens_dz. Holm's correction runs over all compared cells (baselines excluded).
    `confidence` sets the CI level (a sequential design spends its α over several looks: see
    lateralnorm.study.adaptive). Raises KeyError when a single baseline cell has no row."""
    mapping = baseline_map(runs, baseline, by)
    samples = _samples(runs, metric)
    wide = samples.pivot_table(index=pair_on, columns=by, values=metric, aggfunc="mean")  # (seeds, cells)
    rows = []
    for cell in pd.unique(runs[by]):
        base = mapping.get(str(cell))
        if base is None or cell == base:
            continue
        if cell in wide.columns and base in wide.columns:
            pair = wide[[cell, base]].dropna()
            d = (pair[cell] - pair[base]).to_numpy(dtype=float)  # (n_pairs,)
        else:
            d = np.array([], dtype=float)
        t, p_t, p_w = _paired_tests(d)
        lo, hi = t_interval(d, confidence)
        rows.append({by: cell, "baseline": base, "n_pairs": int(d.size), **_effect(d), "diff_ci_low": lo,
                     "diff_ci_high": hi})  # fmt: skip
        rows[-1].update({"t": t, "p_t": p_t, "p_wilcoxon": p_w})
    cols = [by, "baseline", "n_pairs", "mean_diff", "diff_ci_low", "diff_ci_high", "t", "p_t", "p_wilcoxon",
            "cohens_dz"]  # fmt: skip
    out = pd.DataFrame(rows, columns=cols)
    out.insert(out.columns.get_loc("p_wilcoxon") + 1, "p_t_holm", holm(out["p_t"].to_numpy()))
    out.insert(out.columns.get_loc("p_t_holm") + 1, "p_wilcoxon_holm", holm(out["p_wilcoxon"].to_numpy()))
    return out


def summary_table(
    runs: pd.DataFrame,
    baseline: Baseline | None = None,
    metric: str = "test_acc",
    by: str = CELL,
    method: str = "t",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """cell_summary joined with paired_vs_baseline (when a baseline is given): the `study summary` table.
    A single baseline missing from the runs gives the cell summary alone."""
    table = cell_summary(runs, metric, by, confidence=confidence, method=method)
    if baseline is None or (isinstance(baseline, str) and baseline not in set(runs[by])):
        return table
    return table.merge(
        paired_vs_baseline(runs, baseline, metric, by, confidence=confidence), on=by, how="left"
    )
