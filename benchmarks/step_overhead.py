"""A norm's fixed cost per training step: forward and backward of small batches, where the per-call work (Python,
autograd nodes, allocations) outweighs the arithmetic, as ratios to nn.LayerNorm measured in the same process.

    python benchmarks/step_overhead.py [--shapes 4x512,100x100] [--steps 300] [--only "dn;dn:alpha=1.5"]

4 × 512 is nearly all fixed cost; 100 × 100 is the studies' MLP layer (Q3's batches). Each number is the best
thread CPU time of `steps` steps after a warm-up, forward and backward apart (the input's gradient reset to None,
the parameters' gradients accumulating, as `benchmarks/norms.py` does). The lab's allocator setting (freed memory
kept, `lateralnorm.allocator`) and one thread. To compare two trees, run it from each (PYTHONPATH=<tree>/src)
alternately: the ratios to LayerNorm carry across processes, the microseconds less so.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from lateralnorm import create_norm
from lateralnorm.allocator import keep_freed_memory

SPECS = ["dn", "dn:alpha=1.5", "dn:learn_alpha=true,alpha=1.5", "dn:preset=rms", "dn:kappa=band:5"]


def best_times(layer: nn.Module, m: int, n: int, steps: int) -> tuple[float, float]:
    """(forward, backward) best thread CPU seconds over `steps` steps."""
    x, g = torch.randn(m, n, requires_grad=True), torch.randn(m, n)
    for _ in range(50):
        layer(x).backward(g)
        x.grad = None
    fwd = bwd = float("inf")
    for _ in range(steps):
        t0 = time.thread_time()
        y = layer(x)
        t1 = time.thread_time()
        y.backward(g)
        t2 = time.thread_time()
        x.grad = None
        fwd, bwd = min(fwd, t1 - t0), min(bwd, t2 - t1)
    return fwd, bwd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4x512,100x100", help="comma-separated MxN batches")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--only", default=None, help="';'-separated norm specs (default: five dn forms)")
    args = ap.parse_args(argv)
    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")]
        assert all(len(s) == 2 and min(s) > 0 for s in shapes)
    except (ValueError, AssertionError):
        ap.error(f"--shapes {args.shapes!r}: expected comma-separated MxN, e.g. 4x512,100x100")
    specs = args.only.split(";") if args.only else SPECS
    torch.set_num_threads(1)
    keep_freed_memory()
    print("| shape | norm | fwd µs | bwd µs | step µs | × nn.LayerNorm |")
    print("|---|---|---|---|---|---|")
    for m, n in shapes:
        ref = sum(best_times(nn.LayerNorm(n), m, n, args.steps))
        print(f"| {m}×{n} | nn.LayerNorm | | | {ref * 1e6:.1f} | 1.00 |")
        for spec in specs:
            f, b = best_times(create_norm(spec, n), m, n, args.steps)
            print(
                f"| {m}×{n} | {spec} | {f * 1e6:.1f} | {b * 1e6:.1f} | {(f + b) * 1e6:.1f} | {(f + b) / ref:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
