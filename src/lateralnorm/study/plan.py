"""Plan: a validated spec expands into one RunConfig per (seed, grid cell), in a fixed order.

Cells are the product of the grid axes in file order (less `exclude`, plus `include`); runs are ordered
seed-major (all cells of the first
seed, then the next seed), so a study stopped half-way already has complete seeds to compare. Run ids are
`RunConfig.run_id()` (model, norm, placement, seed and a short hash of every setting that changes the
result), so planning the same spec twice gives the same ids and a re-run finds its finished runs.

Two things a spec can leave to the data are passed in by the runner (and kept in the store's meta):
`lr_of`, the learning rate its tuning chose per cell, and `extra_seeds`, the seeds adaptive rounds added
to some cells.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lateralnorm.errors import UsageError
from lateralnorm.runconfig import RunConfig
from lateralnorm.study.spec import StudySpec, grid_cells


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
    """Every cell (axis -> value): the product of the axes in file order, less `exclude`, plus `include`."""
    return [cell for cell, _ in grid_cells(spec)]


def baseline_of(spec: StudySpec, cell: dict[str, Any]) -> dict[str, Any] | None:
    """The cell `cell` is compared with: the spec's baseline values, the cell's own compare_within values."""
    if spec.baseline is None:
        return None
    return {a: spec.baseline.get(a, cell[a]) for a in spec.axes()}


def baseline_map(spec: StudySpec) -> dict[str, str]:
    """cell label -> label of the baseline it is compared with ({} without a baseline)."""
    if spec.baseline is None:
        return {}
    return {cell_label(c): cell_label(baseline_of(spec, c)) for c in cells(spec)}  # type: ignore[arg-type]


def baseline_label(spec: StudySpec) -> str | None:
    """The baseline cell's label (with compare_within: the first stratum's baseline)."""
    if spec.baseline is None:
        return None
    return cell_label(baseline_of(spec, cells(spec)[0]))  # type: ignore[arg-type]


def plan(
    spec: StudySpec,
    study_dir: str | Path,
    *,
    lr_of: dict[str, float] | None = None,
    extra_seeds: dict[str, list[int]] | None = None,
) -> list[PlannedRun]:
    """Expand the grid: every cell for each of `spec.seeds`, then the `extra_seeds` of single cells (seed
    order). `lr_of` maps cell labels to their tuned learning rate. Raises UsageError when two cells give the
    same run (e.g. a no-op axis)."""
    artifacts = Path(study_dir) / "artifacts"
    lr_of, extra_seeds = lr_of or {}, extra_seeds or {}
    grid = [(cell, cell_label(cell)) for cell in cells(spec)]
    pairs = [(seed, cell, label) for seed in spec.seeds for cell, label in grid]
    extra = sorted({s for seeds in extra_seeds.values() for s in seeds} - set(spec.seeds))
    pairs += [
        (seed, cell, label) for seed in extra for cell, label in grid if seed in extra_seeds.get(label, ())
    ]
    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for seed, cell, label in pairs:
        lr = {"lr": lr_of[label]} if label in lr_of else {}
        config = RunConfig(**{**spec.base, **lr}, **cell, seed=seed)
        run_id = config.run_id()
        if run_id in seen:
            raise UsageError(
                f"grid cells '{seen[run_id]}' and '{label}' give the same run {run_id}: "
                "remove the axis value that changes nothing"
            )
        seen[run_id] = label
        config = config.model_copy(update={"out_dir": str(artifacts / run_id)})
        runs.append(PlannedRun(run_id=run_id, cell=cell, cell_label=label, seed=seed, config=config))
    return runs
