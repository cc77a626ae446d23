"""`lateralnorm report STUDY_DIR [...] -o report.html`: one self-contained HTML report of finished studies."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="one offline HTML page: each study's question, statistics, figures and verdicts (+ runs.csv)",
    )
    p.add_argument(
        "study_dirs", nargs="+", metavar="STUDY_DIR", help="study folders (from `lateralnorm study run`)"
    )
    p.add_argument("-o", "--out", default="report.html", help="the HTML file to write (default: report.html)")
    p.add_argument("--metric", default=None,
                   help="the runs-table column judged (default: each study's own, test_acc unless its spec says)")  # fmt: skip
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from lateralnorm.report import build_report

    html, csv = build_report(args.study_dirs, args.out, metric=args.metric)
    print(f"wrote {html} (raw records: {csv})")
    return 0
