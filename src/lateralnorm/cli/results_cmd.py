"""`lateralnorm results [MANIFEST] --out results`: every question's full study on both datasets, then the report,
the per-run table, the figures, the capacity probe and a stamp (see lateralnorm.results). `make results`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results",
        help="run (or resume) the answer set: every full study on both datasets, then report, table, figures",
    )
    p.add_argument("manifest", nargs="?", default="studies/results.toml",
                   help="the list of studies (default: studies/results.toml)")  # fmt: skip
    p.add_argument("-o", "--out", default="results", help="output folder (default: results)")
    p.add_argument("--workers", type=int, default=None, help="training processes (default: one per core)")
    p.add_argument("--only", action="append", metavar="FOLDER",
                   help="run only this study folder name, e.g. q1_activation_before_ln-fashion (repeatable)")  # fmt: skip
    p.add_argument("--report-only", action="store_true", help="run nothing: rebuild report, table, figures")
    p.add_argument("--compare", metavar="REFERENCE",
                   help="then compare with another answer set (e.g. the committed results/): verdicts the same, "
                        "differences inside its intervals, runs equal to the last bit; written to "
                        "OUT/comparison.md")  # fmt: skip
    p.set_defaults(func=_results)

    c = sub.add_parser(
        "compare",
        help="compare two answer sets verdict by verdict (did a re-run reproduce the committed results?)",
    )
    c.add_argument("reference", help="the answer set compared with, e.g. results")
    c.add_argument("candidate", nargs="+",
                   help="the re-run(s): answer sets, or folders of study folders; with several, also a table of "
                        "the cells whose verdict is not the same in every set")  # fmt: skip
    c.add_argument("-o", "--out", help="also write the comparison (Markdown) to this file")
    c.set_defaults(func=_compare)


def _results(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lateralnorm.errors import UsageError
    from lateralnorm.results import run_all

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {args.workers})")
    if args.compare is not None:
        from lateralnorm.report.compare import study_folders

        study_folders(args.compare)  # a wrong reference fails now, not after hours of training
        if Path(args.compare).resolve() == Path(args.out).resolve():
            raise UsageError(f"--compare {args.compare} is the output folder itself: give another answer set")
    stamp = run_all(
        args.manifest, args.out, workers=args.workers, only=args.only, report_only=args.report_only
    )
    total = stamp["wall_total_s"]
    print(f"answer set: {sum(sum(c.values()) for c in stamp['runs'].values())} runs, "
          f"{total / 60:.0f} min of study time in all -> {args.out}")  # fmt: skip
    if args.compare is not None:
        _write_comparison(args.compare, args.out, Path(args.out) / "comparison.md")
    return 0


def _write_comparison(reference: str, candidates: str | list[str], out: object | None) -> None:
    from lateralnorm import atomic
    from lateralnorm.report.compare import compare_sets, render_markdown, render_stability

    names = [candidates] if isinstance(candidates, str) else list(candidates)
    runs = [(name, compare_sets(reference, name)) for name in names]
    parts = [render_markdown(studies, reference=reference, candidate=name) for name, studies in runs]
    if len(runs) > 1:
        parts.append(
            f"## Across {reference} and the {len(runs)} re-runs\n\n" + render_stability(reference, runs)
        )
    text = "\n".join(parts)
    if out is not None:
        atomic.write_text(out, f"# {', '.join(names)} against {reference}\n\n{text}")  # type: ignore[arg-type]
    print(text, end="")


def _compare(args: argparse.Namespace) -> int:
    from lateralnorm.report.compare import study_folders

    for folder in (args.reference, *args.candidate):  # every set readable before any work
        study_folders(folder)
    _write_comparison(args.reference, args.candidate, args.out)
    return 0
