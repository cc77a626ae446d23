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
    grad_norms: pd.Series | None = None  # cell -> mean over runs of the largest per-epoch gradient norm
    baselines: dict[str, str] | None = None  # cell -> its own baseline (compare_within studies)
    confidence: float = 0.95  # interval level; 1 − α/K in a sequential (adaptive) study

    @property
    def alpha(self) -> float:
        return 1 - self.confidence


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


def compare(
    runs: pd.DataFrame, pairs: list[tuple[str, str]], metric: str, confidence: float = 0.95
) -> list[dict[str, Any]]:
    """Paired comparisons a − b for each (a, b), Holm-corrected across the list. Each dict: a, b, n,
    diff, lo, hi (interval at `confidence`), p, p_holm, kind (better/worse/no_difference/not_comparable
    under the verdict rules at α = 1 − confidence)."""
    out = []
    for a, b in pairs:
        sub = runs[runs["cell"].isin([a, b])]
        row = stats.paired_vs_baseline(sub, b, metric, confidence=confidence).iloc[0]
        out.append({"a": a, "b": b, "n": int(row["n_pairs"]), "diff": row["mean_diff"], "lo": row["diff_ci_low"],
                    "hi": row["diff_ci_high"], "p": row["p_t"]})  # fmt: skip
    adjusted = stats.holm([c["p"] for c in out])
    for c, p in zip(out, adjusted):
        c["p_holm"] = p
        c["kind"] = _kind(c, p, metric, 1 - confidence)
    return out


def _kind(c: dict[str, Any], p_holm: float, metric: str, alpha: float = ALPHA) -> str:
    if c["n"] < 2:
        return "not_comparable"
    if not (math.isfinite(p_holm) and p_holm < alpha) or not (c["lo"] > 0 or c["hi"] < 0):
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
        against = "its own baseline" if _stratified(ctx) else f"the baseline {ctx.baseline}"
        line += (f"; each cell against {against}: {t['better']} better, {t['worse']} worse, "
                 f"{t['no_difference']} with no detectable difference")  # fmt: skip
        if t["not_comparable"]:
            line += f", {t['not_comparable']} not comparable"
    lost = ctx.runs["status"].isin(["diverged", "failed"]).sum()
    paragraphs = [line + "."]
    if lost:
        paragraphs.append(f"{lost} run(s) diverged or failed (flagged in the table below).")
    return Answer(line + ".", paragraphs)


def _stratified(ctx: Context) -> bool:
    return bool(ctx.baselines) and len(set(ctx.baselines.values())) > 1


def _cmp(ctx: Context, pairs: list[tuple[str, str]], metric: str | None = None) -> list[dict[str, Any]]:
    """compare() at the study's interval level, dropping pairs whose cells are missing."""
    pairs = [(a, b) for a, b in pairs if a and b]
    return compare(ctx.runs, pairs, metric or ctx.metric, ctx.confidence) if pairs else []


def _short(cell: str) -> str:
    """'norm=dn:kappa=full,alpha=1, width=32' → 'dn:kappa=full,alpha=1 (width=32)'."""
    head, _, rest = cell.partition(", ")
    head = head.removeprefix("norm=")
    return f"{head} ({rest})" if rest else head


def _level(ctx: Context) -> str:
    return (
        "" if abs(ctx.confidence - 0.95) < 1e-9 else f" ({ctx.confidence:.1%} intervals: a sequential design)"
    )


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
    acc = compare(runs, pairs, m, ctx.confidence)
    names = [str(runs.loc[runs["cell"] == c["a"], "activation"].iloc[0]) for c in acc]
    k, unit = scale_of(m)
    clear = [f"{c['kind']} for {n} ({_signed(c['diff'] * k)}{unit})" for c, n in zip(acc, names)
             if c["kind"] in ("better", "worse")]  # fmt: skip
    unclear = [n for c, n in zip(acc, names) if c["kind"] not in ("better", "worse")]
    acc_line = "act→LN vs LN→act: " + "; ".join(
        clear + ([f"no detectable difference for {', '.join(unclear)}"] if unclear else []))  # fmt: skip
    paragraphs = [
        "Accuracy, Linear→act→LN (pre) minus Linear→LN→act (post), paired on seed, Holm over the "
        f"{len(acc)} activations{_level(ctx)}: "
        + "; ".join(f"{n}: {said(c, m)}" for c, n in zip(acc, names))
        + "."
    ]
    # no-norm reference: does LN help at all here?
    ref = []
    for a in acts:
        post, none = find_cell(runs, norm="ln", placement="post", activation=a), find_cell(runs, norm="none", placement="post", activation=a)  # fmt: skip
        if post and none:
            ref.append((post, none))
    if ref:
        r = compare(runs, ref, m, ctx.confidence)
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
    folds = probe_means(ctx.probes, "folds", "folds_per_unit")
    if len(folds):
        parts = [f"{a}: pre {fmt_num(folds.get(p, math.nan))}, post {fmt_num(folds.get(q, math.nan))}"
                 for a, (p, q) in zip(names, pairs)]  # fmt: skip
        only = find_cell(runs, norm="ln", placement="only")
        extra = f"; LN alone (no activation) {fmt_num(folds[only])}" if only in folds else ""
        paragraphs.append(
            "Folding: direction changes per unit of the norm layers' outputs along straight lines between test "
            "inputs (0 for a linear map): " + "; ".join(parts) + extra + "."
        )
    return Answer(f"Accuracy: {acc_line} (n = {acc[0]['n']} seeds){ct_line}.", paragraphs)


