"""The low-rank κ's pool in the compiled kernel's own K-thin products against torch's matmuls, in one process.

`dn:kappa=lowrank:K` on the kernel route (issue 13 target 3: <= 1.5x the matmuls it contains) runs its pool
W = (ψ V) Uᵀ either through the kernel's products (`csrc/lowrank_product.cpp`, the default) or through torch's
two linear maps (`LowRankKappa.pool`, the route before). This script times both in alternating rounds, with the
reference (the matmuls alone, `benchmarks/norms.py`'s LowRankMatmuls) and nn.LayerNorm, fwd+bwd, best round of
each; the studies' sizes (Q3b's widths 32 and 256, Q3's 100, rank 8) and the benchmark's (1024 × 512, rank 16).

    python benchmarks/lowrank_products.py [--threads 1] [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lateralnorm import create_norm  # noqa: E402
from lateralnorm.allocator import keep_freed_memory  # noqa: E402
from lateralnorm.norms.kappa import LowRankKappa  # noqa: E402
from norms import LowRankMatmuls  # noqa: E402

SIZES = [
    (100, 32, 8),
    (100, 100, 8),  # Q3's MLP (width 100, batch 100, lowrank:8)
    (100, 256, 8),
    (1024, 256, 8),
    (1024, 512, 16),
    (1024, 512, 32),
    (1024, 512, 48),
    (1024, 512, 64),
]


def step_time(m: nn.Module, x: torch.Tensor, g: torch.Tensor, iters: int) -> float:
    t0 = time.thread_time()
    for _ in range(iters):
        x.grad = None
        m(x).backward(g)
    return (time.thread_time() - t0) / iters


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    kernel_pool = LowRankKappa.kernel_pool
    print(f"# {args.threads} thread(s), best of {args.rounds} alternating rounds, fwd+bwd, float32, ms")
    print("| M × N, rank K | torch's matmuls in the pool | kernel's products | after / before | "
          "matmuls alone | before × matmuls | after × matmuls | nn.LayerNorm |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for m_rows, n, k in SIZES:
        torch.manual_seed(0)
        x = torch.randn(m_rows, n, requires_grad=True)
        g = torch.randn(m_rows, n)
        layer = create_norm(f"dn:kappa=lowrank:{k}", n)
        mods = {"ref": LowRankMatmuls(n, k), "ln": nn.LayerNorm(n)}
        iters = max(5, int(2e6 // (m_rows * n)))
        best = {"before": float("inf"), "after": float("inf"), "ref": float("inf"), "ln": float("inf")}
        for _ in range(args.rounds):
            for mode in ("before", "after"):
                LowRankKappa.kernel_pool = LowRankKappa.pool if mode == "before" else kernel_pool
                try:
                    step_time(layer, x, g, 2)
                    best[mode] = min(best[mode], step_time(layer, x, g, iters))
                finally:
                    LowRankKappa.kernel_pool = kernel_pool
            for name, mod in mods.items():
                step_time(mod, x, g, 2)
                best[name] = min(best[name], step_time(mod, x, g, iters))
        b, a, r, ln = (best[key] * 1e3 for key in ("before", "after", "ref", "ln"))
        print(f"| {m_rows} × {n}, {k} | {b:.3f} | {a:.3f} | {a / b:.2f} | {r:.3f} | {b / r:.2f} | {a / r:.2f} "
              f"| {ln:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
