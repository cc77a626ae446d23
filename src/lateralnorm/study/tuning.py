"""Learning-rate tuning: each cell's rate is chosen on a validation split carved from the training set.

A spec's `[tune]` table (`lr = [...]`, `seeds = [1000]`, `holdout = 0.1`) makes the runner first run a study
of its own in `<study>/tune`: every cell × every rate × every tuning seed, with `holdout` set, so those runs
train on (1 − holdout) of the training set and are evaluated on the held-out part. The test set is never
read while choosing. Same store, executor and resume as any study.

The rate chosen for a cell is the one with the best mean validation metric over the tuning seeds (highest
accuracy, or lowest loss for a study judged on `test_loss`); a
rate at which any tuning run diverged or failed is chosen only if every rate did (ties and that case go to
the smaller rate). The main runs then train on the whole training set with the chosen rate; the report
shows the chosen rate and the validation accuracy over the whole grid (robustness to the rate is evidence
too).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from lateralnorm.study import stats
from lateralnorm.study.plan import cell_label, cells
from lateralnorm.study.spec import StudySpec

if TYPE_CHECKING:
    import pandas as pd

TUNE_DIR = "tune"


def tune_spec(spec: StudySpec) -> StudySpec:
    """The tuning study of `spec`: its cells × the rates (an `lr` axis), the tuning seeds, `holdout` set, no
    checkpoints, no probes, no baseline."""
    assert spec.tune is not None
    rates = list(spec.tune.lr)
    return StudySpec(
        name=f"{spec.name}-tune",
        description=f"learning-rate tuning of {spec.name} on a validation split ({spec.tune.holdout:g} of the training set)",
        seeds=list(spec.tune.seeds),
        base={
            **{k: v for k, v in spec.base.items() if k != "lr"},
            "holdout": spec.tune.holdout,
            "checkpoint": False,
        },
        grid={**spec.grid, "lr": rates},
        include=[{**c, "lr": lr} for c in spec.include for lr in rates],
        exclude=list(spec.exclude),
        variant=spec.variant,
    )


def grid_table(spec: StudySpec, tune_runs: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per (cell, rate): cell, lr, n (finished tuning runs), lost (diverged or failed), val_mean
    (mean `metric` on the validation split over finished runs), chosen (bool)."""
    import pandas as pd

    assert spec.tune is not None
    rows: list[dict[str, Any]] = []
    for cell in cells(spec):
        mask = pd.Series(True, index=tune_runs.index)
        for axis, value in cell.items():
            mask &= tune_runs[axis] == value
        for lr in spec.tune.lr:
            sub = tune_runs[mask & (tune_runs["lr"] == lr)]
            ok = sub[(sub["status"] == "done") & sub[metric].notna()]
            rows.append({
                "cell": cell_label(cell), "lr": lr, "n": len(ok), "lost": int(sub["status"].isin(["diverged", "failed"]).sum()),
                "val_mean": float(ok[metric].mean()) if len(ok) else math.nan,
            })  # fmt: skip
    table = pd.DataFrame(rows, columns=["cell", "lr", "n", "lost", "val_mean"])
    chosen = choose(table, lower_is_better=stats.lower_is_better(metric))
    table["chosen"] = [chosen.get(c) == lr for c, lr in zip(table["cell"], table["lr"])]
    return table


def choose(table: pd.DataFrame, lower_is_better: bool = False) -> dict[str, float]:
    """cell -> chosen rate from a grid_table (see the module docstring for the rule; for a loss, the lowest)."""
    out: dict[str, float] = {}
    for cell, rows in table.groupby("cell", sort=False):
        rows = rows.sort_values("lr")
        clean = rows[(rows["lost"] == 0) & rows["val_mean"].notna()]
        pool = clean if len(clean) else rows[rows["val_mean"].notna()]
        if len(pool) == 0:
            out[str(cell)] = float(rows["lr"].iloc[0])
            continue
        best = pool["val_mean"].min() if lower_is_better else pool["val_mean"].max()
        out[str(cell)] = float(pool.loc[pool["val_mean"] == best, "lr"].iloc[0])
    return out


def complete(table: pd.DataFrame, n_seeds: int) -> bool:
    """True when every (cell, rate) has all its tuning runs finished (done, diverged or failed)."""
    return bool(((table["n"] + table["lost"]) >= n_seeds).all())
