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
    p.set_defaults(func=_results)


def _results(args: argparse.Namespace) -> int:
    from lateralnorm.results import run_all

    if args.workers is not None and args.workers < 1:
        from lateralnorm.errors import UsageError

        raise UsageError(f"--workers must be at least 1 (got {args.workers})")
    stamp = run_all(
        args.manifest, args.out, workers=args.workers, only=args.only, report_only=args.report_only
    )
    total = stamp["wall_total_s"]
    print(f"answer set: {sum(sum(c.values()) for c in stamp['runs'].values())} runs, "
          f"{total / 60:.0f} min of study time in all -> {args.out}")  # fmt: skip
    return 0
