"""Answer paragraphs: the numbers of a study turned into sentences, one function per question.

Every sentence is generated from the study's own runs and probes through lateralnorm.study.stats; a
comparison is called a difference only under the verdict rules of `verdict.py` (CI excludes 0 and the
Holm-corrected paired t p < 0.05, Holm over the family of comparisons the paragraph makes).

    answer(Context(...)) -> Answer(one_line, paragraphs)

Study-specific functions are chosen by the study name's prefix ("q1_…" → q1); any other study gets the
generic answer (best cell and the tally of verdicts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lateralnorm.report.verdict import ALPHA, Verdict, fmt_num, fmt_p, lower_is_better, scale_of, tally
from lateralnorm.study import stats
from lateralnorm.viz import plots


@dataclass
class Context:
    name: str
    runs: pd.DataFrame  # Study.runs()
    probes: pd.DataFrame  # Study.probes()
    table: pd.DataFrame  # stats.summary_table(runs, baseline, metric)
    verdicts: list[Verdict]
    baseline: str | None
    metric: str = "test_acc"


@dataclass
class Answer:
    one_line: str
    paragraphs: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- helpers
def find_cell(runs: pd.DataFrame, **values: Any) -> str | None:
    """The cell label whose runs have these RunConfig values (None if no such cell)."""
    mask = pd.Series(True, index=runs.index)
    for key, value in values.items():
        if key not in runs.columns:
            return None
        mask &= runs[key] == value
    cells = pd.unique(runs.loc[mask, "cell"])
    return str(cells[0]) if len(cells) == 1 else None


def cell_means(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Mean of `metric` per cell over finished runs (cell → mean)."""
    return stats.cell_summary(runs, metric).set_index("cell")["mean"]


def compare(runs: pd.DataFrame, pairs: list[tuple[str, str]], metric: str) -> list[dict[str, Any]]:
    """Paired comparisons a − b for each (a, b), Holm-corrected across the list. Each dict: a, b, n,
    diff, lo, hi, p, p_holm, kind (better/worse/no_difference/not_comparable under the verdict rules)."""
    out = []
    for a, b in pairs:
        sub = runs[runs["cell"].isin([a, b])]
        row = stats.paired_vs_baseline(sub, b, metric).iloc[0]
        out.append({"a": a, "b": b, "n": int(row["n_pairs"]), "diff": row["mean_diff"], "lo": row["diff_ci_low"],
                    "hi": row["diff_ci_high"], "p": row["p_t"]})  # fmt: skip
    adjusted = stats.holm([c["p"] for c in out])
    for c, p in zip(out, adjusted):
        c["p_holm"] = p
        c["kind"] = _kind(c, p, metric)
    return out


def _kind(c: dict[str, Any], p_holm: float, metric: str) -> str:
    if c["n"] < 2:
        return "not_comparable"
    if not (math.isfinite(p_holm) and p_holm < ALPHA) or not (c["lo"] > 0 or c["hi"] < 0):
        return "no_difference"
    up = c["lo"] > 0
    return "better" if up != lower_is_better(metric) else "worse"


def said(c: dict[str, Any], metric: str) -> str:
    """'+2.1 pts [0.8, 3.4], p_Holm = 0.01: higher' style summary of one comparison."""
    k, unit = scale_of(metric)
    if c["kind"] == "not_comparable":
        return f"not comparable (n = {c['n']})"
    nums = f"{_signed(c['diff'] * k)}{unit} [{fmt_num(c['lo'] * k)}, {fmt_num(c['hi'] * k)}]"
    if c["kind"] == "no_difference":
        return f"no detectable difference at n = {c['n']} ({nums}, p_Holm = {fmt_p(c['p_holm'])})"
    word = "higher" if c["diff"] > 0 else "lower"
    return f"{word}: {nums}, p_Holm = {fmt_p(c['p_holm'])}, n = {c['n']}"


def _signed(x: float) -> str:
    return ("+" if x > 0 else "") + fmt_num(x)


def _pct(x: float) -> str:
    return f"{fmt_num(x * 100, 1)}%"


