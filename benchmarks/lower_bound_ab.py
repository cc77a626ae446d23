"""A/B of a learned α's floor (max(α_raw, α_min) with the lower bound's gradient rule) in one process: the
learned-α `dn` layers timed with the compiled kernel's `lower_bound_node` (after) and with the Python
autograd.Function `base._LowerBound` (before), alternately, at the benchmark's size (1024×512) and the studies'
(100×100). Same bits either way (tests/test_norms_cpu_kernel.py). Ratios to nn.LayerNorm fwd+bwd.

    python benchmarks/lower_bound_ab.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import norms as bench  # noqa: E402
from lateralnorm.norms import base, cpu_kernel, divisive  # noqa: E402

SPECS = ["dn:learn_alpha=true,alpha=1.5", "dn:learn_alpha=true,alpha=2,kappa=band:2,fn=signed"]


def main() -> int:
    torch.set_num_threads(1)
    bench.CLOCK = time.thread_time
    cpu_kernel.extension()  # load (or build) the kernel: the node exists only then
    paths = {"before (Python Function)": base._LowerBound.apply, "after (C++ node)": base.lower_bound}
    print("| size | floor | " + " | ".join(f"`{s}`" for s in SPECS) + " |\n|---|---|" + "---|" * len(SPECS))
    for shape, iters in (((1024, 512), 10), ((100, 100), 100)):
        for _ in range(2):
            for label, fn in paths.items():
                divisive.lower_bound = fn
                med, _ = bench.measure(SPECS, "last", shape, lambda n: nn.LayerNorm(n), 7, iters)
                cells = [f"{med[s] * 1e3:.3f} ms ({med[s] / med['REF']:.2f}×)" for s in SPECS]
                print(f"| {shape[0]}×{shape[1]} | {label} | " + " | ".join(cells) + " |", flush=True)
    divisive.lower_bound = base.lower_bound
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
