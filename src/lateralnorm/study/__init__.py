"""Studies: a grid of training runs from a TOML spec, run locally or on Ray, stored in SQLite.

    from lateralnorm.study import Study
    s = Study.load("runs/q1")
    s.runs()       # one row per run: run_id, cell, seed, status, every RunConfig field, final metrics
    s.epochs()     # one row per (run, epoch)
    s.probes()     # one row per (run, probe): the probe's JSON as `result`, scalar entries as columns
    s.summary()    # mean ± 95% CI per cell, paired differences vs the baseline (lateralnorm.study.stats)

Running: `run_study(load_spec("studies/q1.toml"), workers=2)` or `lateralnorm study run`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lateralnorm.runconfig import RunConfig
from lateralnorm.study.executors import InlineExecutor, LocalExecutor, RayExecutor
from lateralnorm.study.plan import PlannedRun, plan
from lateralnorm.study.runner import RunReport, lock_holder, run_study
from lateralnorm.study.spec import StudySpec, load_spec, validate_spec
from lateralnorm.study.store import EPOCH_FIELDS, FINAL_FIELDS, Store

__all__ = [
    "InlineExecutor", "LocalExecutor", "PlannedRun", "RayExecutor", "RunReport", "Store", "Study", "StudySpec", "load_spec",
    "plan", "run_study", "stats", "validate_spec",
]  # fmt: skip

if TYPE_CHECKING:
    import pandas as pd

# pandas and scipy load only when a table or a statistic is asked for: pool workers import this package
# and need none of them
CONFIG_FIELDS = tuple(RunConfig.model_fields)


class Study:
    """Read access to one study folder (never writes; safe while a driver is running)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.store = Store(self.path, readonly=True)

    @classmethod
    def load(cls, path: str | Path) -> Study:
        return cls(path)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loads(self, text: Any) -> Any:
        """A stored JSON record; a damaged one is a one-line UsageError."""
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            from lateralnorm.errors import UsageError

            raise UsageError(
                f"{self.store.path}: a stored record is not valid JSON: the database is damaged; restore it from "
                "a copy (`lateralnorm study check` lists what is wrong)"
            ) from None

    # --------------------------------------------------------------------------------- metadata
    @property
    def meta(self) -> dict[str, Any]:
        return self.store.meta()

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)

    @property
    def baseline(self) -> str | None:
        """Label of the baseline cell ("norm=ln, placement=post"), None when the spec has none."""
        return self.meta.get("baseline")

    @property
    def baselines(self) -> dict[str, str] | str | None:
        """cell -> its baseline (a compare_within study has one per stratum); else the one baseline label."""
        return self.meta.get("baselines") or self.baseline

    @property
    def confidence(self) -> float:
        """Level of the intervals: 0.95, or 1 − α/K for an adaptive (sequential) study."""
        return float(self.meta.get("confidence") or 0.95)

    @property
    def axes(self) -> list[str]:
        return list(self.meta.get("axes", []))

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    # ------------------------------------------------------------------------------- DataFrames
    def runs(self) -> pd.DataFrame:
        """One row per run in plan order: run_id, cell, seed, status, attempts, error, task_wall_s,
        every RunConfig field as a column, then final metrics (test_acc, ..., wall_s, num_params). `threads` is
        the planned count, or where none was planned the torch threads the run recorded (`versions`; runs
        stored before 2026-12-07 recorded none)."""
        import pandas as pd

        rows = self.store.run_rows()
        records = []
        for r in rows:
            config = self._loads(r["config"])
            rec: dict[str, Any] = {"run_id": r["run_id"], "cell": r["cell_label"], "seed": r["seed"]}
            rec.update(
                status=r["status"], attempts=r["attempts"], error=r["error"], task_wall_s=r["task_wall_s"]
            )
            rec.update({k: config.get(k) for k in CONFIG_FIELDS if k != "seed"})
            # `threads` as planned, else the torch threads the run recorded training with
            if rec.get("threads") is None:
                used = self._loads(r["versions"] or "{}").get("torch_threads")
                rec["threads"] = int(used) if used else None
            rec.update({k: r[k] for k in FINAL_FIELDS})
            records.append(rec)
        head = ["run_id", "cell", "seed", "status", "attempts", "error", "task_wall_s"]
        columns = head + [k for k in CONFIG_FIELDS if k != "seed"] + list(FINAL_FIELDS)
        df = pd.DataFrame.from_records(records, columns=columns)
        for col in FINAL_FIELDS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
        return df

    def epochs(self) -> pd.DataFrame:
        """One row per (run, epoch): run_id, cell, seed, epoch, the EpochMetrics fields, extra fields."""
        import pandas as pd

        rows = self.store.epoch_rows()
        records = []
        for r in rows:
            rec = {k: r[k] for k in ("run_id", "cell", "seed", "epoch", *EPOCH_FIELDS)}
            rec.update(self._loads(r["extra"] or "{}"))
            records.append(rec)
        return pd.DataFrame.from_records(
            records, columns=None if records else ["run_id", "cell", "seed", "epoch", *EPOCH_FIELDS]
        )

    def probes(self) -> pd.DataFrame:
        """One row per (run, probe): run_id, cell, seed, probe, result (the parsed JSON); top-level scalar
        entries of each result are also columns."""
        import pandas as pd

        rows = self.store.probe_rows()
        records = []
        for r in rows:
            result = self._loads(r["json"])
            rec = {
                "run_id": r["run_id"],
                "cell": r["cell"],
                "seed": r["seed"],
                "probe": r["probe"],
                "result": result,
            }
            if isinstance(result, dict):
                rec.update(
                    {
                        k: v
                        for k, v in result.items()
                        if k not in rec and isinstance(v, int | float | str | bool)
                    }
                )
            records.append(rec)
        return pd.DataFrame.from_records(
            records, columns=None if records else ["run_id", "cell", "seed", "probe", "result"]
        )

    # ------------------------------------------------------------------------------- statistics
    def summary(self, metric: str = "test_acc", method: str = "t") -> pd.DataFrame:
        """Per cell mean ± CI and, with a baseline, the paired comparison (see lateralnorm.study.stats)."""
        from lateralnorm.study import stats

        return stats.summary_table(
            self.runs(), self.baselines, metric, method=method, confidence=self.confidence
        )

    def eta_s(self) -> float | None:
        """Seconds left: unfinished runs × mean run time of finished runs / workers (None if unknown)."""
        counts = self.counts()
        left = counts["pending"] + counts["running"]
        if left == 0:
            return 0.0
        mean = self.store.mean_run_wall_s()
        if mean is None:
            return None
        workers = max(1, int(self.meta.get("workers") or 1))
        return left * mean / workers

    def driver_pid(self) -> int | None:
        """Pid of the `study run` working on this folder now, if any."""
        return lock_holder(self.path)

    def age_s(self) -> float:
        return time.time() - float(self.meta.get("updated", time.time()))