# --------------------------------------------------------------------------------------------------- Q2
def q2(ctx: Context) -> Answer:
    """Per-pixel LN across channels (and act→LN) vs the other CNN norms, per batch size."""
    runs, m = ctx.runs, ctx.metric
    sizes = sorted(pd.unique(runs["batch_size"])) if "batch_size" in runs.columns else [None]
    means = cell_means(runs, m)
    speed = cell_means(runs, "samples_per_s")
    paragraphs, heads = [], []
    for bs in sizes:
        where = {"batch_size": bs} if bs is not None else {}
        bn = find_cell(runs, norm="bn", placement="post", **where)
        ln = find_cell(runs, norm="ln", placement="post", **where)
        pre = find_cell(runs, norm="ln", placement="pre", **where)
        cells = [
            c
            for c in pd.unique(runs["cell"])
            if bs is None or (runs.loc[runs["cell"] == c, "batch_size"] == bs).all()
        ]
        ranked = sorted(
            (c for c in cells if pd.notna(means.get(c))),
            key=lambda c: means[c],
            reverse=not lower_is_better(m),
        )
        label = f"batch size {bs}" if bs is not None else "all cells"
        paragraphs.append(f"{label}, ranked by mean {m}: " + ", ".join(
            f"{_short(c).split(' (')[0]}{' (act→LN)' if c == pre else ''} {_value(means[c], m)}" for c in ranked) + ".")  # fmt: skip
        vl, vp = verdict_of(ctx, ln), verdict_of(ctx, pre)
        if vl:
            paragraphs.append(
                f"{label}: per-pixel LN vs BatchNorm: {vl.text}"
                + (f"; ReLU→LN vs BatchNorm: {vp.text}" if vp else "")
                + "."
            )
        r = _cmp(ctx, [(pre, ln)])
        if r:
            paragraphs.append(f"{label}: act→LN minus LN→act (the thread's idea in a CNN): {said(r[0], m)}.")
        if bn in speed and pd.notna(speed[bn]):
            paragraphs.append(f"{label}: throughput relative to BatchNorm (samples/s ratio): " + ", ".join(
                f"{_short(c).split(' (')[0]} {fmt_num(speed[c] / speed[bn])}×" for c in cells if pd.notna(speed.get(c))) + ".")  # fmt: skip
        if vl:
            heads.append(
                f"at batch size {bs}: per-pixel LN {vl.kind.replace('_', ' ')} vs BN ({_value(means.get(ln, math.nan), m)} vs {_value(means.get(bn, math.nan), m)})"
            )
    if not heads:
        return Answer(generic(ctx).one_line, paragraphs)
    return Answer("; ".join(heads) + f"{_level(ctx)}.", paragraphs)


