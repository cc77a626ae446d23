"""A/B of stop 48's low-rank layer node stepping its rows a block at a time (measured, not kept).

    git apply benchmarks/not_kept/stop48_lowrank_row_blocks.patch    # on 0a19d8e; then rebuild the kernel
    python benchmarks/not_kept/stop48_lowrank_row_blocks_ab.py 1024 512 0,64,128,256 \
        "dn:kappa=lowrank:16,learn_alpha=true,alpha=1;dn:kappa=lowrank:16"

LATERALNORM_LOWRANK_BLOCK_ROWS (the patch's switch; 0 = one pass over all rows, the kept route) takes turns with
the other block sizes in each of 9 rounds, beside the layer's two thin matmuls (norms.py's reference); best round
per setting, thread CPU time, one thread.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lateralnorm import create_norm  # noqa: E402
from lateralnorm.allocator import keep_freed_memory  # noqa: E402
from norms import LowRankMatmuls, step  # noqa: E402


def main() -> None:
    keep_freed_memory()
    torch.set_num_threads(1)
    m_rows, n = int(sys.argv[1]), int(sys.argv[2])
    blocks = [int(b) for b in sys.argv[3].split(",")]
    specs = sys.argv[4].split(";")
    x = torch.randn(m_rows, n, requires_grad=True)
    ref = LowRankMatmuls(n)
    mods = {s: create_norm(s, n) for s in specs}

    def timed(m: torch.nn.Module, iters: int = 10) -> float:
        g = torch.randn_like(m(x))
        step(m, x, g)
        t0 = time.thread_time()
        for _ in range(iters):
            step(m, x, g)
        return (time.thread_time() - t0) / iters * 1e3

    res: dict[object, list[float]] = {}
    for _ in range(9):
        res.setdefault("ref", []).append(timed(ref))
        for s, m in mods.items():
            for b in blocks:
                os.environ["LATERALNORM_LOWRANK_BLOCK_ROWS"] = str(b)
                res.setdefault((s, b), []).append(timed(m))
    base = min(res.pop("ref"))
    print(f"low-rank matmuls (the reference) {base:.3f} ms")
    for (s, b), v in res.items():
        one_pass = min(res[(s, 0)]) if (s, 0) in res else float("nan")
        print(
            f"{s:50s} block {b:5d}: {min(v):.3f} ms  {min(v) / base:.2f}x the matmuls  {min(v) / one_pass:.3f}x one pass"
        )


if __name__ == "__main__":
    main()
