"""Matrix κ (low-rank, full, GDN): the compiled element kernels around the pool's matmuls against the composite
formula (`fused=false`) of the same layer, across sizes — where does the kernel path pay?

    python benchmarks/matrix_kappa_sizes.py [--reps 15]

Forward+backward, 1 intra-op thread, per-thread CPU time, best of `reps` interleaved rounds of 5 steps; prints
the time ratio kernel / formula per (rows × units) size (below 1: the kernel path is faster).
"""

from __future__ import annotations

import argparse
import time

import torch

from lateralnorm import create_norm

SPECS = ["dn:kappa=lowrank:8", "dn:kappa=full", "gdn"]
SIZES = [(128, 32), (128, 100), (256, 100), (512, 100), (1024, 100), (256, 256), (2048, 32), (1024, 512)]


def _unfused(spec: str) -> str:
    return spec + (",fused=false" if ":" in spec else ":fused=false")


def best_times(spec: str, rows: int, units: int, reps: int) -> tuple[float, float]:
    kernel, formula = create_norm(spec, units), create_norm(_unfused(spec), units)
    formula.load_state_dict(kernel.state_dict())
    x = torch.randn(rows, units, requires_grad=True)
    g = torch.randn(rows, units)
    best = [float("inf"), float("inf")]
    for _ in range(reps):
        for i, m in enumerate((kernel, formula)):
            t0 = time.thread_time()
            for _ in range(5):
                m(x).backward(g)
            best[i] = min(best[i], (time.thread_time() - t0) / 5)
    return best[0], best[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| spec | " + " | ".join(f"{r}×{u}" for r, u in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for spec in SPECS:
        cells = []
        for rows, units in SIZES:
            k, f = best_times(spec, rows, units, args.reps)
            cells.append(f"{k / f:.2f}")
        print(f"| {spec}, kernel / formula | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