# --------------------------------------------------------------------------------------------------- Q3
def q3(ctx: Context) -> Answer:
    """Divisive norms (κ structures × α) vs LN, RMSNorm, Softmax; full vs structured κ; cost."""
    runs, m = ctx.runs, ctx.metric
    means, speed, params = (
        cell_means(runs, m),
        cell_means(runs, "samples_per_s"),
        cell_means(runs, "num_params"),
    )
    dn = [c for c in pd.unique(runs["cell"]) if "dn" in c]
    if not dn:
        return generic(ctx)
    vs = {c: verdict_of(ctx, c) for c in dn}
    kinds = [v.kind for v in vs.values() if v]
    best = (
        max(dn, key=lambda c: means.get(c, -math.inf))
        if not lower_is_better(m)
        else min(dn, key=lambda c: means.get(c, math.inf))
    )
    paragraphs = [f"Divisive variants against {ctx.baseline}: {kinds.count('better')} better, {kinds.count('worse')} worse, "
                  f"{kinds.count('no_difference')} with no detectable difference{_level(ctx)}. Best divisive cell: "
                  f"{_short(best)} ({_value(means[best], m)}; {vs[best].text if vs.get(best) else '–'})."]  # fmt: skip
    for name in ("softmax", "rms"):
        v = verdict_of(ctx, find_cell(runs, norm=name))
        if v:
            paragraphs.append(f"{name} vs {ctx.baseline}: {v.text}.")
    pairs = []
    for c in dn:
        if "kappa=full" in c:
            u = c.replace("kappa=full", "kappa=uniform")
            if u in means.index:
                pairs.append((c, u))
    r = _cmp(ctx, pairs)
    if r:
        paragraphs.append("Full κ (N² learned weights) minus uniform κ (one pooled sum), same α: "
                          + "; ".join(f"{_short(c['a']).replace('dn:kappa=full,', '')}: {said(c, m)}" for c in r) + ".")  # fmt: skip
        c0 = r[0]
        if pd.notna(speed.get(c0["a"])) and pd.notna(speed.get(c0["b"])):
            paragraphs.append(f"Cost: full κ {speed[c0['a']]:,.0f} samples/s and {params.get(c0['a'], math.nan):,.0f} parameters, "
                              f"uniform κ {speed[c0['b']]:,.0f} samples/s and {params.get(c0['b'], math.nan):,.0f} parameters; "
                              f"{ctx.baseline} {speed.get(ctx.baseline, math.nan):,.0f} samples/s.")  # fmt: skip
    alphas = {
        "α = 1": [c for c in dn if "alpha=1" in c and "learn_alpha" not in c],
        "α = 2": [c for c in dn if "alpha=2" in c],
        "learned α": [c for c in dn if "learn_alpha=true" in c],
    }
    fam = [
        f"{k} {_value(np.nanmean([means.get(c, math.nan) for c in v]), m)}" for k, v in alphas.items() if v
    ]
    if fam:
        paragraphs.append("Mean over κ structures: " + ", ".join(fam) + ".")
    hoyer = probe_means(ctx.probes, "sparsity", "hoyer")
    if len(hoyer):
        paragraphs.append("Hoyer sparsity of the norm outputs: " + ", ".join(
            f"{_short(c)} {fmt_num(x)}" for c, x in hoyer.items()) + ".")  # fmt: skip
    full_word = ""
    if r:
        worse = sum(c["kind"] == "worse" for c in r)
        better = sum(c["kind"] == "better" for c in r)
        full_word = f"; full κ vs uniform κ: {better} better, {worse} worse, {len(r) - better - worse} no detectable difference"
    line = (f"Divisive norms vs {ctx.baseline}: {kinds.count('better')} better, {kinds.count('worse')} worse, "
            f"{kinds.count('no_difference')} not detectably different; best {_short(best)} {_value(means[best], m)} "
            f"vs {ctx.baseline} {_value(means.get(ctx.baseline, math.nan), m)}{full_word}")  # fmt: skip
    return Answer(line + ".", paragraphs)


def q3b(ctx: Context) -> Answer:
    """Full vs structured κ at two widths, with and without weight decay on κ; the train–test gap."""
    runs, m = ctx.runs, ctx.metric
    if not ctx.baselines:
        return generic(ctx)
    gap_runs = runs.assign(gap=runs["train_acc"] - runs["test_acc"])
    gmean = cell_means(gap_runs, "gap")
    full = [c for c in pd.unique(runs["cell"]) if "kappa=full" in c]
    pairs = [(c, ctx.baselines[c]) for c in full if c in ctx.baselines]
    acc = _cmp(ctx, pairs)
    gap = compare(gap_runs, [(c["a"], c["b"]) for c in acc], "gap", ctx.confidence) if acc else []
    paragraphs = []
    for a, g in zip(acc, gap):
        where = a["a"].split(", ", 1)[1] if ", " in a["a"] else ""
        paragraphs.append(
            f"{where}: full minus uniform κ, accuracy {said(a, m)}; train–test gap full {fmt_num(gmean.get(a['a'], math.nan) * 100)} "
            f"vs uniform {fmt_num(gmean.get(a['b'], math.nan) * 100)} pts (difference {said(g, 'gap_acc')})."
        )  # fmt: skip
    if not acc:
        return generic(ctx)
    worse, better = sum(c["kind"] == "worse" for c in acc), sum(c["kind"] == "better" for c in acc)
    gap_up = sum(g["kind"] == "better" for g in gap)  # "better" on the gap metric: significantly larger
    line = (
        f"Full κ vs uniform κ over {len(acc)} (width, κ decay) settings: {better} better, {worse} worse, "
        f"{len(acc) - better - worse} no detectable difference; a larger train–test gap in {gap_up}{_level(ctx)}"
    )
    return Answer(line + ".", paragraphs)


