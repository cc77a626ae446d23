"""What a learned α adds to a rank-16 low-rank κ's step (issue 13's `dn:kappa=lowrank:16,learn_alpha=true,alpha=1`
row, ≤ 1.5× its two matmuls): the matmuls alone, the layer with α = 1 fixed, learned, and learned with α's
gradient switched off (`alpha_raw.requires_grad_(False)`: the same route without α's log pass), forward +
backward at (1024, 512), one process, layers interleaved, best of 10 rounds, one thread, thread CPU time, the lab's
allocator setting.

    python benchmarks/lowrank_alpha_grad.py
"""

from __future__ import annotations

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
    torch.set_num_threads(1)
    keep_freed_memory()
    torch.manual_seed(0)
    x = torch.randn(1024, 512, requires_grad=True)
    g = torch.randn(1024, 512)
    layers = {
        "two matmuls (reference)": LowRankMatmuls(512),
        "alpha = 1 fixed": create_norm("dn:kappa=lowrank:16,alpha=1", 512),
        "alpha learned": create_norm(SPEC, 512),
        "alpha learned, no alpha grad": create_norm(SPEC, 512),
    }
    layers["alpha learned, no alpha grad"].alpha_raw.requires_grad_(False)

    def run(m: torch.nn.Module, n: int) -> float:
        t0 = time.thread_time()
        for _ in range(n):
            m(x).backward(g)
        return (time.thread_time() - t0) / n

    for m in layers.values():
        run(m, 3)
    best = dict.fromkeys(layers, float("inf"))
    for _ in range(10):
        for k, m in layers.items():
            best[k] = min(best[k], run(m, 20))
    ref = best["two matmuls (reference)"]
    for k, t in best.items():
        print(f"{k:30s} {t * 1e3:7.3f} ms  {t / ref:5.2f}x")


if __name__ == "__main__":
    main()
