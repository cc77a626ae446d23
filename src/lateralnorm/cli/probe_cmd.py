"""`lateralnorm probe` (cross-talk, sparsity, invariance, folds of a trained run or a bare layer) and
`lateralnorm capacity` (random-label memorization versus width and depth)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lateralnorm.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="probe a trained run's norm layers (or a bare layer): crosstalk, sparsity, invariance, folds",
        description="Probe the norm layers of a trained run (RUN_DIR) or a freshly built layer (--norm). "
        "Prints a table and writes the JSON result to RUN_DIR/probe-<name>.json or --json.",
    )
    p.add_argument(
        "run_dir", nargs="?", metavar="RUN_DIR", help="a run folder (has config.json, checkpoint.pt)"
    )
    p.add_argument(
        "--probe",
        action="append",
        metavar="NAME",
        help="crosstalk, sparsity, invariance or folds; repeat or comma-separate for several (default: crosstalk)",
    )
    p.add_argument("--norm", metavar="SPEC", help="probe a bare layer built from SPEC (e.g. 'gelu>ln')")
    p.add_argument("--width", type=int, default=32, help="units of the bare layer (default 32)")
    p.add_argument("--samples", type=int, default=256, help="test inputs a run is probed on (default 256)")
    p.add_argument("--json", metavar="PATH", help="write the result here instead of the run folder")
    p.set_defaults(func=run_probe)

    c = sub.add_parser(
        "capacity",
        help="random-label memorization accuracy vs width and depth (LN-only, ReLU, act>LN nets)",
        description="Train [Linear → norm] × depth → Linear nets on Gaussian inputs with random labels and "
        "report the training accuracy each reaches (memorization capacity).",
    )
    c.add_argument(
        "--norm",
        action="append",
        metavar="SPEC",
        help="block nonlinearity/norm; repeat (default: ln, relu, relu>ln, none)",
    )
    c.add_argument("--widths", default="8,32", help="comma-separated widths (default 8,32)")
    c.add_argument("--depths", default="1,2", help="comma-separated depths (default 1,2)")
    c.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    c.add_argument("--samples", type=int, default=256, help="training points (default 256)")
    c.add_argument("--in-dim", type=int, default=16, help="input dimension (default 16)")
    c.add_argument("--classes", type=int, default=10, help="number of random classes (default 10)")
    c.add_argument("--steps", type=int, default=500, help="full-batch Adam steps (default 500)")
    c.add_argument("--lr", type=float, default=1e-2, help="learning rate (default 0.01)")
    c.add_argument("--json", metavar="PATH", help="also write the records to this JSON file")
    c.set_defaults(func=run_capacity)


# --------------------------------------------------------------------- helpers
def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, then rename it into place (never half-written)."""
    from lateralnorm.atomic import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj, indent=1, allow_nan=False)


def _names(raw: list[str] | None) -> list[str]:
    from lateralnorm.probes import check_probe_names

    names = [n.strip() for item in (raw or ["crosstalk"]) for n in item.split(",") if n.strip()]
    return check_probe_names(names)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--{what} takes comma-separated integers like 8,32; got {text!r}") from None
    if not values or min(values) < 0:
        raise UsageError(f"--{what} takes comma-separated non-negative integers like 8,32; got {text!r}")
    return values


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not isinstance(v, dict | list)}


def _table(title: str, rows: dict[str, dict[str, Any]], first: str = "layer") -> Table:
    table = Table(title=title)
    cols: list[str] = []
    for r in rows.values():
        cols += [k for k in _scalars(r) if k not in cols]
    table.add_column(first, style="bold")
    for col in cols:
        table.add_column(col, justify="right")
    for name, r in rows.items():
        table.add_row(name, *(_fmt(r.get(col)) for col in cols))
    return table


def print_result(console: Console, name: str, result: dict[str, Any]) -> None:
    """A rich table of one probe result (model: one row per layer; bare layer: its curves or statistics)."""
    if "layers" in result:
        console.print(_table(f"probe {name}", result["layers"]))
        if result.get("model"):
            console.print(_table(f"probe {name}: model logits", {"model": result["model"]}, "on"))
        rest = _scalars(result)
        if rest:
            console.print(_table(f"probe {name}: whole model", {"model": rest}, "on"))
        return
    if name == "crosstalk":
        table = Table(title=f"crosstalk of bare '{result['norm']}' (N={result['width']}, j={result['j']})")
        for col in ("t", "D(t)", "C(t)", "|∂z_P/∂y_j|"):
            table.add_column(col, justify="right")
        for t, d, c, j in zip(result["t"], result["D"], result["C"], result["J"]):
            table.add_row(_fmt(t), _fmt(d), _fmt(c), _fmt(j))
        console.print(table)
        return
    rows = {k: v for k, v in result.items() if isinstance(v, dict)}  # sparsity: input and output
    if not rows:
        rows = {"output": {k: v for k, v in _scalars(result).items() if k not in ("norm", "width")}}
    console.print(_table(f"{name} of bare '{result['norm']}' (N={result['width']})", rows, "on"))


# --------------------------------------------------------------------- commands
def run_probe(args: argparse.Namespace) -> int:
    from lateralnorm.probes import probe_bare, run_probes

    names = _names(args.probe)
    if bool(args.run_dir) == bool(args.norm):
        raise UsageError(
            "give either RUN_DIR (a trained run) or --norm SPEC (a bare layer), not both or neither"
        )
    if args.samples < 1:
        raise UsageError(f"--samples must be at least 1; got {args.samples}")
    console = Console(width=160)
    if args.norm:
        results = {n: probe_bare(n, args.norm, args.width) for n in names}
    else:
        if not Path(args.run_dir).is_dir():
            raise UsageError(f"run folder {args.run_dir!r} does not exist; pass a folder under runs/")
        results = run_probes(names, args.run_dir, samples=args.samples)
    for n, r in results.items():
        print_result(console, n, r)
    if args.json:
        out = Path(args.json)
        write_json_atomic(out, results[names[0]] if len(names) == 1 else results)
        console.print(f"wrote {out}")
    elif args.run_dir:
        for n, r in results.items():
            out = Path(args.run_dir) / f"probe-{n}.json"
            write_json_atomic(out, r)
            console.print(f"wrote {out}")
    return 0


def run_capacity(args: argparse.Namespace) -> int:
    from lateralnorm.probes import capacity

    specs = args.norm or ["ln", "relu", "relu>ln", "none"]
    records = capacity(
        specs,
        _ints(args.widths, "widths"),
        _ints(args.depths, "depths"),
        seeds=_ints(args.seeds, "seeds"),
        samples=args.samples,
        in_dim=args.in_dim,
        classes=args.classes,
        steps=args.steps,
        lr=args.lr,
    )
    table = Table(
        title=f"random-label memorization: {args.samples} points, {args.classes} classes, {args.steps} steps"
    )
    for col in ("norm", "width", "depth", "seed", "params", "train_acc", "chance"):
        table.add_column(col, justify="right")
    for r in records:
        table.add_row(
            *(_fmt(r[c]) for c in ("norm", "width", "depth", "seed", "params", "train_acc", "chance"))
        )
    Console(width=160).print(table)
    if args.json:
        write_json_atomic(Path(args.json), records)
    return 0
