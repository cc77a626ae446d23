"""Build the HTML report: read every study folder, render one self-contained page, write it atomically.

    build_report(["runs/q1", "runs/q5"], "runs/report.html")   # → (report path, runs.csv path)

The page embeds its figures as base64 PNG and its styles inline: no script, no external resource, it works
offline and can be mailed as one file. Next to it goes `<stem>_runs.csv` (default name for report.html:
runs.csv), every run of every study with all columns and a `study` column, so each number can be checked.
All inputs are read and checked before anything is written.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pandas as pd

from lateralnorm import atomic
from lateralnorm.errors import UsageError
from lateralnorm.report.collect import RAW_COLUMNS, StudyView, collect
from lateralnorm.report.verdict import RULES

TEMPLATE = "template.html.j2"


def csv_path_for(report: Path) -> Path:
    """runs.csv for report.html, else <stem>_runs.csv (so two reports in one folder do not collide)."""
    return report.with_name("runs.csv" if report.stem == "report" else f"{report.stem}_runs.csv")


def git_revision() -> str:
    """Short git revision of the source tree (with '+dirty' for local changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return rev + ("+dirty" if dirty else "") if rev else "unknown"


def provenance(command: str | None = None) -> dict[str, str]:
    from lateralnorm import __version__

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version = "not installed"
    return {
        "version": __version__,
        "git": git_revision(),
        "torch": torch_version,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command or shlex.join(["lateralnorm", *sys.argv[1:]]),
    }


def _anchor(name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "study"
    anchor, i = base, 2
    while anchor in taken:
        anchor, i = f"{base}-{i}", i + 1
    taken.add(anchor)
    return anchor


def render(views: Sequence[StudyView], csv_name: str, prov: dict[str, str], metric: str = "test_acc",
           title: str = "lateralnorm report") -> str:  # fmt: skip
    """The HTML text of the report (autoescaped Jinja2; only the fixed rule texts are raw HTML)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lateralnorm.report", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    metric_label = {"test_acc": "test accuracy %", "train_acc": "train accuracy %"}.get(metric, metric)
    return env.get_template(TEMPLATE).render(
        title=title, studies=views, rules=RULES, csv_name=csv_name, prov=prov, metric_label=metric_label,
        raw_columns=RAW_COLUMNS, total_runs=sum(len(v.runs) for v in views),
    )  # fmt: skip


def build_report(study_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] = "report.html",
                 metric: str | None = None, command: str | None = None) -> tuple[Path, Path]:  # fmt: skip
    """Read the studies, write the report and its runs CSV; returns (report path, csv path).
    UsageError (nothing written) for no folders, a folder given twice, a non-study or an empty study."""
    if not study_dirs:
        raise UsageError("give at least one study folder, e.g. lateralnorm report runs/q1 -o report.html")
    seen: set[Path] = set()
    for d in study_dirs:
        key = Path(d).resolve()
        if key in seen:
            raise UsageError(f"study folder '{d}' is given twice: list each folder once")
        seen.add(key)
    out_path = Path(out)
    if out_path.is_dir():
        raise UsageError(f"-o {out_path} is a folder: give a file name, e.g. {out_path / 'report.html'}")
    taken: set[str] = set()
    views = []
    for d in study_dirs:
        view = collect(d, metric)
        view.anchor = _anchor(view.name, taken)
        views.append(view)
    csv_path = csv_path_for(out_path)
    html = render(views, csv_path.name, provenance(command), metric or "test_acc")
    frames = [v.runs.assign(study=v.name)[["study", *v.runs.columns]] for v in views]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(csv_path) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
    atomic.write_text(out_path, html)
    return out_path, csv_path
