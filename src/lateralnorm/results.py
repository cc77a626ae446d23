"""The answer set: every question's full study on both datasets, the capacity probe, one report, and the
files a reader (or the next machine) needs, in one folder. `make results` runs `lateralnorm results`.

    results/
      studies/<name>-<dataset>/study.db    the raw per-run records (SQLite; tune/study.db: the tuning runs)
      report.html, runs.csv                 the report and every run of every study (study, dataset, cell, seed, …)
      figures/<name>-<dataset>/*.png|svg    each study's figures
      capacity.json, figures/capacity.*     memorization of random labels per depth (lateralnorm capacity)
      STAMP.json                            machine, date, commit, versions, wall time per study

Resumable: each study resumes from its store (a cut run continues where it stopped, also on another
machine from committed stores), and a finished study only rebuilds its outputs. Checkpoints stay in
`studies/*/artifacts/`, which git ignores. The manifest (`studies/results.toml`) lists the studies in the
order they run and the minutes each took here, for the estimate of the time left.
"""

from __future__ import annotations

import json
import os
import platform
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lateralnorm import atomic
from lateralnorm.errors import UsageError

DEFAULT_MANIFEST = "studies/results.toml"
CAPACITY = dict(specs=["none", "ln", "rms", "relu"], widths=[16], depths=[1, 2, 4], seeds=[0, 1, 2, 3, 4],
                samples=512, steps=500)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    spec: Path
    variant: str | None
    minutes: float

    def folder(self, dataset: str, name: str) -> str:
        return f"{name}-{self.variant or dataset}"


def load_manifest(path: str | os.PathLike[str]) -> list[Entry]:
    """The [[study]] entries of a manifest (spec paths relative to the manifest's folder)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"manifest {path} not found: give the answer set's list (default {DEFAULT_MANIFEST})"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read manifest {path}: {e}") from None
    entries = []
    for i, item in enumerate(raw.get("study") or []):
        if not isinstance(item, dict) or "spec" not in item:
            raise UsageError(f'{path}: study[{i}] needs spec = "FILE.toml"')
        unknown = set(item) - {"spec", "variant", "minutes"}
        if unknown:
            raise UsageError(
                f"{path}: study[{i}]: unknown key(s) {', '.join(sorted(unknown))} (spec, variant, minutes)"
            )
        entries.append(
            Entry(path.parent / item["spec"], item.get("variant") or None, float(item.get("minutes", 10)))
        )
    if not entries:
        raise UsageError(f"{path} lists no [[study]] entries")
    return entries


def _fmt(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"


def run_all(
    manifest: str | os.PathLike[str] = DEFAULT_MANIFEST,
    out: str | os.PathLike[str] = "results",
    *,
    workers: int | None = None,
    only: list[str] | None = None,
    report_only: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) every study of the manifest into `out`, then write the report, table, figures and
    stamp. Returns the stamp. Every spec is loaded (and checked) before anything runs."""
    from lateralnorm.study import load_spec, run_study

    out = Path(out)
    entries = load_manifest(manifest)
    specs = [(e, load_spec(e.spec, e.variant)) for e in entries]
    folders = [out / "studies" / e.folder(str(s.base.get("dataset", "mnist1d")), s.name) for e, s in specs]
    if only:
        known = {f.name for f in folders}
        missing = [o for o in only if o not in known]
        if missing:
            raise UsageError(
                f"--only {', '.join(missing)}: not in the manifest (studies: {', '.join(sorted(known))})"
            )
    stamp_path = out / "STAMP.json"
    previous = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    walls: dict[str, float] = dict(previous.get("wall_s") or {})
    t_all = time.perf_counter()
    ratio = 1.0  # measured / estimated time of the studies run so far in this call
    spent_est = spent = 0.0
    if not report_only:
        for i, ((entry, spec), folder) in enumerate(zip(specs, folders), 1):
            if only and folder.name not in only:
                continue
            left = sum(
                e.minutes for (e, _), f in zip(specs[i - 1 :], folders[i - 1 :]) if not only or f.name in only
            )
            echo(f"=== [{i}/{len(specs)}] {folder.name}  (elapsed {_fmt(time.perf_counter() - t_all)}, "
                 f"estimated left {_fmt(left * 60 * ratio)})")  # fmt: skip
            t0 = time.perf_counter()
            report = run_study(spec, folder, workers=workers, spec_path=str(entry.spec), echo=echo)
            took = time.perf_counter() - t0
            walls[folder.name] = walls.get(folder.name, 0.0) + took
            if (
                report.skipped == 0 and report.done + report.diverged > 0
            ):  # a fresh study: it calibrates the estimate
                spent += took
                spent_est += entry.minutes * 60
                ratio = max(0.2, spent / spent_est)
    present = [f for f in folders if _has_finished_runs(f)]
    for f in folders:
        if f not in present:
            echo(
                f"note: {f.name} has no finished runs yet: left out of the report (`make results` resumes it)"
            )
    if not present:
        raise UsageError(
            f"no study in {out / 'studies'} has run yet: run `lateralnorm results` without --report-only"
        )
    echo("=== capacity (random labels, per depth)")
    capacity = _capacity(out)
    echo("=== report, table, figures")
    report, csv = _report(present, out)
    figures = _figures(present, out, capacity)
    stamp = _stamp(present, walls, time.perf_counter() - t_all, previous, report_only)
    atomic.write_json(stamp_path, stamp, indent=2)
    echo(f"wrote {report}, {csv}, {len(figures)} figure files, {stamp_path}")
    return stamp