def probe_stat(probes: pd.DataFrame, probe: str, stat: str) -> pd.DataFrame:
    """One value per run: the probe's per-layer `stat` averaged over layers. Columns cell, seed, run_id,
    value, status (= done, so stats.cell_summary accepts the frame)."""
    frame = plots.layer_stat_frame(probes, probe, stat)
    if frame.empty:
        return pd.DataFrame(columns=["cell", "seed", "run_id", "value", "status"])
    per_run = frame.groupby(["cell", "seed", "run_id"], sort=False)["value"].mean().reset_index()
    per_run["status"] = "done"
    return per_run


def probe_means(probes: pd.DataFrame, probe: str, stat: str) -> pd.Series:
    per_run = probe_stat(probes, probe, stat)
    if per_run.empty:
        return pd.Series(dtype=float)
    return stats.cell_summary(per_run, "value").set_index("cell")["mean"]


def best_cell(table: pd.DataFrame, metric: str) -> pd.Series | None:
    t = table.dropna(subset=["mean"])
    if t.empty:
        return None
    return t.loc[t["mean"].idxmin() if lower_is_better(metric) else t["mean"].idxmax()]


def _value(x: float, metric: str) -> str:
    k, _ = scale_of(metric)
    return f"{fmt_num(x * k)}{'%' if k == 100 else ''}"


def verdict_of(ctx: Context, cell: str | None) -> Verdict | None:
    return next((v for v in ctx.verdicts if v.cell == cell), None)


# ------------------------------------------------------------------------------------------------ generic
def generic(ctx: Context) -> Answer:
    """Best cell and the tally of verdicts against the baseline."""
    best = best_cell(ctx.table, ctx.metric)
    if best is None:
        return Answer("no finished runs")
    line = f"Best cell: {best['cell']} ({_value(best['mean'], ctx.metric)} {ctx.metric})"
    if ctx.baseline is not None:
        t = tally(ctx.verdicts)
        line += (f"; against the baseline {ctx.baseline}: {t['better']} better, {t['worse']} worse, "
                 f"{t['no_difference']} with no detectable difference")  # fmt: skip
        if t["not_comparable"]:
            line += f", {t['not_comparable']} not comparable"
    lost = ctx.runs["status"].isin(["diverged", "failed"]).sum()
    paragraphs = [line + "."]
    if lost:
        paragraphs.append(f"{lost} run(s) diverged or failed (flagged in the table below).")
    return Answer(line + ".", paragraphs)


