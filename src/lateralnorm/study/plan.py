"""Plan: a validated spec expands into one RunConfig per (seed, grid cell), in a fixed order.

Cells are the product of the grid axes in file order; runs are ordered seed-major (all cells of the first
seed, then the next seed), so a study stopped half-way already has complete seeds to compare. Run ids are
`RunConfig.run_id()` (model, norm, placement, seed and a short hash of every setting that changes the
result), so planning the same spec twice gives the same ids and a re-run finds its finished runs.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lateralnorm.errors import UsageError
from lateralnorm.runconfig import RunConfig
from lateralnorm.study.spec import StudySpec


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    cell: dict[str, Any]  # grid axis -> value for this run
    cell_label: str  # "norm=ln, placement=post"
    seed: int
    config: RunConfig  # out_dir = <study dir>/artifacts/<run_id>


def cell_label(cell: dict[str, Any]) -> str:
    """Readable, stable name of a grid cell: 'axis=value' joined in axis order."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in cell.items())


def cells(spec: StudySpec) -> list[dict[str, Any]]:
    """Every grid cell (axis -> value), the product of the axes in file order."""
    axes = spec.axes()
    return [dict(zip(axes, values)) for values in itertools.product(*(spec.grid[a] for a in axes))]


def baseline_label(spec: StudySpec) -> str | None:
    if spec.baseline is None:
        return None
    return cell_label({a: spec.baseline[a] for a in spec.axes()})


def plan(spec: StudySpec, study_dir: str | Path) -> list[PlannedRun]:
    """Expand the grid. Raises UsageError when two cells give the same run (e.g. a no-op axis)."""
    artifacts = Path(study_dir) / "artifacts"
    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for seed in spec.seeds:
        for cell in cells(spec):
            config = RunConfig(**spec.base, **cell, seed=seed)
            run_id = config.run_id()
            label = cell_label(cell)
            if run_id in seen:
                raise UsageError(
                    f"grid cells '{seen[run_id]}' and '{label}' give the same run {run_id}: "
                    "remove the axis value that changes nothing"
                )
            seen[run_id] = label
            config = config.model_copy(update={"out_dir": str(artifacts / run_id)})
            runs.append(PlannedRun(run_id=run_id, cell=cell, cell_label=label, seed=seed, config=config))
    return runs
