"""`lateralnorm norms`: the zoo, each norm's options, and a spec checker."""

from __future__ import annotations

import argparse
import os

from rich.console import Console
from rich.table import Table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("norms", help="list the normalization layers and activations")
    p.add_argument("name", nargs="?", help="show the options of this norm (e.g. dn)")
    p.add_argument("--check", metavar="SPEC", help="build SPEC (e.g. 'gelu>ln') and print the module")
    p.add_argument("--width", type=int, default=8, help="num_features used by --check (default 8)")
    p.add_argument("--layout", default="last", choices=["last", "channels_first"])
    p.add_argument(
        "--build-kernel",
        action="store_true",
        help="build dn's compiled CPU kernel now (exit 1 if it cannot be)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lateralnorm.norms import cpu_kernel, create_norm, list_norms, options_of

    console = Console(width=140)
    if args.build_kernel:  # make setup runs this: build the kernel now and say where it is
        try:
            module = cpu_kernel.build()
        except Exception as exc:  # noqa: BLE001 - any build failure: dn falls back to the PyTorch kernel
            print(
                f"lateralnorm: the CPU kernel could not be built ({exc!s:.300}); dn will use the PyTorch kernel"
            )
            return 1
        print(f"lateralnorm: CPU kernel ready: {module.__file__}")
        return 0
    if args.check:
        console.print(create_norm(args.check, args.width, layout=args.layout))
        return 0
    if args.name:
        opts = options_of(args.name)
        table = Table(title=f"options of '{args.name}'  (spec: {args.name}:key=value,...)")
        for col in ("option", "default", "allowed", "meaning"):
            table.add_column(col)
        for key, o in opts.items():
            table.add_row(key, str(o.default), o.allowed(), o.doc)
        console.print(table)
        return 0
    table = Table(title="lateralnorm norms  (compose with '>': gelu>ln, ln>relu, elu>dn:alpha=2)")
    table.add_column("name", style="bold")
    table.add_column("kind")
    table.add_column("what it computes")
    for kind in ("norm", "activation"):
        for name, desc in list_norms(kind).items():
            table.add_row(name, kind, desc)
    console.print(table)
    console.print(cpu_kernel.status(), highlight=False)
    cuda = os.environ.get("LATERALNORM_CUDA_KERNEL", "torch").strip().lower()
    console.print(
        "dn on CUDA: Triton kernels (LATERALNORM_CUDA_KERNEL=triton)"
        if cuda == "triton"
        else "dn on CUDA: PyTorch kernel (LATERALNORM_CUDA_KERNEL=triton opts in to the Triton kernels)",
        highlight=False,
    )
    return 0