# --------------------------------------------------------------------------------------------------- Q1
def q1(ctx: Context) -> Answer:
    """Activation before LayerNorm (pre) vs after (post): accuracy, cross-talk D(t), sparsity."""
    runs, m = ctx.runs, ctx.metric
    acts = [a for a in pd.unique(runs["activation"])] if "activation" in runs.columns else []
    pairs = []
    for a in acts:
        pre, post = find_cell(runs, norm="ln", placement="pre", activation=a), find_cell(runs, norm="ln", placement="post", activation=a)  # fmt: skip
        if pre and post:
            pairs.append((pre, post))
    if not pairs:
        return generic(ctx)
    acc = compare(runs, pairs, m)
    names = [str(runs.loc[runs["cell"] == c["a"], "activation"].iloc[0]) for c in acc]
    k, unit = scale_of(m)
    clear = [f"{c['kind']} for {n} ({_signed(c['diff'] * k)}{unit})" for c, n in zip(acc, names)
             if c["kind"] in ("better", "worse")]  # fmt: skip
    unclear = [n for c, n in zip(acc, names) if c["kind"] not in ("better", "worse")]
    acc_line = "act→LN vs LN→act: " + "; ".join(
        clear + ([f"no detectable difference for {', '.join(unclear)}"] if unclear else []))  # fmt: skip
    paragraphs = [
        "Accuracy, Linear→act→LN (pre) minus Linear→LN→act (post), paired on seed, Holm over the "
        f"{len(acc)} activations: " + "; ".join(f"{n}: {said(c, m)}" for c, n in zip(acc, names)) + "."
    ]
    # no-norm reference: does LN help at all here?
    ref = []
    for a in acts:
        post, none = find_cell(runs, norm="ln", placement="post", activation=a), find_cell(runs, norm="none", placement="post", activation=a)  # fmt: skip
        if post and none:
            ref.append((post, none))
    if ref:
        r = compare(runs, ref, m)
        paragraphs.append(
            "For scale, LN→act minus the same MLP without any norm: "
            + "; ".join(
                f"{str(runs.loc[runs['cell'] == c['a'], 'activation'].iloc[0])}: {said(c, m)}" for c in r
            )
            + ". (With norm = none, pre and post are the same network, so those cells coincide.)"
        )
    ct_line = ""
    d1, dT = probe_means(ctx.probes, "crosstalk", "D_at_1"), probe_means(ctx.probes, "crosstalk", "D_at_T")
    if len(dT):
        parts = []
        for a, (pre, post) in zip(names, pairs):
            if pre in dT and post in dT:
                parts.append(f"{a}: pre {fmt_num(d1.get(pre, math.nan), 3)} / {fmt_num(dT[pre], 2)}, "
                             f"post {fmt_num(d1.get(post, math.nan), 3)} / {fmt_num(dT[post], 2)}")  # fmt: skip
        paragraphs.append(
            "Cross-talk on the trained nets (crosstalk probe; median over test inputs, mean over layers and "
            "seeds): disturbance D of the positive units when one non-positive unit is driven down by 1 RMS / "
            "by 64 RMS — " + "; ".join(parts) + "."
        )
        relu_pre = pairs[names.index("relu")][0] if "relu" in names else None
        if relu_pre is not None and dT.get(relu_pre, 0.0) > 0.01:
            paragraphs.append(
                "Caution: with placement = pre the model applies the activation outside its norm slot, and the "
                "probe drives the norm slot's own input, i.e. after the activation. The drive therefore bypasses "
                "the ReLU and these D values measure LayerNorm alone (hence pre ≈ post). Through the activation, "
                "a ReLU before LN gives D ≡ 0 exactly (a unit already at y ≤ 0 stays at 0), GELU/ELU nearly so; "
                "see the bare-layer probe `lateralnorm probe --norm 'relu>ln' --width 32 --probe crosstalk`."
            )
            ct_line = "; the trained-net cross-talk probe here measured LN after the activation (see caution)"
        else:
            pre_mean = np.nanmean([dT.get(p, math.nan) for p, _ in pairs])
            post_mean = np.nanmean([dT.get(q, math.nan) for _, q in pairs])
            ct_line = f"; cross-talk D(64 RMS) pre {fmt_num(pre_mean, 2)} vs post {fmt_num(post_mean, 2)}"
    hoyer = probe_means(ctx.probes, "sparsity", "hoyer")
    if len(hoyer):
        parts = [f"{a}: pre {fmt_num(hoyer.get(p, math.nan))}, post {fmt_num(hoyer.get(q, math.nan))}"
                 for a, (p, q) in zip(names, pairs)]  # fmt: skip
        paragraphs.append(
            "Hoyer sparsity of the norm outputs (0 dense, 1 one-hot): " + "; ".join(parts) + "."
        )
    return Answer(f"Accuracy: {acc_line} (n = {acc[0]['n']} seeds){ct_line}.", paragraphs)


# --------------------------------------------------------------------------------------------------- Q2
def q2(ctx: Context) -> Answer:
    """Per-pixel LN across channels vs the other CNN norms."""
    runs, m = ctx.runs, ctx.metric
    ln = find_cell(runs, norm="ln")
    v = verdict_of(ctx, ln)
    means = cell_means(runs, m).dropna().sort_values(ascending=lower_is_better(m))
    speed = cell_means(runs, "samples_per_s")
    base = ctx.baseline
    ranking = ", ".join(f"{c.removeprefix('norm=')} {_value(x, m)}" for c, x in means.items())
    paragraphs = [f"Cells ranked by mean {m}: {ranking}."]
    if base in speed and pd.notna(speed[base]):
        paragraphs.append("Throughput relative to the baseline " + base + " (samples/s ratio): " + ", ".join(
            f"{c.removeprefix('norm=')} {fmt_num(s / speed[base])}×" for c, s in speed.items() if pd.notna(s)) + ".")  # fmt: skip
    if v is None:
        return Answer(generic(ctx).one_line, paragraphs)
    t = tally(ctx.verdicts)
    line = (f"Per-pixel LayerNorm across channels vs {base}: {v.text}; best cell "
            f"{means.index[0].removeprefix('norm=')} ({_value(means.iloc[0], m)}); {t['better']} cells better, "
            f"{t['worse']} worse than {base}")  # fmt: skip
    return Answer(line + ".", paragraphs)


