"""Seeds until resolved: a sequential design that keeps the error rate honest over repeated looks.

A spec's `[adaptive]` table (`batch`, `max_seeds`, `min_effect`, `alpha`) makes the runner look at the data
after the spec's seeds have finished, and again after each batch of added seeds. At each look every cell is
compared with its baseline (paired on seed). A comparison is **resolved** when

    its interval excludes 0 and its Holm-corrected paired t-test gives p < α/K    (a difference), or
    its interval's half-width is at most `min_effect`                             (any difference is small).

Each unresolved cell (with its baseline, so the pairs stay complete) gets `batch` more seeds, up to
`max_seeds` per cell. Looking repeatedly at a fixed 95% interval would raise the false-positive rate; we
spend α with Bonferroni over the planned looks: with n₀ starting seeds there are at most
K = 1 + ⌈(max_seeds − n₀) / batch⌉ looks, and every look — and the final verdict — uses intervals at level
1 − α/K and tests at α/K (with Holm across cells). By the union bound the chance that any look declares a
difference that is not there is at most α for each family of comparisons. This is the simplest α-spending
rule: conservative (it pays for looks that are never taken) but exact and easy to check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lateralnorm.study.spec import AdaptiveSpec

if TYPE_CHECKING:
    import pandas as pd


def max_looks(adaptive: AdaptiveSpec, n_start: int) -> int:
    """K: the most looks the design can take (the first after n_start seeds)."""
    return 1 + max(0, math.ceil((adaptive.max_seeds - n_start) / adaptive.batch))


def alpha_per_look(adaptive: AdaptiveSpec, n_start: int) -> float:
    return adaptive.alpha / max_looks(adaptive, n_start)


def rule_text(adaptive: AdaptiveSpec, n_start: int, unit_scale: float = 100.0, unit: str = " pts") -> str:
    """The stopping rule as printed in the report."""
    k = max_looks(adaptive, n_start)
    a = alpha_per_look(adaptive, n_start)
    return (
        f"Seeds until resolved: {n_start} seeds first, then {adaptive.batch} more at a time for each comparison "
        f"that is unresolved, at most {adaptive.max_seeds} per cell. A comparison is resolved when its interval "
        f"excludes 0 (with Holm-corrected p < α/K) or its half-width is at most {adaptive.min_effect * unit_scale:g}{unit}. "
        f"The error rate is kept over the up to K = {k} looks by spending α = {adaptive.alpha:g} evenly "
        f"(Bonferroni): every interval and test here uses level 1 − α/K = {1 - a:.4f}, test level {a:.4f}."
    )


@dataclass
class Look:
    """What one look found: per compared cell its state, and the seeds to add (cell label -> seeds)."""

    resolved: dict[str, str] = field(default_factory=dict)  # cell -> "difference" | "small"
    unresolved: list[str] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)  # unresolved at max_seeds
    add: dict[str, list[int]] = field(default_factory=dict)


def look(
    runs: pd.DataFrame,
    baselines: dict[str, str],
    adaptive: AdaptiveSpec,
    n_start: int,
    seeds_of: dict[str, list[int]],
    metric: str = "test_acc",
) -> Look:
    """Decide one look. `runs` is the runs table of the planned runs so far (all finished), `baselines`
    maps each cell to its baseline, `seeds_of` each cell to the seeds it has been given."""
    from lateralnorm.study import stats

    a = alpha_per_look(adaptive, n_start)
    table = stats.paired_vs_baseline(runs, baselines, metric, confidence=1 - a)
    out = Look()
    for _, row in table.iterrows():
        cell = str(row["cell"])
        lo, hi, p = float(row["diff_ci_low"]), float(row["diff_ci_high"]), float(row["p_t_holm"])
        if math.isfinite(lo) and math.isfinite(hi):
            if (lo > 0 or hi < 0) and math.isfinite(p) and p < a:
                out.resolved[cell] = "difference"
                continue
            if (hi - lo) / 2 <= adaptive.min_effect:
                out.resolved[cell] = "small"
                continue
        if len(seeds_of.get(cell, [])) >= adaptive.max_seeds:
            out.capped.append(cell)
        else:
            out.unresolved.append(cell)
    if not out.unresolved:
        return out
    used = {s for seeds in seeds_of.values() for s in seeds}
    start = max(used) + 1 if used else 0
    for cell in out.unresolved:
        room = adaptive.max_seeds - len(seeds_of.get(cell, []))
        new = list(range(start, start + min(adaptive.batch, room)))
        for target in (cell, baselines[cell]):
            have = set(out.add.get(target, [])) | set(seeds_of.get(target, []))
            out.add[target] = sorted(set(out.add.get(target, [])) | {s for s in new if s not in have})
    out.add = {c: s for c, s in out.add.items() if s}
    return out


def seeds_needed(half_width: float, n: int, target: float) -> int | None:
    """Seeds a comparison would need for its interval half-width to reach `target`, from the half-width at
    n seeds (half-width ∝ 1/√n, ignoring the t quantile's change): None when it cannot be estimated."""
    if not (math.isfinite(half_width) and n >= 2 and target > 0):
        return None
    return max(n, math.ceil(n * (half_width / target) ** 2))