# --------------------------------------------------------------------------------------------------- Q4
def q4(ctx: Context) -> Answer:
    """Norms in the recurrence (per cell type) vs none; gradient-norm statistics."""
    runs, m = ctx.runs, ctx.metric
    models = list(pd.unique(runs["model"])) if "model" in runs.columns else []
    means = cell_means(runs, m)
    paragraphs, heads = [], []
    for model in models:
        cells = [c for c in pd.unique(runs["cell"]) if (runs.loc[runs["cell"] == c, "model"] == model).all()]
        none = find_cell(runs, norm="none", model=model)

        def norm_of(c: str) -> str:
            return str(runs.loc[runs["cell"] == c, "norm"].iloc[0])

        parts = []
        for c in cells:
            v = verdict_of(ctx, c)
            if c != none and v:
                parts.append(f"{norm_of(c)} {_value(means.get(c, math.nan), m)}: {v.text}")
        paragraphs.append(
            f"{model.upper()} (no norm {_value(means.get(none, math.nan), m)}): " + "; ".join(parts) + "."
        )
        dn = [c for c in cells if "dn:" in c]
        ln = find_cell(runs, norm="ln", model=model)
        r = _cmp(ctx, [(c, ln) for c in dn])
        if r:
            paragraphs.append(f"{model.upper()}, divisive minus LayerNorm in the recurrence: " + "; ".join(
                f"{norm_of(c['a'])}: {said(c, m)}" for c in r) + ".")  # fmt: skip
        kinds = [verdict_of(ctx, c).kind for c in dn if verdict_of(ctx, c)]
        heads.append(
            f"{model.upper()}: divisive better than no norm in {kinds.count('better')} of {len(kinds)}, worse in {kinds.count('worse')}"
        )
    lost = runs[runs["status"].isin(["diverged", "failed"])]
    if len(lost):
        paragraphs.append(
            "Unstable cells: "
            + ", ".join(f"{c} ({n} runs)" for c, n in lost.groupby("cell").size().items())
            + "."
        )
    g = ctx.grad_norms
    if g is not None and len(g):
        paragraphs.append("Gradient norm (largest per epoch, mean over epochs and seeds; stability): " + ", ".join(
            f"{_short(c)} {x:.3g}" for c, x in g.items()) + ".")  # fmt: skip
    if not heads:
        return generic(ctx)
    return Answer("; ".join(heads) + f"{_level(ctx)}.", paragraphs)


# --------------------------------------------------------------------------------------------------- Q5
def q5(ctx: Context) -> Answer:
    """LayerNorm as the only nonlinearity vs the linear net of the same depth."""
    runs, m = ctx.runs, ctx.metric
    depths = sorted(pd.unique(runs["depth"])) if "depth" in runs.columns else []
    means = cell_means(runs, m)
    paragraphs, heads = [], []
    folds = probe_means(ctx.probes, "folds", "folds_per_unit")
    for d in depths:
        ln, lin, relu = (find_cell(runs, norm=n, depth=d) for n in ("ln", "none", "relu"))
        if not ln or not lin:
            continue
        v = verdict_of(ctx, ln)
        gain = means[ln] - means[lin]
        k, unit = scale_of(m)
        parts = [
            f"LN-only {_value(means[ln], m)} vs linear {_value(means[lin], m)} ({_signed(gain * k)}{unit}): {v.text if v else '–'}"
        ]
        for c in pd.unique(runs["cell"]):
            vc = verdict_of(ctx, c)
            if c not in (ln, lin) and vc and (runs.loc[runs["cell"] == c, "depth"] == d).all():
                parts.append(f"{_short(c).split(' (')[0]} {_value(means[c], m)}: {vc.text}")
        r = _cmp(ctx, [(ln, relu)]) if relu else []
        if r:
            parts.append(f"LN-only minus ReLU: {said(r[0], m)}")
        if len(folds):
            parts.append("folds per unit " + ", ".join(
                f"{_short(c).split(' (')[0]} {fmt_num(folds[c])}" for c in (ln, lin, relu) if c in folds))  # fmt: skip
        paragraphs.append(f"Depth {d}: " + "; ".join(parts) + ".")
        heads.append(f"depth {d}: {_signed(gain * k)}{unit} ({v.kind.replace('_', ' ') if v else '?'})")
    if not heads:
        return generic(ctx)
    return Answer(
        "LN-only MLP minus the linear net of the same depth: " + "; ".join(heads) + f"{_level(ctx)}.",
        paragraphs,
    )


