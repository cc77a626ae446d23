"""Where a learned α's step goes at (B, N): the layer's step against the compiled kernel's own calls on the same
inputs, as ratios to nn.LayerNorm measured in the same process (issue 13, target 3's O(N) learned-α row).

    python benchmarks/learned_alpha_split.py [--spec SPEC] [--size 1024 512] [--rounds 40]

Rows, each forward+backward, best thread time over rounds taken in turn (1 thread, the lab's allocator):
- layer: the `dn` layer as a user steps it (its C++ autograd node, every parameter's gradient);
- node, input only: the same node with no parameter asking for a gradient and α fixed at its value (no kept
  ln a, no column sums, no α terms): what the parameters' and α's gradients add;
- kernel: the extension's raw `forward` and `backward` with every gradient asked (no autograd, no
  reparametrization): what the layer adds around the kernel;
- kernel, input only (α fixed): the raw calls as the node above makes them (what autograd adds around them).
Needs the compiled CPU kernel (it says so and exits 0 where it is not built).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from lateralnorm import create_norm
from lateralnorm.allocator import keep_freed_memory
from lateralnorm.errors import UsageError
from lateralnorm.norms import cpu_kernel


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="dn:learn_alpha=true,alpha=1.5", help="a dn spec with learn_alpha=true")
    ap.add_argument("--size", type=int, nargs=2, default=(1024, 512), metavar=("B", "N"))
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(1)
    ext = cpu_kernel.extension()
    if ext is None:
        print("learned_alpha_split: the compiled CPU kernel is not available here; nothing to measure")
        return 0
    b, n = args.size
    try:
        layer = create_norm(args.spec, n)
    except UsageError as e:
        sys.exit(f"learned_alpha_split: {e}")
    if not getattr(layer, "_fused_alpha", False):
        sys.exit(f"learned_alpha_split: {args.spec!r} is not a learned-α O(N) dn spec (add learn_alpha=true)")
    torch.manual_seed(0)
    x = torch.randn(b, n, requires_grad=True)
    g = torch.randn(b, n)
    ln = nn.LayerNorm(n)
    cfg = layer._cfg
    kind, center, rect, alpha, p, r, before, after = cfg.kernel_args()
    params = [torch.rand(n) + 0.5, torch.rand(n) + 0.5, torch.randn(n), torch.randn(n)]  # β, c, γ, b values

    def step_module(m: nn.Module) -> None:
        m(x).backward(g)
        x.grad = None
        for q in m.parameters():
            q.grad = None

    def step_node() -> None:
        beta, c, gamma, bias = params
        out = ext.dn_rows_node(
            x, beta, c, gamma, bias, None, -1.0, -1.0, 0.0, kind, center, rect, alpha, p, r, before, after, True, 0.0
        )  # fmt: skip
        out.backward(g)
        x.grad = None

    def step_kernel(every_grad: bool) -> None:
        y = x.detach()
        beta, c, gamma, bias = params
        cfg_args = (kind, center, rect, alpha, p, r, before, after)
        out, stats, w = ext.forward(y, beta, c, gamma, bias, *cfg_args, True, every_grad)
        need = (True,) * 6 if every_grad else (True,) + (False,) * 5
        ext.backward(g, y, stats, w, beta, c, gamma, *cfg_args, *need, r)

    cases = {
        "nn.LayerNorm": lambda: step_module(ln),
        "layer": lambda: step_module(layer),
        "node, input only (α fixed)": step_node,
        "kernel": lambda: step_kernel(True),
        "kernel, input only (α fixed)": lambda: step_kernel(False),
    }
    best = dict.fromkeys(cases, float("inf"))
    for f in cases.values():
        f()  # warm up
    for _ in range(args.rounds):
        for k, f in cases.items():
            t0 = time.thread_time()
            f()
            best[k] = min(best[k], time.thread_time() - t0)
    ref = best["nn.LayerNorm"]
    print(f"# {args.spec} at ({b}, {n}), float32, 1 thread, best of {args.rounds} rounds (thread CPU time)")
    print("| step | ms | × nn.LayerNorm |")
    print("|---|---|---|")
    for k, t in best.items():
        print(f"| {k} | {t * 1e3:.3f} | {t / ref:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
