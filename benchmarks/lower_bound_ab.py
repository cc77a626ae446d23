"""A/B of a learned α's floor (max(α_raw, α_min) with the lower bound's gradient rule) in one process, three
ways, alternately: the Python autograd.Function `base._LowerBound` before the layer's node (the first form),
the compiled kernel's own `lower_bound_node` before it (the second), and the floor applied inside the layer's
node (`dn_rows_node` takes α's raw parameter: the current form). The learned-α `dn` layers at the benchmark's
size (1024×512), the studies' (100×100) and a small batch (4×512), where the per-step fixed cost shows. Same
bits every way (tests/test_norms_cpu_kernel.py). Ratios to nn.LayerNorm fwd+bwd, thread CPU time.

    python benchmarks/lower_bound_ab.py
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import norms as bench  # noqa: E402
from lateralnorm.norms import base, cpu_kernel, divisive  # noqa: E402

SPECS = ["dn:learn_alpha=true,alpha=1.5", "dn:learn_alpha=true,alpha=2,kappa=band:2,fn=signed"]
IN_NODE = divisive.learned_alpha_rows


def floor_before(floor):  # noqa: ANN001, ANN201
    """The layer's kernel call with α's floor taken first by `floor`, as its own autograd node (the node's own
    floor then −∞: a no-op in value and gradient)."""

    def call(x, beta, kappa, weight, bias, alpha_raw, alpha_bound, cfg, tied):  # noqa: ANN001, ANN202
        return IN_NODE(x, beta, kappa, weight, bias, floor(alpha_raw, alpha_bound), -math.inf, cfg, tied)

    return call


def main() -> int:
    torch.set_num_threads(1)
    bench.CLOCK = time.thread_time
    cpu_kernel.extension()  # load (or build) the kernel: the nodes exist only then
    paths = {
        "Python Function, then the node": floor_before(base._LowerBound.apply),
        "lower_bound_node, then the node": floor_before(base.lower_bound),
        "in the layer's node": IN_NODE,
    }
    print(
        "| size | α's floor | " + " | ".join(f"`{s}`" for s in SPECS) + " |\n|---|---|" + "---|" * len(SPECS)
    )
    for shape, iters in (((1024, 512), 10), ((100, 100), 100), ((4, 512), 200)):
        for _ in range(2):
            for label, fn in paths.items():
                divisive.learned_alpha_rows = fn
                med, _ = bench.measure(SPECS, "last", shape, lambda n: nn.LayerNorm(n), 7, iters)
                cells = [f"{med[s] * 1e3:.3f} ms ({med[s] / med['REF']:.2f}×)" for s in SPECS]
                print(f"| {shape[0]}×{shape[1]} | {label} | " + " | ".join(cells) + " |", flush=True)
    divisive.learned_alpha_rows = IN_NODE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