def _has_finished_runs(folder: Path) -> bool:
    from lateralnorm.study import Study

    if not (folder / "study.db").is_file():
        return False
    with Study(folder) as s:
        return s.counts()["done"] > 0


def _capacity(out: Path) -> list[dict[str, Any]]:
    """Memorization of random labels by [Linear → norm] × depth nets (probes.capacity), cached in capacity.json
    (recomputed only when the settings change)."""
    from lateralnorm.probes.capacity import capacity

    path = out / "capacity.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == CAPACITY:
            return cached["records"]
    kw = dict(CAPACITY)
    records = capacity(kw.pop("specs"), kw.pop("widths"), kw.pop("depths"), kw.pop("seeds"), **kw)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, {"settings": CAPACITY, "records": records}, indent=1)
    return records


def _report(folders: list[Path], out: Path) -> tuple[Path, Path]:
    from lateralnorm.report import build_report

    return build_report([str(f) for f in folders], out / "report.html", command="make results")


def _figures(folders: list[Path], out: Path, capacity: list[dict[str, Any]]) -> list[Path]:
    """Each study's figures as the report draws them: its runs of the current spec, the metric it judges,
    its intervals' level (a sequential study's are wider than 95%)."""
    from lateralnorm.report.collect import study_stats
    from lateralnorm.viz import plots

    written: list[Path] = []
    for folder in folders:
        st = study_stats(folder)
        written += plots.plot_frames(st.runs, st.epochs, st.probes,
                                     out / "figures" / folder.name, st.baselines if st.baseline else None,
                                     metric=st.metric, formats=("png", "svg"), confidence=st.confidence)  # fmt: skip
    if capacity:
        fig = plots.capacity_bars(capacity)
        for ext in ("png", "svg"):
            written.append(plots.save_figure(fig, out / "figures" / f"capacity.{ext}"))
    return written


def _stamp(
    folders: list[Path],
    walls: dict[str, float],
    total: float,
    previous: dict[str, Any],
    report_only: bool = False,
) -> dict[str, Any]:
    """Where and when the runs were made (machine, date, commit, versions, wall time per study) and how many
    runs each study holds. A --report-only call trains nothing: it keeps the previous stamp's machine, date,
    commit and versions (the runs' provenance) and records itself under `report_rebuilt`."""
    import torch

    from lateralnorm.report.build import git_revision
    from lateralnorm.study import Study

    counts = {}
    for f in folders:
        with Study(f) as s:
            counts[f.name] = s.counts()
    now = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": git_revision(),
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cores": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # runs repeat to the bit within one
        },
    }
    if report_only and previous.get("machine"):
        keep = ("date", "commit", "machine", "versions", "wall_s", "wall_total_s", "this_call_s")
        return {**{k: previous[k] for k in keep if k in previous}, "runs": counts, "report_rebuilt": now}
    return {
        **now,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "wall_s": {k: round(v, 1) for k, v in walls.items()},
        "wall_total_s": round(sum(walls.values()), 1),
        "this_call_s": round(total, 1),
        "runs": counts,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
