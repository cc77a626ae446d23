"""What a learned α adds to a rank-16 low-rank κ's step (issue 13's `dn:kappa=lowrank:16,learn_alpha=true,alpha=1`
row, ≤ 1.5× its two matmuls): the matmuls alone, the layer with α = 1 fixed, learned, and learned with α's
gradient switched off (`alpha_raw.requires_grad_(False)`: the same route without α's log pass), forward +
backward at (1024, 512) (or --size M N: at a few rows, a call's fixed cost), one process, layers interleaved, best
of 10 rounds, one thread, thread CPU time, the lab's allocator setting.

    python benchmarks/lowrank_alpha_grad.py [--size 4 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from lateralnorm.allocator import keep_freed_memory
from lateralnorm.norms import create_norm

sys.path.insert(0, str(Path(__file__).parent))
from norms import LowRankMatmuls  # noqa: E402  (the benchmark's reference for this row)

SPEC = "dn:kappa=lowrank:16,learn_alpha=true,alpha=1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=(1024, 512), metavar=("M", "N"))
    rows, n = ap.parse_args().size
    torch.set_num_threads(1)
    keep_freed_memory()
    torch.manual_seed(0)
    x = torch.randn(rows, n, requires_grad=True)
    g = torch.randn(rows, n)
    layers = {
        "two matmuls (reference)": LowRankMatmuls(n),
        "alpha = 1 fixed": create_norm("dn:kappa=lowrank:16,alpha=1", n),
        "alpha learned": create_norm(SPEC, n),
        "alpha learned, no alpha grad": create_norm(SPEC, n),
    }
    layers["alpha learned, no alpha grad"].alpha_raw.requires_grad_(False)

    def run(m: torch.nn.Module, n: int) -> float:
        t0 = time.thread_time()
        for _ in range(n):
            m(x).backward(g)
        return (time.thread_time() - t0) / n

    steps = max(20, 20 * 1024 // max(rows, 1))  # a round of at least ~20 steps' worth at (1024, N)
    for m in layers.values():
        run(m, 3)
    best = dict.fromkeys(layers, float("inf"))
    for _ in range(10):
        for k, m in layers.items():
            best[k] = min(best[k], run(m, min(steps, 400)))
    ref = best["two matmuls (reference)"]
    for k, t in best.items():
        print(f"{k:30s} {t * 1e3:7.3f} ms  {t / ref:5.2f}x")
    print(f"# ({rows}, {n}), best of 10 rounds")


if __name__ == "__main__":
    main()
