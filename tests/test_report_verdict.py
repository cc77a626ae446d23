"""Verdict rules on synthetic runs tables whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lateralnorm.report.answers import compare, find_cell
from lateralnorm.report.verdict import cell_verdict, fmt_p, scale_of, tally, verdicts
from lateralnorm.study import stats

BASE = [0.60, 0.62, 0.58, 0.61, 0.59]  # baseline accuracy per seed


def runs_table(
    cells: dict[str, list[float | None]], status: dict[tuple[str, int], str] | None = None
) -> pd.DataFrame:
    """One row per (cell, seed); None means the run did not finish (status diverged unless given)."""
    rows = []
    for cell, values in cells.items():
        for seed, v in enumerate(values):
            st = (status or {}).get((cell, seed), "done" if v is not None else "diverged")
            rows.append({"cell": cell, "seed": seed, "status": st, "test_acc": v, "test_loss": None if v is None else 1 - v,
                         "norm": cell})  # fmt: skip
    return pd.DataFrame(rows)


def judge(runs: pd.DataFrame, metric: str = "test_acc") -> dict[str, object]:
    table = stats.summary_table(runs, "base", metric)
    return {v.cell: v for v in verdicts(table, "base", metric)}


def test_clear_improvement_is_better_with_the_hand_computed_numbers():
    gain = [0.031, 0.029, 0.030, 0.032, 0.028]
    runs = runs_table({"base": BASE, "good": [b + g for b, g in zip(BASE, gain)]})
    v = judge(runs)["good"]
    assert v.kind == "better"
    d = np.array(gain)
    half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    p = 2 * sps.t.sf(d.mean() / (d.std(ddof=1) / math.sqrt(5)), 4)  # one comparison: Holm leaves it
    want = f"better than baseline: +{d.mean() * 100:.2f} pts [{(d.mean() - half) * 100:.2f}, {(d.mean() + half) * 100:.2f}]"
    assert v.text.startswith(want), v.text
    assert f"p_Holm = {fmt_p(p)}" in v.text and v.text.endswith("n = 5")
    assert judge(runs)["base"].kind == "baseline"


def test_clear_drop_is_worse_and_loss_direction_is_reversed():
    runs = runs_table({"base": BASE, "bad": [b - 0.05 + 0.001 * i for i, b in enumerate(BASE)]})
    assert judge(runs)["bad"].kind == "worse"
    # the same runs judged on test loss (= 1 − acc): the loss went up, which is also worse
    assert judge(runs, "test_loss")["bad"].kind == "worse"
    good = runs_table({"base": BASE, "good": [b + 0.05 + 0.001 * i for i, b in enumerate(BASE)]})
    v = judge(good, "test_loss")["good"]
    assert v.kind == "better" and "-0.05" in v.text and "pts" not in v.text  # losses are not in points


def test_ci_spanning_zero_is_no_detectable_difference():
    runs = runs_table({"base": BASE[:3], "same": [BASE[0] + 0.02, BASE[1] - 0.03, BASE[2] + 0.01]})
    v = judge(runs)["same"]
    assert v.kind == "no_difference"
    d = np.array([0.02, -0.03, 0.01])
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (
        v.text
        == f"no detectable difference at n = 3 (CI [{(d.mean() - half) * 100:.2f}, {(d.mean() + half) * 100:.2f}] pts)"
    )


def test_ci_excluding_zero_is_not_enough_when_holm_p_is_large():
    """One cell with a consistent small gain (unadjusted p ≈ 0.013) among four null cells: Holm multiplies
    its p by 5, so it must not be called better although its own CI excludes 0."""
    base = BASE[:3]
    cells = {"base": base, "small": [b + d for b, d in zip(base, (0.010, 0.012, 0.008))]}
    for k in range(4):
        cells[f"null{k}"] = [b + d for b, d in zip(base, (0.01 * (k + 1), -0.012 * (k + 1), 0.003))]
    runs = runs_table(cells)
    table = stats.summary_table(runs, "base")
    row = table.set_index("cell").loc["small"]
    assert row["diff_ci_low"] > 0 and row["p_t"] < 0.05 <= row["p_t_holm"]  # the premise of the test
    v = judge(runs)["small"]
    assert v.kind == "no_difference"
    assert "the CI excludes 0 but p_Holm" in v.text and "over 5 comparisons" in v.text


def test_diverged_runs_are_flagged_excluded_and_too_few_pairs_is_not_comparable():
    runs = runs_table({"base": BASE[:4], "shaky": [0.70, None, 0.71, 0.72], "dead": [None, None, None, 0.5]})
    vs = judge(runs)
    assert vs["shaky"].flags == ("1 of 4 runs diverged",)
    assert "n = 3" in vs["shaky"].text  # the diverged seed is not a pair
    assert vs["dead"].kind == "not_comparable" and "only 1 paired" in vs["dead"].text
    assert vs["dead"].flags == ("3 of 4 runs diverged",)
    failed = runs_table({"base": BASE[:3], "x": [0.6, 0.61, 0.62]}, status={("base", 0): "failed"})
    failed.loc[(failed.cell == "base") & (failed.seed == 0), "test_acc"] = None
    v = judge(failed)
    assert v["base"].flags == ("1 of 3 runs failed",)
    assert any("baseline run(s)" in f for f in v["x"].flags)
    assert tally(list(vs.values())) == {"better": 1, "worse": 0, "no_difference": 0, "not_comparable": 1}


def test_no_baseline_means_nothing_is_compared():
    runs = runs_table({"base": BASE, "other": BASE})
    table = stats.summary_table(runs, None)
    assert {v.kind for v in verdicts(table, None)} == {"not_comparable"}


def test_verdict_of_a_single_row_and_scales():
    row = pd.Series({"cell": "c", "n": 3, "n_diverged": 0, "n_failed": 0, "n_pairs": 3, "mean_diff": -0.1,
                     "diff_ci_low": -0.2, "diff_ci_high": -0.05, "p_t_holm": 0.01})  # fmt: skip
    assert cell_verdict(row, "b").kind == "worse"
    assert cell_verdict(row.replace(0.01, 0.2), "b").kind == "no_difference"
    assert scale_of("test_acc") == (100.0, " pts") and scale_of("test_loss") == (1.0, "")


def test_family_comparisons_use_holm_and_the_same_rule():
    runs = runs_table({"a": BASE, "b": [x + 0.04 + 0.001 * i for i, x in enumerate(BASE)], "c": BASE})
    out = compare(runs, [("b", "a"), ("c", "a")], "test_acc")
    assert [c["kind"] for c in out] == ["better", "no_difference"]
    assert out[0]["p_holm"] == pytest.approx(min(1.0, 2 * out[0]["p"]))  # Holm over the 2 comparisons
    assert find_cell(runs, norm="b") == "b" and find_cell(runs, norm="zzz") is None


def test_transformer_answer_reports_bits_per_character_and_the_known_winner(monkeypatch):
    """QT: losses in nats per character are shown in bits (÷ ln 2); a norm built 0.1 nats better than LN on
    every seed is called better, one with noise around LN is not, and the n-gram baselines are compared."""
    from lateralnorm.report import answers

    ln = [2.20, 2.22, 2.18, 2.21, 2.19]
    rows = []
    for norm, losses in {"ln": ln, "relu>ln": [x - 0.1 for x in ln],
                         "none": [x + d for x, d in zip(ln, [0.02, -0.03, 0.01, -0.02, 0.015])]}.items():  # fmt: skip
        for seed, v in enumerate(losses):
            rows.append(
                {"cell": f"norm={norm}", "seed": seed, "status": "done", "test_loss": v, "norm": norm}
            )
    runs = pd.DataFrame(rows)
    table = stats.summary_table(runs, "norm=ln", "test_loss")
    ctx = answers.Context(name="qt_x", runs=runs, probes=pd.DataFrame(), table=table,
                          verdicts=verdicts(table, "norm=ln", "test_loss"), baseline="norm=ln", metric="test_loss")  # fmt: skip
    monkeypatch.setattr(answers, "ngram_bits", lambda: {"unigram": 4.8, "bigram": 3.8})
    a = answers.answer(ctx)
    assert "relu>ln better" in a.one_line and "none no difference" in a.one_line
    assert f"relu>ln at {np.mean(ln[:]) / math.log(2) - 0.1 / math.log(2):.3f} bits/char" in a.one_line
    assert "bigram 3.800" in a.paragraphs[1] and "(below the bigram" in a.paragraphs[1]
    assert "-0.10 nats (-0.14 bits)" in a.paragraphs[2]
    # a study without an LN baseline falls back to the generic answer
    ctx.baseline = None
    assert answers.answer(ctx).one_line.startswith("Best cell")
