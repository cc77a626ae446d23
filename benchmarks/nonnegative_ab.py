"""A/B of NonNegative's value on the compiled CPU kernel, in one process: the matrix-κ `dn` layers timed with
the kernel's nonneg_value/nonneg_grad (after) and with the PyTorch ops (before: `loaded_extension` hidden from
NonNegative), alternately, at the benchmark's size (1024×512) and the studies' (100×100). Same bits either way
(tests/test_norms_cpu_kernel.py). Ratios: low-rank κ to its two matmuls, the others to nn.Linear(N, N).
Since stop 47 (2026-12-08) a matrix κ's layer is one C++ node that values β (and a low-rank κ's U and V) itself, by
the kernel's nonneg_value whichever way NonNegative is set: "before" then differs from "after" only in a full κ's
value (NonNegative's own call) — the A/B of the routes is `benchmarks/RESULTS.md`'s stop 47 table.

    python benchmarks/nonnegative_ab.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import norms as bench  # noqa: E402
from lateralnorm.norms import cpu_kernel  # noqa: E402

SPECS = ["dn:kappa=lowrank:16", "dn:kappa=full", "gdn", "dn:kappa=gaussian"]


def main() -> int:
    torch.set_num_threads(1)
    bench.CLOCK = time.thread_time
    kernel = cpu_kernel.loaded_extension
    refs = {"nn.Linear": lambda n: nn.Linear(n, n), "low-rank matmuls": bench.LowRankMatmuls}
    print("| size | code | " + " | ".join(SPECS) + " |\n|---|---|" + "---|" * len(SPECS))
    for shape, iters in (((1024, 512), 10), ((100, 100), 100)):
        for _ in range(2):
            for label, fn in (("before", lambda: None), ("after", kernel)):
                cpu_kernel.loaded_extension = fn
                med, _ = bench.measure(SPECS, "last", shape, lambda n: nn.LayerNorm(n), 5, iters, refs)
                cells = [
                    f"{med[s] * 1e3:.3f} ms ({med[s] / med['low-rank matmuls' if 'lowrank' in s else 'nn.Linear']:.2f}×)"
                    for s in SPECS
                ]
                print(f"| {shape[0]}×{shape[1]} | {label} | " + " | ".join(cells) + " |", flush=True)
    cpu_kernel.loaded_extension = kernel
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
