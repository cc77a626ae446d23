"""`lateralnorm study run|status|summary|export|check|reprobe`: run a grid of trainings and read its results."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from lateralnorm.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="run a grid of trainings from a TOML spec; status, summary, export")
    ssub = study.add_subparsers(dest="study_command", metavar="ACTION")
    study.set_defaults(func=lambda a: _need_action(study))

    p = ssub.add_parser("run", help="run or resume a study (finished runs are kept)")
    p.add_argument("spec", help="study spec, e.g. studies/q1_activation_before_ln.toml")
    p.add_argument("--variant", help="apply the spec's [variants.NAME] overrides, e.g. quick")
    p.add_argument("--out", help="study folder (default runs/<spec name>)")
    p.add_argument(
        "--executor", choices=["local", "ray", "inline"], default="local",
        help="local process pool, Ray, or inline (in this process, one run at a time: for debugging)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, help="parallel runs (default: one per core, or Ray's CPUs)")
    p.add_argument(
        "--ray-address", help="Ray cluster to join ('auto', 'ray://host:10001'); default: local Ray"
    )
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs that failed before")
    p.add_argument("--dry-run", action="store_true", help="print the planned runs and write nothing")
    p.add_argument(
        "--run-fn", metavar="MODULE:FUNCTION",
        help="train with this function instead of lateralnorm.train.run (it takes a RunConfig, returns a RunResult)",
    )  # fmt: skip
    p.set_defaults(func=cmd_run)

    p = ssub.add_parser("status", help="counts per status, ETA, failures")
    p.add_argument("study_dir", help="study folder, e.g. runs/q1")
    p.add_argument("--errors", action="store_true", help="print the traceback of each failed run")
    p.set_defaults(func=cmd_status)

    p = ssub.add_parser("summary", help="mean ± 95%% CI per cell, paired differences vs the baseline")
    p.add_argument("study_dir", help="study folder, e.g. runs/q1")
    p.add_argument("--metric", default="test_acc", help="column of the runs table (default test_acc)")
    p.add_argument("--bootstrap", action="store_true", help="percentile bootstrap CI instead of Student t")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    p.set_defaults(func=cmd_summary)

    p = ssub.add_parser("export", help="write the runs (or epochs, probes) table as CSV or Parquet")
    p.add_argument("study_dir", help="study folder, e.g. runs/q1")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--table", choices=["runs", "epochs", "probes"], default="runs")
    p.add_argument("--output", "-o", help="file to write (default <study>/<table>.<format>)")
    p.set_defaults(func=cmd_export)

    p = ssub.add_parser("check", help="check a study's database (SQLite integrity) and its runs' records")
    p.add_argument("study_dir", help="study folder, e.g. runs/q1")
    p.set_defaults(func=cmd_check)

    p = ssub.add_parser(
        "reprobe", help="recompute probes on finished runs (each retrained; replaced only if the same model)"
    )
    p.add_argument("study_dir", help="study folder, e.g. results/studies/q3_divisive_vs_softmax_ln-mnist1d")
    p.add_argument("--probe", action="append", required=True, help="probe to recompute (repeatable)")
    p.add_argument(
        "--cell", action="append", default=[],
        help="only runs whose cell label contains this text, e.g. kappa=full (repeatable; default all)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="parallel retrainings (default 1)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads per worker, as the studies ran (default 1)"
    )
    p.set_defaults(func=cmd_reprobe)


def _need_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    from lateralnorm.study import load_spec, plan, run_study
    from lateralnorm.study.runner import default_study_dir, summary_lines

    spec = load_spec(args.spec, args.variant)
    study_dir = Path(args.out) if args.out else default_study_dir(spec)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {args.workers})")
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    if args.run_fn:
        from lateralnorm.study.executors import resolve_run_fn

        resolve_run_fn(args.run_fn)  # a typo fails here, once, not in every worker
    if args.dry_run:
        runs = plan(spec, study_dir)
        for p in runs:
            print(f"{p.run_id}  seed={p.seed}  {p.cell_label}")
        print(f"{len(runs)} runs -> {study_dir} (dry run: nothing written)")
        if spec.tune is not None:
            from lateralnorm.study.tuning import tune_spec

            n = len(plan(tune_spec(spec), study_dir / "tune"))
            print(
                f"first {n} tuning runs -> {study_dir / 'tune'}: each cell's lr is chosen there from {spec.tune.lr}"
            )
        if spec.adaptive is not None:
            print(f"then seeds are added to unresolved cells, up to {spec.adaptive.max_seeds} per cell")
        return 0
    try:
        report = run_study(
            spec, study_dir, executor=args.executor, workers=args.workers, ray_address=args.ray_address,
            fail_fast=args.fail_fast, retry_failed=args.retry_failed, run_fn=args.run_fn, spec_path=args.spec,
            echo=lambda line: print(line, flush=True),
        )  # fmt: skip
    except KeyboardInterrupt:
        again = " ".join(
            ["lateralnorm study run", args.spec]
            + (["--variant", args.variant] if args.variant else [])
            + (["--out", args.out] if args.out else [])
        )
        print(f"stopped: finished runs are kept, the others are pending; `{again}` resumes", file=sys.stderr)
        raise
    for line in summary_lines(report):
        print(line)
    return 0 if report.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    """0 when the store (and its tuning store) is sound, 1 with one line per problem."""
    from lateralnorm.study import Store

    folders = [Path(args.study_dir)]
    if (folders[0] / "tune" / "study.db").is_file():
        folders.append(folders[0] / "tune")
    problems, notes = [], []
    for folder in folders:
        with Store(folder, readonly=True) as store:
            found, noted = store.check()
        problems += [f"{folder}: {p}" for p in found]
        notes += [f"{folder}: {n}" for n in noted]
    for line in problems:
        print(f"problem: {line}")
    for line in notes:
        print(f"note: {line}")
    print(f"{'ok' if not problems else f'{len(problems)} problem(s)'}: {', '.join(map(str, folders))}")
    return 1 if problems else 0


def cmd_reprobe(args: argparse.Namespace) -> int:
    """0 when every selected run was the stored model again and its probes were replaced; 1 otherwise."""
    from lateralnorm.study.reprobe import reprobe

    if args.workers < 1 or args.threads < 1:
        raise UsageError("--workers and --threads must be at least 1")
    report = reprobe(args.study_dir, args.probe, args.cell, workers=args.workers, threads=args.threads,
                     echo=lambda line: print(line, flush=True))  # fmt: skip
    print(f"{len(report.replaced)} run(s) reprobed, {len(report.differ)} not the stored model (kept), "
          f"{len(report.failed)} failed (kept)")  # fmt: skip
    return 0 if report.ok else 1


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def cmd_status(args: argparse.Namespace) -> int:
    from lateralnorm.study import Study

    with Study.load(args.study_dir) as study:
        counts = study.counts()
        total = sum(counts.values())
        pid = study.driver_pid()
        state = f"running (driver pid {pid})" if pid else "not running"
        print(f"study {study.name} in {study.path}: {total} runs, {state}")
        print("  " + "  ".join(f"{k} {v}" for k, v in counts.items()))
        if counts["pending"] + counts["running"]:
            seconds = study.eta_s()
            eta = "unknown until a run finishes" if seconds is None else _duration(seconds)
            print(f"  ETA {eta}" if pid else f"  work left: {eta}; `lateralnorm study run` resumes it")
        runs = study.runs()
        failed = runs[runs["status"] == "failed"]
        for _, row in failed.iterrows():
            print(f"  failed {row['run_id']}: {row['error']}")
        if args.errors and len(failed):
            tracebacks = study.store.failure_tracebacks()
            for rid in failed["run_id"]:
                print(f"\n--- {rid}\n{tracebacks.get(rid) or '(no traceback)'}")
    return 0


def _fmt(x: float, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _fmt_p(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def cmd_summary(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from lateralnorm.study import Study

    with Study.load(args.study_dir) as study:
        runs = study.runs()
        if args.metric not in runs.columns:
            raise UsageError(f"unknown metric {args.metric!r}: use a column of the runs table, e.g. test_acc")
        table = study.summary(args.metric, method="bootstrap" if args.bootstrap else "t")
        baseline, baselines, name = study.baseline, study.baselines, study.name
    ci = "bootstrap" if args.bootstrap else "t"
    # a compare_within study pairs each cell with its stratum's baseline: mark every one of them
    bases = set(baselines.values()) if isinstance(baselines, dict) else {baseline}
    if len(bases) > 1:
        against = ", each cell vs its stratum's baseline (*)"
    else:
        against = f", vs {baseline}" if baseline else ""
    out = Table(title=f"{name}: {args.metric}, mean ± 95% CI ({ci}){against}")
    for col in ("cell", "n", "mean ± CI"):
        out.add_column(col, justify="left" if col == "cell" else "right")
    paired = "mean_diff" in table.columns
    if paired:
        for col in ("Δ vs baseline [CI]", "p t (Holm)", "p Wilcoxon (Holm)", "d_z"):
            out.add_column(col, justify="right")
    for _, r in table.iterrows():
        half = (r["ci_high"] - r["ci_low"]) / 2
        extra = f"  ({r['n_diverged']} diverged)" if r["n_diverged"] else ""
        extra += f"  ({r['n_failed']} failed)" if r["n_failed"] else ""
        row = [
            str(r["cell"]) + (" *" if r["cell"] in bases else ""),
            f"{r['n']}",
            f"{_fmt(r['mean'])} ± {_fmt(half)}{extra}",
        ]
        if paired:
            if r["cell"] in bases:
                row += ["baseline", "", "", ""]
            else:
                diff = f"{_fmt(r['mean_diff'])} [{_fmt(r['diff_ci_low'])}, {_fmt(r['diff_ci_high'])}]"
                row += [diff, _fmt_p(r["p_t_holm"]), _fmt_p(r["p_wilcoxon_holm"]), _fmt(r["cohens_dz"], 2)]
        out.add_row(*row)
    Console(width=160).print(out)
    if args.csv:
        _write_atomic(Path(args.csv), lambda p: table.to_csv(p, index=False))
        print(f"wrote {args.csv}")
    return 0


def _write_atomic(path: Path, write) -> None:  # noqa: ANN001 - a callable taking the temp path
    """write(tmp) then rename into place: a reader never sees half a file."""
    from lateralnorm.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write(tmp)


def cmd_export(args: argparse.Namespace) -> int:
    from lateralnorm.study import Study

    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("parquet export needs pyarrow: pip install 'lateralnorm[parquet]'") from None
    with Study.load(args.study_dir) as study:
        df = getattr(study, args.table)()
    if "result" in df.columns:  # probe results: nested JSON as text
        df["result"] = df["result"].map(lambda v: json.dumps(v, default=str))
    path = Path(args.output) if args.output else Path(args.study_dir) / f"{args.table}.{args.format}"
    if args.format == "csv":
        _write_atomic(path, lambda p: df.to_csv(p, index=False))
    else:
        _write_atomic(path, lambda p: df.to_parquet(p, index=False))
    print(f"wrote {len(df)} rows to {path}", file=sys.stdout)
    return 0
