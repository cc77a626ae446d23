"""Verdicts: one sentence per cell of a study, decided by fixed rules from the paired statistics.

Input is the table of `lateralnorm.study.stats.summary_table` (cell_summary joined with
paired_vs_baseline): per cell n, mean, CI, n_diverged, n_failed and, against the baseline, n_pairs,
mean_diff = mean over seeds of (x_cell − x_baseline), its 95% t interval [diff_ci_low, diff_ci_high],
p_t_holm and p_wilcoxon_holm (Holm-adjusted across the compared cells) and cohens_dz.

The rules (RULES below, printed verbatim in the report):

    better / worse      the 95% CI of the paired difference excludes 0 on that side  AND  p_t_holm < α
    no detectable diff. anything else with at least 2 pairs (the CI is quoted so a reader sees the size
                        of the difference that cannot be excluded)
    not comparable      fewer than 2 seeds where both the cell and the baseline finished
    flags               diverged / failed runs in the cell or the baseline; they are left out of every mean,
                        so a cell that survives only on some seeds is flagged whatever its verdict

For a metric where lower is better (losses) "better" means a negative difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from lateralnorm.study.stats import lower_is_better

ALPHA = 0.05
Kind = Literal["baseline", "better", "worse", "no_difference", "not_comparable"]

RULES: tuple[str, ...] = (
    "Every cell is compared with the study's baseline cell on the seeds where both finished (paired on "
    "seed: the two runs share data order and initialization). The difference is cell − baseline.",
    "<b>better</b> / <b>worse</b>: the 95% confidence interval (Student t) of the mean paired difference lies "
    f"entirely above / below 0 <i>and</i> the paired t-test, Holm-corrected across all cells of the study, "
    f"gives p &lt; {ALPHA}. Both must hold.",
    "<b>no detectable difference</b>: anything else. This is not a claim of equality: the quoted CI is the "
    "range of differences the data cannot exclude; more seeds narrow it.",
    "<b>not comparable</b>: fewer than 2 seeds where both the cell and the baseline finished.",
    "The Wilcoxon signed-rank p (Holm-corrected) is shown as a check that does not assume normal "
    "differences. With n pairs its smallest two-sided p is 2/2ⁿ (0.25 at n = 3, 0.0625 at n = 5), so "
    "below 6 seeds it can never confirm a difference; the verdict therefore rests on the t-test and CI.",
    "⚠ flags: runs that diverged (loss became NaN/inf) or failed are left out of every mean and test. "
    "A flagged cell's verdict describes only its surviving runs; instability is itself a result.",
    "For losses (lower is better) better means a negative difference. Accuracy differences are in "
    "percentage points (pts).",
    "Studies with <b>seeds until resolved</b> looked at their data more than once. They spend α = 0.05 "
    "evenly over the K looks they could take (Bonferroni), so there every interval is at level 1 − 0.05/K "
    "and every test at 0.05/K instead of 95% and 0.05; the section states its level and its looks. "
    "Learning rates were chosen per cell on a validation split of the training set, never on the test set.",
)


@dataclass(frozen=True)
class Verdict:
    """The verdict of one cell: kind (better, worse, ...), the sentence shown, and warning flags."""

    cell: str
    kind: Kind
    text: str
    flags: tuple[str, ...] = field(default_factory=tuple)


def scale_of(metric: str) -> tuple[float, str]:
    """(factor, unit) used to show a metric: accuracies in % and differences in percentage points."""
    if metric.endswith("acc") or metric.endswith("accuracy"):
        return 100.0, " pts"
    return 1.0, ""


def fmt_num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–" if x is None or math.isnan(x) else ("+∞" if x > 0 else "−∞")
    return f"{x:.{digits}f}"


def fmt_signed(x: float, digits: int = 2) -> str:
    return ("+" if x > 0 else "") + fmt_num(x, digits) if math.isfinite(x) else fmt_num(x, digits)


def fmt_p(p: Any) -> str:
    if p is None or not math.isfinite(float(p)):
        return "–"
    p = float(p)
    if p == 0.0:
        return "< 1e-300"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def fmt_diff(row: Any, metric: str) -> str:
    """'+2.10 pts [0.80, 3.40]' from a row with mean_diff, diff_ci_low, diff_ci_high."""
    k, unit = scale_of(metric)
    d, lo, hi = (float(row[c]) * k for c in ("mean_diff", "diff_ci_low", "diff_ci_high"))
    return f"{fmt_signed(d)}{unit} [{fmt_num(lo)}, {fmt_num(hi)}]"


def _flags(row: Any, base_row: Any | None) -> tuple[str, ...]:
    out = []
    total = int(row["n"]) + int(row["n_diverged"]) + int(row["n_failed"])
    if row["n_diverged"]:
        out.append(f"{int(row['n_diverged'])} of {total} runs diverged")
    if row["n_failed"]:
        out.append(f"{int(row['n_failed'])} of {total} runs failed")
    if base_row is not None and row["cell"] != base_row["cell"]:
        lost = int(base_row["n_diverged"]) + int(base_row["n_failed"])
        if lost:
            out.append(f"{lost} baseline run(s) diverged or failed: fewer pairs")
    return tuple(out)


def cell_verdict(
    row: Any, baseline: str, metric: str = "test_acc", base_row: Any | None = None, m: int | None = None,
    alpha: float = ALPHA,
) -> Verdict:  # fmt: skip
    """The verdict of one row of summary_table (see the module docstring for the rules); m is the number
    of comparisons Holm corrected over (only quoted in the text). `alpha` is the test level (a sequential
    study spends its α over several looks: its intervals are at level 1 − alpha)."""
    cell = str(row["cell"])
    flags = _flags(row, base_row)
    if cell == baseline:
        return Verdict(cell, "baseline", "baseline: every other cell is compared with this one", flags)
    n = int(row["n_pairs"]) if "n_pairs" in row and pd.notna(row["n_pairs"]) else 0
    if n < 2:
        return Verdict(
            cell, "not_comparable", f"not comparable: only {n} paired run(s) with the baseline", flags
        )
    lo, hi, p = float(row["diff_ci_low"]), float(row["diff_ci_high"]), float(row["p_t_holm"])
    k, unit = scale_of(metric)
    up, down = lo > 0, hi < 0  # CI entirely above / below 0
    significant = math.isfinite(p) and p < alpha
    if significant and (up or down):
        good = down if lower_is_better(metric) else up
        kind: Kind = "better" if good else "worse"
        text = f"{kind} than baseline: {fmt_diff(row, metric)}, p_Holm = {fmt_p(p)}, n = {n}"
        return Verdict(cell, kind, text, flags)
    text = f"no detectable difference at n = {n} (CI [{fmt_num(lo * k)}, {fmt_num(hi * k)}]{unit})"
    if up or down:
        over = f" over {m} comparisons" if m else ""
        text += f"; the CI excludes 0 but p_Holm = {fmt_p(p)} ≥ {alpha:.3g} after Holm's correction{over}"
    return Verdict(cell, "no_difference", text, flags)


def verdicts(
    table: pd.DataFrame, baseline: str | dict[str, str] | None, metric: str = "test_acc", alpha: float = ALPHA
) -> list[Verdict]:
    """One verdict per row of summary_table, in the table's order. `baseline` is one cell label or a map
    cell -> its baseline (compare_within). Without a baseline (or without paired columns) every cell is
    "not comparable"."""
    cells = set(table["cell"])
    mapping = baseline if isinstance(baseline, dict) else {c: baseline for c in cells} if baseline else {}
    if not mapping or "mean_diff" not in table.columns or not any(b in cells for b in mapping.values()):
        return [Verdict(str(c), "not_comparable", "no baseline to compare with") for c in table["cell"]]
    rows = {r["cell"]: r for _, r in table.iterrows()}
    m = int(pd.to_numeric(table["p_t"], errors="coerce").notna().sum()) if "p_t" in table.columns else None
    out = []
    for _, row in table.iterrows():
        base = mapping.get(row["cell"])
        if base is None or base not in rows:
            out.append(Verdict(str(row["cell"]), "not_comparable", "no baseline to compare with"))
            continue
        out.append(cell_verdict(row, base, metric, rows[base], m, alpha))
    return out


def tally(vs: list[Verdict]) -> dict[str, int]:
    """How many verdicts of each kind (baseline excluded)."""
    out = {"better": 0, "worse": 0, "no_difference": 0, "not_comparable": 0}
    for v in vs:
        if v.kind != "baseline":
            out[v.kind] += 1
    return out
