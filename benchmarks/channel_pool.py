"""A channels-first `dn` with a matrix κ over the channels (GDN, `dn:kappa=full`): its two CPU routes against the
1×1 convolution it contains, forward + backward, in one process.

    planes  the element work on the input's own (B·C, P) planes, the pool one batched GEMM (the default)
    rows    the planes transposed to rows (B·P, C), torch's GEMM, the gradients transposed back
            (LATERALNORM_CHANNEL_POOL=rows: the bits of the runs stored before 2026-12-07 stop 43)

Issue 13's target: ≤ 1.5× nn.Conv2d(C, C, 1) at (64, 64, 28, 28). The routes alternate round by round (the
switch is read at each call), each layer's best round is kept (noise on these VMs only adds time), one thread,
thread CPU time, the lab's allocator setting (`lateralnorm.allocator.keep_freed_memory`).

    python benchmarks/channel_pool.py                  # (64, 64, 28, 28), 8 rounds
    python benchmarks/channel_pool.py --shape 128,32,40  # Q2's 1-D CNN at batch 128 (a Conv1d reference)
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from lateralnorm.allocator import keep_freed_memory
from lateralnorm.norms import create_norm

SPECS = ("gdn", "dn:kappa=full")
MODES = ("planes", "rows")


def step_time(m: nn.Module, x: torch.Tensor, g: torch.Tensor, mode: str, iters: int) -> float:
    os.environ["LATERALNORM_CHANNEL_POOL"] = mode
    t0 = time.thread_time()
    for _ in range(iters):
        m(x).backward(g)
    return (time.thread_time() - t0) / iters


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="64,64,28,28", help="B,C,H,W or B,C,L")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    torch.set_num_threads(1)
    keep_freed_memory()
    torch.manual_seed(0)
    c = shape[1]
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    conv = (nn.Conv2d if len(shape) == 4 else nn.Conv1d)(c, c, 1, bias=False)
    layers = {"conv": conv, **{s: create_norm(s, c, layout="channels_first") for s in SPECS}}
    cases = [("conv", "planes")] + [(s, mode) for s in SPECS for mode in MODES]
    iters = max(1, int(3e7 // x.numel()))
    for name, mode in cases:  # warm up
        step_time(layers[name], x, g, mode, 1)
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for name, mode in cases:
            best[(name, mode)] = min(best[(name, mode)], step_time(layers[name], x, g, mode, iters))
    os.environ.pop("LATERALNORM_CHANNEL_POOL", None)
    ref = best[("conv", "planes")]
    print(
        f"# channels-first matrix κ, shape {shape}, 1 thread, best of {args.rounds} rounds of {iters} steps"
    )
    print(f"{'layer':16s} {'route':7s} {'ms/step':>9s} {'x conv':>7s}")
    print(f"{conv.__class__.__name__ + '(C,C,1)':16s} {'':7s} {ref * 1e3:9.3f} {1.0:7.2f}")
    for s in SPECS:
        for mode in MODES:
            t = best[(s, mode)]
            print(f"{s:16s} {mode:7s} {t * 1e3:9.3f} {t / ref:7.2f}")
        print(f"{s:16s} planes/rows {best[(s, 'planes')] / best[(s, 'rows')]:.3f}")


if __name__ == "__main__":
    main()
