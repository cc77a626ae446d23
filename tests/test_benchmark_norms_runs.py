"""`benchmarks/norms.py --runs K`'s summary over several runs: per row with a target, the ratio the target reads
(the time ratio to the table's reference, or the ratio to the matmul the target names), its lowest / median /
highest value, and the runs that met it, on printed tables whose answer is known; and one real short run of
the script through it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "norms.py"


def _load():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("norms_benchmark_under_test", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _run(ln: float, band: float, lowrank: float, cf_ln: float) -> str:
    """One run's printed tables, the shape main() prints them in."""
    ok = lambda met: "ok" if met else "MISSED"  # noqa: E731
    return "\n".join(
        [
            "# norms benchmark: …",
            "",
            "## features-last (B=1024, N=512); reference nn.LayerNorm = 0.600 ms fwd+bwd, 2.0 MiB",
            "| norm | ms | time ratio | mem ratio | target |",
            "|---|---|---|---|---|",
            "| low-rank matmuls (k=16) | 3.000 | 5.00 | 1.06 |  |",
            "| ln | 0.610 | 1.02 | 1.00 |  |",
            f"| dn | 0.700 | {ln:.2f} | 1.00 | <= 3x LN: {ok(ln <= 3)} |",
            f"| dn:fn=exp,kappa=band:5 | 2.000 | {band:.2f} | 2.00 | <= 3x LN: {ok(band <= 3)} |",
            f"| dn:kappa=lowrank:16 | 4.000 | 7.00 | 3.09 | {lowrank:.2f}x low-rank matmuls (k=16) <= 1.5x: "
            f"{ok(lowrank <= 1.5)} |",
            "",
            "## channels-first (B=64, C=64, 28×28); reference permute→nn.LayerNorm→permute = 18.0 ms fwd+bwd, 12.6 MiB",
            "| norm | ms | time ratio | mem ratio | target |",
            "|---|---|---|---|---|",
            f"| ln | 10.0 | {cf_ln:.2f} | 1.00 | <= 0.8x permute: {ok(cf_ln <= 0.8)} |",
            "",
            "targets missed: …",
        ]
    )


def test_the_summary_gives_each_targets_ratio_over_the_runs():
    script = _load()
    outs = [_run(1.2, 2.9, 1.31, 0.57), _run(1.4, 3.3, 1.62, 0.60), _run(1.3, 3.1, 1.44, 0.55)]
    rows = script.target_rows(outs[1])
    assert rows[("features-last", "dn:kappa=lowrank:16")] == (1.62, "low-rank matmuls (k=16) <= 1.5x", False)
    assert rows[("features-last", "dn")] == (1.4, "<= 3x LN", True)
    assert ("features-last", "ln") not in rows  # no target: not a row of the summary
    lines, all_met = script.runs_summary(outs)
    assert not all_met
    by_norm = {line.split(" | ")[1]: line for line in lines[2:]}
    assert by_norm["dn"] == "| features-last | dn | 1.20 / 1.30 / 1.40 | <= 3x LN | 3/3 |"
    assert by_norm["dn:fn=exp,kappa=band:5"].endswith("| 2.90 / 3.10 / 3.30 | <= 3x LN | 1/3 |")
    assert "| 1.31 / 1.44 / 1.62 | low-rank matmuls (k=16) <= 1.5x | 2/3 |" in by_norm["dn:kappa=lowrank:16"]
    assert by_norm["ln"] == "| channels-first | ln | 0.55 / 0.57 / 0.60 | <= 0.8x permute | 3/3 |"
    assert script.runs_summary([_run(1.2, 2.9, 1.31, 0.57)])[1]  # every row met: all met


def test_runs_runs_the_script_in_fresh_processes(capsys):
    script = _load()
    status = script.main(["--quick", "--only", "ln;dn:kappa=self", "--runs", "2"])
    out = capsys.readouterr().out
    assert status in (0, 1), out
    assert out.count("# run ") == 2, out
    summary = out.split("## 2 runs", 1)[1]
    assert "| features-last | dn:kappa=self |" in summary and "| <= 3x LN |" in summary
    assert "| channels-first | ln |" in summary and summary.count("/2 |") == 2
    # a run that ends in an error, not in its verdict line: the error, status 2 (a bad spec fails every run)
    assert script.main(["--quick", "--only", "dn:kappa=nosuch", "--run=2"]) == 2
    assert "run 1 failed:" in capsys.readouterr().err