# --------------------------------------------------------------------------------------------------- Q3
def q3(ctx: Context) -> Answer:
    """Divisive norm with full κ vs structured κ; gap and cost; vs Softmax, LN, RMSNorm."""
    runs, m = ctx.runs, ctx.metric
    full = find_cell(runs, norm="dn:kappa=full")
    structured = [c for c in (find_cell(runs, norm=n) for n in ("dn", "dn:kappa=self", "dn:kappa=band:3",
                                                                 "dn:kappa=lowrank:8")) if c]  # fmt: skip
    if not full or not structured:
        return generic(ctx)
    acc = compare(runs, [(full, s) for s in structured], m)
    paragraphs = ["Test accuracy, κ = full minus each structured κ (paired, Holm over the comparisons): "
                  + "; ".join(f"vs {c['b'].removeprefix('norm=')}: {said(c, m)}" for c in acc) + "."]  # fmt: skip
    gap_runs = runs.assign(gap=runs["train_acc"] - runs["test_acc"])
    gaps = compare(gap_runs, [(full, s) for s in structured], "gap")
    gmean = cell_means(gap_runs, "gap")
    paragraphs.append(
        "Generalization gap (train − test accuracy), a sign of over-fitting: full κ "
        f"{fmt_num(gmean.get(full, math.nan) * 100)} pts; "
        + "; ".join(
            f"{c['b'].removeprefix('norm=')} {fmt_num(gmean.get(c['b'], math.nan) * 100)} pts "
            f"(difference {fmt_num(c['diff'] * 100)} [{fmt_num(c['lo'] * 100)}, {fmt_num(c['hi'] * 100)}], "
            f"p_Holm = {fmt_p(c['p_holm'])})"
            for c in gaps
        )
        + "."  # fmt: skip
    )
    speed, params = cell_means(runs, "samples_per_s"), cell_means(runs, "num_params")
    uniform = find_cell(runs, norm="dn")
    cost = ""
    if uniform and pd.notna(speed.get(full)) and pd.notna(speed.get(uniform)):
        ratio = speed[full] / speed[uniform]
        cost = f"; full κ runs at {fmt_num(ratio)}× the samples/s of uniform κ"
        paragraphs.append(
            f"Cost: full κ {speed[full]:,.0f} samples/s and {params.get(full, math.nan):,.0f} parameters; uniform κ "
            f"{speed[uniform]:,.0f} samples/s and {params.get(uniform, math.nan):,.0f} parameters; "
            + ", ".join(f"{c.removeprefix('norm=')} {s:,.0f}" for c, s in speed.items() if pd.notna(s))
            + " samples/s."
        )
    others = [verdict_of(ctx, find_cell(runs, norm=n)) for n in ("softmax", "rms")]
    others_txt = "; ".join(f"{v.cell.removeprefix('norm=')} vs {ctx.baseline}: {v.text}" for v in others if v)
    if others_txt:
        paragraphs.append(others_txt + ".")
    hoyer = probe_means(ctx.probes, "sparsity", "hoyer")
    if len(hoyer):
        paragraphs.append("Hoyer sparsity of the norm outputs: " + ", ".join(
            f"{c.removeprefix('norm=')} {fmt_num(x)}" for c, x in hoyer.items()) + ".")  # fmt: skip
    worse = [c for c in acc if c["kind"] == "worse"]
    better = [c for c in acc if c["kind"] == "better"]
    verdict = ("full κ is worse than " + ", ".join(c["b"].removeprefix("norm=") for c in worse) if worse
               else "full κ is better than " + ", ".join(c["b"].removeprefix("norm=") for c in better) if better
               else "no detectable accuracy difference between full and structured κ")  # fmt: skip
    return Answer(f"Is learning every κ_ij too much? {verdict} (n = {acc[0]['n']} seeds){cost}.", paragraphs)


