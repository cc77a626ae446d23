"""The HTML report: each study's question, design, statistics, figures and a verdict per cell.

    from lateralnorm.report import build_report
    build_report(["runs/q1_activation_before_ln", "runs/q5_layernorm_only"], "runs/report.html")

or `lateralnorm report runs/q1_activation_before_ln runs/q5_layernorm_only -o runs/report.html`.
Verdict rules: `lateralnorm.report.verdict` (also printed in every report); answer paragraphs per
question: `lateralnorm.report.answers`.
"""

from __future__ import annotations

from lateralnorm.report.build import build_report, render
from lateralnorm.report.collect import StudyView, collect
from lateralnorm.report.verdict import RULES, Verdict, cell_verdict, verdicts

__all__ = ["RULES", "StudyView", "Verdict", "build_report", "cell_verdict", "collect", "render", "verdicts"]
