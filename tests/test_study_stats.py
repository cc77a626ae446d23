"""lateralnorm.study.stats on synthetic runs tables whose answers are known (worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lateralnorm.study import stats


def table(cells: dict[str, list[float]], status: dict[tuple[str, int], str] | None = None) -> pd.DataFrame:
    """A runs table: one row per (cell, seed), seeds 0..n-1, status done unless given."""
    rows = []
    for cell, values in cells.items():
        for seed, v in enumerate(values):
            s = (status or {}).get((cell, seed), "done")
            rows.append({"cell": cell, "seed": seed, "status": s, "test_acc": v})
    return pd.DataFrame(rows)


def test_t_interval_known_answer():
    # mean 3, s = sqrt(2.5), sem = s/sqrt(5), t_{0.975,4} = 2.776445 -> half width 1.963243
    lo, hi = stats.t_interval([1, 2, 3, 4, 5])
    assert lo == pytest.approx(3 - 1.963243, abs=1e-6) and hi == pytest.approx(3 + 1.963243, abs=1e-6)
    assert all(math.isnan(x) for x in stats.t_interval([7.0]))


def test_cell_summary_counts_only_done_runs():
    runs = table({"a": [1, 2, 3, 4, 5, 100], "b": [0.5, 0.5]}, {("a", 5): "diverged", ("b", 1): "failed"})
    out = stats.cell_summary(runs).set_index("cell")
    assert out.loc["a", "n"] == 5 and out.loc["a", "mean"] == pytest.approx(3.0)
    assert out.loc["a", "std"] == pytest.approx(math.sqrt(2.5))
    assert out.loc["a", "ci_high"] == pytest.approx(4.963243, abs=1e-6)
    assert out.loc["a", "n_diverged"] == 1 and out.loc["b", "n_failed"] == 1
    assert out.loc["b", "n"] == 1 and math.isnan(out.loc["b", "ci_low"])
    assert list(out.index) == ["a", "b"]  # first-appearance order


def test_bootstrap_interval():
    assert stats.bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    x = np.random.default_rng(1).normal(10, 1, size=200)
    lo, hi = stats.bootstrap_interval(x)
    t_lo, t_hi = stats.t_interval(x)
    assert lo == pytest.approx(t_lo, abs=0.03) and hi == pytest.approx(t_hi, abs=0.03)
    assert lo < x.mean() < hi
    runs = table({"a": list(x)})
    assert stats.cell_summary(runs, method="bootstrap")["ci_low"][0] == pytest.approx(lo)
    with pytest.raises(ValueError, match="bootstrap"):
        stats.cell_summary(runs, method="jackknife")


def test_holm_known_answer():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(0.06, 1*0.04)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = stats.holm([0.02, np.nan, 0.01])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_paired_vs_baseline_known_answer():
    base = [10.0, 20.0, 30.0, 40.0, 50.0]
    runs = table(
        {
            "base": base,
            "up": [b + d for b, d in zip(base, [1, 2, 3, 4, 5])],  # d = 1..5
            "mixed": [b + d for b, d in zip(base, [1, -2, 3, 4, 5])],
            "same": base,
        }
    )
    out = stats.paired_vs_baseline(runs, "base").set_index("cell")
    assert list(out.index) == ["up", "mixed", "same"]
    up, mixed, same = out.loc["up"], out.loc["mixed"], out.loc["same"]
    # d = 1..5: mean 3, t = 3 / (sqrt(2.5)/sqrt(5)) = 4.242641, two-sided p (4 dof) = 0.013236
    assert up["n_pairs"] == 5 and up["mean_diff"] == pytest.approx(3.0)
    assert up["t"] == pytest.approx(4.242641, abs=1e-6) and up["p_t"] == pytest.approx(0.013236, abs=1e-6)
    assert up["diff_ci_low"] == pytest.approx(3 - 1.963243, abs=1e-6)
    # Wilcoxon, exact: all 5 ranks positive -> p = 2 / 2^5 ; one negative rank 2 -> p = 2 * 3 / 32
    assert up["p_wilcoxon"] == pytest.approx(0.0625) and mixed["p_wilcoxon"] == pytest.approx(0.1875)
    # d = 1,-2,3,4,5: mean 2.2, s = sqrt(7.7): t = 1.772811, d_z = 2.2 / sqrt(7.7)
    assert mixed["t"] == pytest.approx(1.772811, abs=1e-6)
    assert mixed["cohens_dz"] == pytest.approx(2.2 / math.sqrt(7.7)) and up["cohens_dz"] == pytest.approx(
        3 / math.sqrt(2.5)
    )
    # identical to the baseline: no difference, p = 1
    assert (
        same["mean_diff"] == 0 and same["p_t"] == 1.0 and same["p_wilcoxon"] == 1.0 and same["cohens_dz"] == 0
    )
    # Holm over the three cells
    assert out["p_t_holm"].tolist() == pytest.approx(list(stats.holm(out["p_t"].to_numpy())))
    assert up["p_t_holm"] == pytest.approx(3 * 0.013236, abs=1e-5)


def test_paired_pairs_only_matching_seeds_and_finds_a_known_effect():
    rng = np.random.default_rng(0)
    base = 0.8 + 0.02 * rng.standard_normal(10)
    runs = table(
        {
            "base": list(base),
            "better": list(base + 0.01 + 0.001 * rng.standard_normal(10)),  # a real, consistent gain
            "noise": list(base + 0.02 * rng.standard_normal(10)),  # no effect
        },
        {("better", 9): "failed"},  # seed 9 of 'better' has no result: 9 pairs
    )
    out = stats.paired_vs_baseline(runs, "base").set_index("cell")
    assert out.loc["better", "n_pairs"] == 9 and out.loc["noise", "n_pairs"] == 10
    assert out.loc["better", "p_t_holm"] < 1e-6 and out.loc["better", "p_wilcoxon_holm"] < 0.01
    assert out.loc["better", "mean_diff"] == pytest.approx(0.01, abs=0.002)
    assert out.loc["noise", "p_t_holm"] > 0.05


def test_summary_table_and_errors():
    runs = table({"base": [1.0, 2.0], "x": [2.0, 3.5]})
    full = stats.summary_table(runs, "base")
    assert {"mean", "ci_low", "mean_diff", "p_t_holm", "cohens_dz"} <= set(full.columns)
    assert math.isnan(full.set_index("cell").loc["base", "mean_diff"])
    assert "mean_diff" not in stats.summary_table(runs, None).columns
    with pytest.raises(KeyError, match="baseline"):
        stats.paired_vs_baseline(runs, "nope")
    with pytest.raises(KeyError, match="no column"):
        stats.cell_summary(runs, "test_los")
