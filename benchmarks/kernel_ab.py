"""A/B two builds of the compiled CPU kernel in one process: forward+backward time of `dn` forms with each
build, alternating round by round, as ratios to nn.LayerNorm measured in the same process.

    python benchmarks/kernel_ab.py OLD.so [NEW.so] [--spec SPEC ...] [--rounds 15] [--size 1024 512]

OLD.so / NEW.so: built kernels (NEW defaults to this tree's own). Two processes on a shared VM differ by more
than a kernel change is worth (ratios moved by 10 % between runs of one tree); in one process, with the builds
taking turns, the noise is common to both. Build an older tree's kernel with a worktree:

    git worktree add /tmp/wt_old <commit>
    PYTHONPATH=/tmp/wt_old/src python -c \
        "from lateralnorm.norms import cpu_kernel; print(cpu_kernel.extension().__file__)"

Each build's file name carries its own source hash, so the two load side by side. Prints, per spec, each
build's best time over LayerNorm's best, and NEW/OLD two ways: of the best times, and the median over rounds
of each round's ratio (the builds ran back to back there; below 1: NEW is faster). Thread CPU time, 1 thread.
With --raw, each build's kernel calls (`forward`, `backward`) are timed apart instead of the layer's step
(O(N) forms): where in the step a change went.
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


def raw_split(builds: dict, specs: list[str], b: int, n: int, rounds: int) -> int:
    """Each build's `forward` and `backward` called directly (no autograd node, no Python layer), apart, with the
    builds taking turns: where in the step a change went. Random β, c, γ, b per unit; every gradient asked for
    (α's only for a learned α)."""
    print(
        f"# kernel A/B of the raw calls at ({b}, {n}), {rounds} rounds of 5 calls; new/old best, paired median"
    )
    print("| spec | forward | backward |\n|---|---|---|")
    for spec in specs:
        layer = create_norm(spec, n)
        cfg = getattr(layer, "_cfg", None)
        if cfg is None or cfg.kind not in ("uniform", "self", "band"):
            print(f"| {spec} | (not an O(N) row kernel form) | |")
            continue
        args = cfg.kernel_args()
        learn = "learn_alpha=true" in spec
        params = [torch.rand(n) + 0.5, torch.rand(n) * 0.01, torch.randn(n), torch.randn(n)]
        y, g = torch.randn(b, n), torch.randn(b, n)
        t = {k: ([], []) for k in builds}
        for rnd in range(rounds):
            for k in builds if rnd % 2 == 0 else reversed(builds):
                ext = builds[k]
                t0 = time.thread_time()
                for _ in range(5):
                    _, stats, w = ext.forward(y, *params, *args, True, learn)
                t1 = time.thread_time()
                for _ in range(5):
                    ext.backward(
                        g, y, stats, w, *params[:3], *args, True, True, True, True, True, learn, args[5]
                    )
                t2 = time.thread_time()
                t[k][0].append((t1 - t0) / 5)
                t[k][1].append((t2 - t1) / 5)
        cells = []
        for i in (0, 1):
            old, new = t["old"][i], t["new"][i]
            paired = statistics.median(b / a for a, b in zip(old, new))
            cells.append(
                f"{min(new) / min(old):.3f} / {paired:.3f} ({min(old) * 1e3:.3f} → {min(new) * 1e3:.3f} ms)"
            )
        print(f"| {spec} | {cells[0]} | {cells[1]} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new", nargs="?")
    ap.add_argument("--spec", action="append", help="a dn spec (repeatable); default: " + "; ".join(SPECS))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--size", type=int, nargs=2, default=(1024, 512), metavar=("B", "N"))
    ap.add_argument(
        "--raw", action="store_true",
        help="time the kernel's own forward and backward calls apart (O(N) specs), not the layer's step",
    )  # fmt: skip
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
    if args.raw:
        return raw_split(builds, args.spec or SPECS, b, n, args.rounds)
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