# --------------------------------------------------------------------------------------------------- Q4
def q4(ctx: Context) -> Answer:
    """Divisive normalization in the recurrence vs none and LayerNorm."""
    runs, m = ctx.runs, ctx.metric
    dn = [c for c in pd.unique(runs["cell"]) if "dn:" in c or c.endswith("=dn")]
    ln = find_cell(runs, norm="ln")
    model = str(runs["model"].iloc[0]).upper()
    vs = [verdict_of(ctx, c) for c in dn]
    paragraphs = [f"{c.removeprefix('norm=')} vs {ctx.baseline}: {v.text}." for c, v in zip(dn, vs) if v]
    if ln and dn:
        r = compare(runs, [(c, ln) for c in dn], m)
        paragraphs.append("Against LayerNorm in the recurrence (paired, Holm): " + "; ".join(
            f"{c['a'].removeprefix('norm=')}: {said(c, m)}" for c in r) + ".")  # fmt: skip
    lost = runs[runs["status"].isin(["diverged", "failed"])]
    if len(lost):
        paragraphs.append("Unstable cells: " + ", ".join(
            f"{c} ({n} runs)" for c, n in lost.groupby("cell").size().items()) + ".")  # fmt: skip
    if not vs:
        return generic(ctx)
    kinds = [v.kind for v in vs if v]
    helped = kinds.count("better")
    means = cell_means(runs, m).dropna()
    if len(means) and scale_of(m)[0] == 100:  # how far training got: a near-chance net answers nothing
        epochs = pd.unique(runs["epochs"]) if "epochs" in runs.columns else []
        after = f" after {epochs[0]} epochs" if len(epochs) == 1 else ""
        paragraphs.insert(0, f"All cells reach {_value(means.min(), m)} to {_value(means.max(), m)} {m}{after}; "
                             "read the comparisons with that in mind.")  # fmt: skip
    line = (f"{model}: a scaled-down divisive norm in the recurrence is better than {ctx.baseline} in {helped} of "
            f"{len(kinds)} variants, worse in {kinds.count('worse')}, no detectable difference in "
            f"{kinds.count('no_difference')}")  # fmt: skip
    reach = f"; cells reach {_value(means.min(), m)}–{_value(means.max(), m)}" if len(means) else ""
    return Answer(line + f" (n = {len(pd.unique(runs['seed']))} seeds{reach}).", paragraphs)


# --------------------------------------------------------------------------------------------------- Q5
def q5(ctx: Context) -> Answer:
    """LayerNorm as the only nonlinearity vs the linear net."""
    runs, m = ctx.runs, ctx.metric
    ln, lin, relu = (find_cell(runs, norm=n) for n in ("ln", "none", "relu"))
    if not ln or not lin:
        return generic(ctx)
    means = cell_means(runs, m)
    v = verdict_of(ctx, ln)
    paragraphs = [f"LN-only ({_value(means[ln], m)}) vs the linear net ({_value(means[lin], m)}): "
                  f"{v.text if v else '–'}."]  # fmt: skip
    for c in pd.unique(runs["cell"]):
        vc = verdict_of(ctx, c)
        if c not in (ln, lin) and vc:
            paragraphs.append(f"{c.removeprefix('norm=')} ({_value(means[c], m)}): {vc.text}.")
    if relu:
        r = compare(runs, [(ln, relu)], m)[0]
        paragraphs.append(f"LN-only minus the ReLU MLP: {said(r, m)}.")
    folds = probe_means(ctx.probes, "folds", "folds_per_unit")
    if len(folds):
        paragraphs.append("Folds (direction changes per unit along lines between test inputs; 0 for a linear "
                          "map): " + ", ".join(f"{c.removeprefix('norm=')} {fmt_num(x)}" for c, x in folds.items()) + ".")  # fmt: skip
    kind = v.kind if v else "not_comparable"
    word = {"better": "beats", "worse": "is worse than", "no_difference": "is not detectably different from",
            "not_comparable": "cannot be compared with"}.get(kind, kind)  # fmt: skip
    line = (f"LayerNorm as the only nonlinearity {word} the linear net: {_value(means[ln], m)} vs "
            f"{_value(means[lin], m)}")  # fmt: skip
    return Answer(line + ".", paragraphs)


ANSWERS: dict[str, Callable[[Context], Answer]] = {"q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5}


def answer(ctx: Context) -> Answer:
    """The study-specific answer for names starting "q1_" … "q5_", else the generic one. A study-specific
    function that cannot find its cells (a customized grid) falls back to the generic answer."""
    fn = ANSWERS.get(ctx.name.split("_", 1)[0].lower(), generic)
    try:
        return fn(ctx)
    except (KeyError, IndexError, ValueError) as e:  # a grid without the expected cells: say so, don't crash
        g = generic(ctx)
        g.paragraphs.append(f"(The question-specific summary was skipped: {type(e).__name__}: {e}.)")
        return g
