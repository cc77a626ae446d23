"""Does a re-run reproduce an answer set? Compare two sets study by study and cell by cell.

An answer set is a folder written by `lateralnorm results` (its studies under `studies/<folder>/`), or a
folder of study folders. Studies are paired by folder name. For every compared cell (baseline cells are
skipped) the comparison keeps both verdicts and both paired differences and asks two questions:

    same verdict        the candidate's verdict kind (better / worse / no detectable difference / not
                        comparable) equals the reference's
    within the CI       the candidate's mean paired difference lies inside the reference's interval of it
                        (the interval at the reference study's own level)

A verdict that moved between "no detectable difference" and better/worse while its difference kept its
sign is a borderline move; one whose difference changed sign with both intervals excluding 0 is a reversal,
the only kind of disagreement that contradicts the reference.

Runs are also paired by run id (the same configuration and seed): of the runs in both sets, how many have the
same status and the same final metrics to the last bit (test/train accuracy and loss). The trainer is
deterministic, so a re-run of the same code on the same kind of machine repeats every run; a change that claims
"the same bits" is checked by that count.

    from lateralnorm.report.compare import compare_sets, render_markdown
    print(render_markdown(compare_sets("results", "/tmp/rerun")))

or `lateralnorm results --out /tmp/rerun --compare results` (runs, then compares).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lateralnorm.errors import UsageError
from lateralnorm.report.collect import StudyStats, study_stats
from lateralnorm.report.verdict import fmt_num, fmt_signed, scale_of

KIND_LABEL = {"better": "better", "worse": "worse", "no_difference": "no detectable difference",
              "not_comparable": "not comparable", "baseline": "baseline", "missing": "missing"}  # fmt: skip


@dataclass(frozen=True)
class CellComparison:
    cell: str
    reference: str  # verdict kind in the reference set ("missing" when the cell is not there)
    candidate: str
    ref_diff: tuple[float, float, float]  # mean paired difference, CI low, CI high (metric units)
    cand_diff: tuple[float, float, float]

    @property
    def same_verdict(self) -> bool:
        return self.reference == self.candidate

    @property
    def within_ci(self) -> bool:
        d, (_, lo, hi) = self.cand_diff[0], self.ref_diff
        return all(math.isfinite(v) for v in (d, lo, hi)) and lo <= d <= hi

    @property
    def reversal(self) -> bool:
        """Both intervals exclude 0, on opposite sides."""
        (_, rlo, rhi), (_, clo, chi) = self.ref_diff, self.cand_diff
        return (rlo > 0 and chi < 0) or (rhi < 0 and clo > 0)


FINAL_METRICS = (
    "status",
    "test_acc",
    "test_loss",
    "train_acc",
    "train_loss",
)  # a run's outcome, compared exactly


@dataclass
class StudyComparison:
    folder: str
    metric: str = "test_acc"
    cells: list[CellComparison] = field(default_factory=list)
    missing: str | None = None  # "reference" or "candidate" when the study is only in one set
    runs_paired: int = 0  # runs in both sets (by run id)
    runs_equal: int = 0  # of those, the ones with the same status and final metrics to the last bit

    @property
    def same(self) -> int:
        return sum(c.same_verdict for c in self.cells)

    @property
    def within(self) -> int:
        return sum(c.within_ci for c in self.cells)

    @property
    def reversals(self) -> list[CellComparison]:
        return [c for c in self.cells if c.reversal]


def study_folders(answer_set: str | Path) -> dict[str, Path]:
    """folder name -> study folder of an answer set (`<set>/studies/*/study.db`, or `<set>/*/study.db`)."""
    root = Path(answer_set)
    if not root.is_dir():
        raise UsageError(f"'{root}' is not a folder: give an answer set written by `lateralnorm results`")
    base = root / "studies" if (root / "studies").is_dir() else root
    found = {p.parent.name: p.parent for p in sorted(base.glob("*/study.db"))}
    if not found:
        raise UsageError(f"'{root}' holds no study folders (no */study.db under it or under its studies/)")
    return found


def _diffs(st: StudyStats) -> dict[str, tuple[str, tuple[float, float, float]]]:
    rows = {str(r["cell"]): r for _, r in st.table.iterrows()}
    out = {}
    for v in st.verdicts:
        if v.kind == "baseline":
            continue
        r = rows.get(v.cell)
        diff = (math.nan, math.nan, math.nan)
        if r is not None and "mean_diff" in r:
            diff = tuple(float(r[c]) for c in ("mean_diff", "diff_ci_low", "diff_ci_high"))  # type: ignore[assignment]
        out[v.cell] = (v.kind, diff)
    return out


def equal_runs(reference: pd.DataFrame, candidate: pd.DataFrame) -> tuple[int, int]:
    """(runs in both tables by run id, of those the ones whose status and final metrics are equal to the last bit,
    a NaN equal to a NaN)."""
    cols = [c for c in FINAL_METRICS if c in reference.columns and c in candidate.columns]
    both = reference[["run_id", *cols]].merge(
        candidate[["run_id", *cols]], on="run_id", suffixes=("_r", "_c")
    )
    same = pd.Series(True, index=both.index)
    for c in cols:
        a, b = both[f"{c}_r"], both[f"{c}_c"]
        same &= (a == b) | (a.isna() & b.isna())
    return len(both), int(same.sum())


def compare_study(reference: Path, candidate: Path) -> StudyComparison:
    ref, cand = study_stats(reference), study_stats(candidate)
    out = StudyComparison(reference.name, ref.metric)
    out.runs_paired, out.runs_equal = equal_runs(ref.runs, cand.runs)
    r, c = _diffs(ref), _diffs(cand)
    nan3 = (math.nan, math.nan, math.nan)
    for cell in [*r, *(k for k in c if k not in r)]:
        (rk, rd), (ck, cd) = r.get(cell, ("missing", nan3)), c.get(cell, ("missing", nan3))
        out.cells.append(CellComparison(cell, rk, ck, rd, cd))
    return out


def compare_sets(reference: str | Path, candidate: str | Path) -> list[StudyComparison]:
    """Every study of either set, in the reference's order (then the candidate's extra ones)."""
    ref, cand = study_folders(reference), study_folders(candidate)
    out = []
    for name in [*ref, *(k for k in cand if k not in ref)]:
        if name not in cand:
            out.append(StudyComparison(name, missing="candidate"))
        elif name not in ref:
            out.append(StudyComparison(name, missing="reference"))
        else:
            out.append(compare_study(ref[name], cand[name]))
    return out


def _fmt_diff(d: tuple[float, float, float], k: float) -> str:
    return f"{fmt_signed(d[0] * k)} [{fmt_num(d[1] * k)}, {fmt_num(d[2] * k)}]"


def render_markdown(
    studies: list[StudyComparison], reference: str = "reference", candidate: str = "re-run"
) -> str:
    """A summary table (one row per study) and, per study, the cells whose verdict moved."""
    lines = [
        f"| study | verdicts the same | candidate difference inside the {reference} CI | reversals "
        "| runs equal in every final metric (paired by run id) |",
        "|---|---|---|---|---|",
    ]
    total = same = within = 0
    for s in studies:
        if s.missing:
            lines.append(
                f"| {s.folder} | {'not in ' + candidate if s.missing == 'candidate' else 'not in ' + reference} | | | |"
            )
            continue
        n = len(s.cells)
        total, same, within = total + n, same + s.same, within + s.within
        lines.append(
            f"| {s.folder} | {s.same} of {n} | {s.within} of {n} | {len(s.reversals)} | "
            f"{s.runs_equal} of {s.runs_paired} |"
        )
    paired, equal = sum(s.runs_paired for s in studies), sum(s.runs_equal for s in studies)
    lines.append(f"| **all** | **{same} of {total}** | **{within} of {total}** | "
                 f"**{sum(len(s.reversals) for s in studies)}** | **{equal} of {paired}** |")  # fmt: skip
    for s in studies:
        moved = [c for c in s.cells if not c.same_verdict]
        if not moved:
            continue
        k, unit = scale_of(s.metric)
        lines += [
            "",
            f"**{s.folder}**: verdicts that moved (difference{unit} [CI], {reference} → {candidate})",
            "",
        ]
        for c in moved:
            tag = " — **reversal**" if c.reversal else ""
            lines.append(
                f"- {c.cell}: {KIND_LABEL[c.reference]} {_fmt_diff(c.ref_diff, k)} → "
                f"{KIND_LABEL[c.candidate]} {_fmt_diff(c.cand_diff, k)}{tag}"
            )
    return "\n".join(lines) + "\n"


def render_stability(reference: str, candidates: list[tuple[str, list[StudyComparison]]]) -> str:
    """Several re-runs of one reference: per study, how many cells got one verdict in every set that ran the
    study, and a table of the cells that did not (verdict and difference per set)."""
    names = [reference] + [name for name, _ in candidates]
    by_study: dict[str, list[StudyComparison | None]] = {}
    for i, (_, studies) in enumerate(candidates):
        for s in studies:
            by_study.setdefault(s.folder, [None] * len(candidates))[i] = None if s.missing else s
    lines = ["| study | sets that ran it | cells with one verdict in every set |", "|---|---|---|"]
    detail: list[str] = []
    for folder, runs in by_study.items():
        present = [(names[i + 1], s) for i, s in enumerate(runs) if s is not None]
        if not present:
            continue
        cells = [c.cell for c in present[0][1].cells]
        k, unit = scale_of(present[0][1].metric)
        unstable = []
        for j, cell in enumerate(cells):
            per = [(reference, present[0][1].cells[j].reference, present[0][1].cells[j].ref_diff)]
            for name, s in present:
                match = [c for c in s.cells if c.cell == cell]
                per.append(
                    (name, match[0].candidate, match[0].cand_diff)
                    if match
                    else (name, "missing", (math.nan,) * 3)
                )
            if len({kind for _, kind, _ in per}) > 1:
                unstable.append((cell, per))
        lines.append(f"| {folder} | {1 + len(present)} | {len(cells) - len(unstable)} of {len(cells)} |")
        if unstable:
            detail += [
                "",
                f"**{folder}** (difference{unit} per set: {', '.join(n for n, _ in [(reference, 0), *present])})",
                "",
            ]
            for cell, per in unstable:
                cols = "; ".join(f"{KIND_LABEL[kind]} {fmt_signed(d[0] * k)}" for _, kind, d in per)
                detail.append(f"- {cell}: {cols}")
    return "\n".join(lines + detail) + "\n"