# --------------------------------------------------------------------------------------------------- QT
LN2 = math.log(2.0)


def _bits(x: float) -> str:
    return fmt_num(x / LN2, 3)


def ngram_bits() -> dict[str, float] | None:
    """Unigram and bigram bits per character of the text task's test split (fitted on its training split),
    or None when the corpus is not installed on this machine."""
    from lateralnorm.data import text

    try:
        parts = text.split_documents(text.load_documents())
    except text.DataFileError:
        return None
    bits = text.ngram_baselines(text.join(parts["train"]), text.join(parts["test"]))
    return {"unigram": bits["unigram_bits"], "bigram": bits["bigram_bits"]}


def qt(ctx: Context) -> Answer:
    """The questions in a GPT on text: each norm's test loss in bits per character with its interval,
    paired against LN; the unigram/bigram baselines; cross-talk and sparsity of the norm slots."""
    runs, m = ctx.runs, ctx.metric
    if ctx.baseline is None or m != "test_loss" or "norm" not in runs.columns:
        return generic(ctx)
    t = ctx.table.dropna(subset=["mean"]).set_index("cell")
    ln = ctx.baseline
    per_norm = [
        f"{_short(c)} {_bits(r['mean'])} [{_bits(r['ci_low'])}, {_bits(r['ci_high'])}] (n = {int(r['n'])})"
        for c, r in t.iterrows()
    ]
    level = stats.level_label(ctx.confidence)
    paragraphs = [
        f"Test loss in bits per character, mean [{level} interval] over seeds: " + "; ".join(per_norm) + "."
    ]
    base = ngram_bits()
    if base is not None:
        best = t["mean"].min() / LN2
        paragraphs.append(
            f"Baselines on the same test split: unigram {fmt_num(base['unigram'], 3)}, bigram "
            f"{fmt_num(base['bigram'], 3)} bits per character; the best model reaches {fmt_num(best, 3)} "
            + (
                "(below the bigram: the models learned context)."
                if best < base["bigram"]
                else "(not below the bigram: this budget is too small to learn context)."
            )
        )
    groups = {
        "Q1, activation before LN in every norm slot": ("relu>ln", "gelu>ln", "elu>ln"),
        "Q3, other normalizations in LN's place": ("rms", "dn", "softmax"),
        "Q5, the LN-free transformer": ("none", "dyt"),
    }
    heads = []
    for title, names in groups.items():
        parts = []
        for n in names:
            cell = find_cell(runs, norm=n)
            v = verdict_of(ctx, cell)
            if cell and v:
                diff = (
                    t.loc[cell, "mean"] - t.loc[ln, "mean"] if cell in t.index and ln in t.index else math.nan
                )
                shown = f"{_signed(diff)} nats ({_signed(diff / LN2)} bits)" if math.isfinite(diff) else "–"
                parts.append(f"{n} {shown}: {v.text}")
                heads.append(f"{n} {v.kind.replace('_', ' ')}")
        if parts:
            paragraphs.append(
                f"{title} (minus LN per character, lower is better; intervals in nats): "
                + "; ".join(parts)
                + "."
            )
    d_t, hoyer = probe_means(ctx.probes, "crosstalk", "D_at_T"), probe_means(ctx.probes, "sparsity", "hoyer")
    if len(d_t) or len(hoyer):
        parts = [
            f"{_short(c)}: D {fmt_num(d_t.get(c, math.nan), 2)}, Hoyer {fmt_num(hoyer.get(c, math.nan), 2)}"
            for c in t.index
            if c in d_t or c in hoyer
        ]
        paragraphs.append(
            "The norm slots of the trained models (mean over slots and seeds): cross-talk D, the disturbance of "
            "the positive units when one non-positive unit of the slot's input is driven down by 64 RMS (0 = "
            "none; relu>ln is 0 by construction), and the Hoyer sparsity of the slot's output: "
            + "; ".join(parts)
            + "."
        )
    if not heads:
        return generic(ctx)
    best = t["mean"].idxmin()
    return Answer(
        f"Best: {_short(best)} at {_bits(t.loc[best, 'mean'])} bits/char (LN {_bits(t.loc[ln, 'mean'])}); against LN: "
        + ", ".join(heads)
        + f"{_level(ctx)}.",
        paragraphs,
    )


ANSWERS: dict[str, Callable[[Context], Answer]] = {
    "q1": q1,
    "q2": q2,
    "q3": q3,
    "q3b": q3b,
    "q4": q4,
    "q5": q5,
    "qt": qt,
}


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
