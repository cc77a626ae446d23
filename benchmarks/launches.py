"""Device work per training step, counted (not timed): how many kernels one forward+backward of a norm launches
on CUDA, for the routes a GPU runs, measured on the CPU.

    python benchmarks/launches.py [--markdown] [--host] [--bf16]

At the sizes of issue 13's target 5 that are small for a GPU ((1024, 512): nn.LayerNorm's step is mostly
per-call overhead on an H200), a step's time follows the number of kernels it launches. This counts them
without a GPU: the PyTorch ops that do device work (allocations, views and metadata excluded), caught by a
TorchDispatchMode, plus the Triton kernels, which are replaced by counters (so nothing is computed; the host
code around them runs as on CUDA). Counted on a step with no gradients stored yet (`zero_grad(set_to_none=True)`,
the trainer's setting), so no accumulation adds appear. Routes: `triton` (LATERALNORM_CUDA_KERNEL=triton) and
`torch` (the CUDA default today: the reference formula in PyTorch ops; the CPU kernel is switched off, as it is
on CUDA). References: nn.LayerNorm for the O(N) forms, nn.Linear(N, N) for the matrix forms. Ratios are of
launch counts, not of times: `benchmarks/gpu_check.py --sections at` times them on a GPU.

--host also times the host side of a step at (8, 16) on this CPU, kernels stubbed (Triton's own launcher is
not in it), as a ratio to the reference's step measured in the same process: the Python and autograd work a
GPU step pays before its kernels run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from lateralnorm import create_norm  # noqa: E402

# ops that launch no kernel: allocation, views, metadata
NO_LAUNCH = frozenset(
    {
        *("empty", "empty_like", "empty_strided", "new_empty", "lift_fresh", "promote_types", "result_type"),
        *("select", "slice", "view", "_unsafe_view", "_reshape_alias", "as_strided", "alias", "detach"),
        *("t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "is_same_size"),
    }
)
TRITON_KERNELS = (
    "_fwd",
    "_bwd",
    "_param_grads",
    "_psi_fwd",
    "_psi_bwd",
    "_given_fwd",
    "_given_bwd",
    "_nonneg_fwd",
    "_nonneg_bwd",
)
O_N = ["dn", "dn:kappa=self", "dn:kappa=band:2", "dn:preset=ln", "dn:preset=lrn", "dn:alpha=1.5"]
MATRIX = ["dn:kappa=full", "gdn", "dn:kappa=gaussian", "dn:kappa=lowrank:16"]


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = func.overloadpacket.__name__
        if name not in NO_LAUNCH:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


class _Counted:
    """Stands in for a Triton kernel: `kernel[grid](...)` counts one launch and computes nothing."""

    def __init__(self, name: str, launches: collections.Counter) -> None:
        self.name, self.launches = name, launches

    def __getitem__(self, grid):  # noqa: ANN001, ANN204
        def launch(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
            self.launches[self.name] += 1

        return launch


@contextlib.contextmanager
def on_route(route: str, launches: collections.Counter):  # noqa: ANN201
    """Inside: the route CUDA takes ("triton" or "torch"; not the compiled CPU kernel), with the Triton kernels
    replaced by counters into `launches`."""
    from lateralnorm.norms import triton_kernel as tk

    saved = {k: getattr(tk, k) for k in TRITON_KERNELS if hasattr(tk, k)}
    env = {"LATERALNORM_CUDA_KERNEL": route, "LATERALNORM_CPU_KERNEL": "torch"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for k in saved:
            setattr(tk, k, _Counted(k, launches))
        yield
    finally:
        for k, v in saved.items():
            setattr(tk, k, v)
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _step(module: torch.nn.Module, xx: torch.Tensor, g: torch.Tensor) -> None:
    """One forward+backward on the leaf xx, with no gradients stored before it."""
    for p in module.parameters():
        p.grad = None
    xx.grad = None
    module(xx).backward(g)


def count_step(
    module: torch.nn.Module, x: torch.Tensor, route: str
) -> tuple[collections.Counter, collections.Counter]:
    """(PyTorch ops that launch device work, Triton launches) of one forward+backward of `module` on x, on the
    route given ("triton" or "torch"), with no gradients stored before it."""
    launches: collections.Counter = collections.Counter()
    xx, g = x.detach().clone().requires_grad_(), torch.ones_like(x)
    with on_route(route, launches), _Ops() as mode:
        _step(module, xx, g)
    return mode.ops, launches


def host_time(
    module: torch.nn.Module, x: torch.Tensor, route: str, steps: int = 1000, rounds: int = 7
) -> float:
    """Seconds of host time per forward+backward on the route (Triton kernels stubbed: Triton's own launcher
    is not in it), best of `rounds`."""
    xx, g = x.detach().clone().requires_grad_(), torch.ones_like(x)
    best = float("inf")
    with on_route(route, collections.Counter()):
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(steps):
                _step(module, xx, g)
            best = min(best, (time.perf_counter() - t0) / steps)
    return best


def total(ops: collections.Counter, launches: collections.Counter) -> int:
    return sum(ops.values()) + sum(launches.values())


def main() -> None:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # the Triton route's host code on the CPU
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", action="store_true", help="a markdown table")
    ap.add_argument(
        "--n", type=int, default=512, help="units per row (64 rows; the counts do not depend on size)"
    )
    ap.add_argument(
        "--host", action="store_true", help="also the host time per step at (8, 16), × the reference's"
    )
    ap.add_argument(
        "--bf16", action="store_true", help="modules and inputs in bfloat16 (section t's second type)"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, dtype = args.n, (torch.bfloat16 if args.bf16 else torch.float32)
    x = torch.randn(64, n, dtype=dtype)
    small = torch.randn(8, 16, dtype=dtype)
    refs = {
        "nn.LayerNorm": lambda k: torch.nn.LayerNorm(k, dtype=dtype),
        "nn.Linear": lambda k: torch.nn.Linear(k, k, dtype=dtype),
    }
    counts = {name: total(*count_step(make(n), x, "torch")) for name, make in refs.items()}
    hosts = {name: host_time(make(16), small, "torch") for name, make in refs.items()} if args.host else {}
    rows = [(name, "", counts[name], None, hosts.get(name), None, "") for name in refs]
    for spec in O_N + MATRIX:
        ref = "nn.Linear" if spec in MATRIX else "nn.LayerNorm"
        for route in ("torch", "triton"):
            ops, launches = count_step(create_norm(spec, n, dtype=dtype), x, route)
            k = total(ops, launches)
            detail = ", ".join(f"{a} {b}" for a, b in sorted({**ops, **launches}.items()))
            host = host_time(create_norm(spec, 16, dtype=dtype), small, route) if args.host else None
            rows.append(
                (spec, route, k, k / counts[ref], host, None if host is None else host / hosts[ref], detail)
            )
    us = lambda t: "" if t is None else f"{t * 1e6:.0f}"  # noqa: E731
    times = lambda r: "" if r is None else f"{r:.2f}"  # noqa: E731
    if args.markdown:
        print(
            "| norm | route | launches per step | × reference | host µs per step | × reference | what launches |"
        )
        print("|---|---|---|---|---|---|---|")
        for spec, route, k, ratio, host, hratio, detail in rows:
            print(f"| {spec} | {route} | {k} | {times(ratio)} | {us(host)} | {times(hratio)} | {detail} |")
    else:
        for spec, route, k, ratio, host, hratio, detail in rows:
            print(
                f"{spec:20s} {route:7s} {k:4d} {times(ratio):>6s} {us(host):>6s} {times(hratio):>6s}  {detail}"
            )


if __name__ == "__main__":
    main()
