"""A/B two builds of the compiled CPU kernel in one process: forward+backward time of `dn` forms with each
build, alternating round by round, as ratios to nn.LayerNorm measured in the same process.

    python benchmarks/kernel_ab.py OLD.so [NEW.so] [--spec SPEC ...] [--rounds 15] [--size 1024 512]

OLD.so / NEW.so: built kernels (NEW defaults to this tree's own). Two processes on a shared VM differ by more
than a kernel change is worth (ratios moved by 10 % between runs of one tree); in one process, with the builds
taking turns, the noise is common to both. Build an older tree's kernel with a worktree:

    git worktree add /tmp/wt_old <commit>
    PYTHONPATH=/tmp/wt_old/src python -c \
        "from lateralnorm.norms import cpu_kernel; print(cpu_kernel.extension().__file__)"

Each build's file name carries its own source hash, so the two load side by side. Prints, per spec, each build's
best time over LayerNorm's best, and NEW/OLD two ways: of the best times, and the median over rounds of
each round's ratio (the builds ran back to back there; below 1: NEW is faster). Thread CPU time, 1 thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lateralnorm import create_norm
from lateralnorm.allocator import keep_freed_memory
from lateralnorm.norms import cpu_kernel

SPECS = ["dn:learn_alpha=true,alpha=1.5", "dn:learn_alpha=true,alpha=1.5,kappa=self", "dn:alpha=1.5", "dn"]


def load(path: str, prog: str = "kernel_ab"):  # noqa: ANN201
    so = Path(path)
    if not so.is_file() or so.suffix != ".so":
        sys.exit(
            f"{prog}: {path} is not a built kernel (.so); build one as benchmarks/kernel_ab.py's docstring shows"
        )
    spec = importlib.util.spec_from_file_location(so.name.split(".")[0], so)  # the name before any ABI tag
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new", nargs="?")
    ap.add_argument("--spec", action="append", help="a dn spec (repeatable); default: " + "; ".join(SPECS))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--size", type=int, nargs=2, default=(1024, 512), metavar=("B", "N"))
    args = ap.parse_args(argv)
    keep_freed_memory()  # the lab's allocator setting (allocator.py)
    torch.set_num_threads(1)
    builds = {"old": load(args.old), "new": load(args.new) if args.new else cpu_kernel.extension()}
    if builds["new"] is None:
        sys.exit(
            "kernel_ab: this tree's kernel is not available (LATERALNORM_CPU_KERNEL=torch, or no compiler); pass NEW.so"
        )
    cpu_kernel._state["ext"] = builds["old"]  # from here on the layers call the build set here, never a build
    b, n = args.size
    torch.manual_seed(0)
    x, g = torch.randn(b, n, requires_grad=True), torch.randn(b, n)
    ln = nn.LayerNorm(n)
    layers = {s: create_norm(s, n) for s in (args.spec or SPECS)}

    def step_time(m: nn.Module, iters: int = 10) -> float:
        t = time.thread_time()
        for _ in range(iters):
            m(x).backward(g)
        return (time.thread_time() - t) / iters

    step_time(ln, 3)
    for ext in builds.values():  # warm up each build on each layer
        cpu_kernel._state["ext"] = ext
        for m in layers.values():
            step_time(m, 3)
    times: dict[tuple[str, str], list[float]] = {(s, k): [] for s in layers for k in builds}
    ref = []
    for rnd in range(args.rounds):
        ref.append(step_time(ln))
        for s, m in layers.items():
            for k in builds if rnd % 2 == 0 else reversed(builds):
                cpu_kernel._state["ext"] = builds[k]
                times[(s, k)].append(step_time(m))
    base = min(ref)
    print(
        f"# kernel A/B at ({b}, {n}), best of {args.rounds} rounds; nn.LayerNorm {base * 1e3:.3f} ms fwd+bwd"
    )
    print(
        "| spec | old × LN | new × LN | new / old (best) | new / old (median of rounds) |\n|---|---|---|---|---|"
    )
    for s in layers:
        old, new = min(times[(s, "old")]), min(times[(s, "new")])
        paired = statistics.median(b / a for a, b in zip(times[(s, "old")], times[(s, "new")]))
        print(f"| {s} | {old / base:.2f} | {new / base:.2f} | {new / old:.3f} | {paired:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
