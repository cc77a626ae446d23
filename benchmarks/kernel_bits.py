"""Do two builds of the compiled CPU kernel compute the same bits? A kernel change that claims "the same bits"
(a loop restructured, sums moved into another loop, a vectorized path for some CPUs) is checked here against
the build before it, on the layer's output and every gradient, over a grid of `dn` forms, widths, batch rows
and dtypes, with NaN, ±inf, −0 and a subnormal in the input, and on the same input without them (a parameter's
gradient sums every row, and the NaN row's share would make it NaN in both builds).

    python benchmarks/kernel_bits.py OLD.so

OLD.so: a built kernel (see `benchmarks/kernel_ab.py` for building an older tree's). The new build is this
tree's own. The widths cover rows shorter than one 16-lane group, rows that are whole groups, and rows that
leave a tail of 4, 7 or 8 to the plain loops. Prints one line per differing case and a total; exit status 1
when any case differs (NaN payloads are not compared: a NaN is equal to a NaN).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lateralnorm import create_norm
from lateralnorm.norms import cpu_kernel

sys.path.insert(0, str(Path(__file__).parent))
from kernel_ab import load  # noqa: E402  (a built kernel loaded beside this tree's, under its own name)

SPECS = [
    "dn:learn_alpha=true,alpha=1.5",
    "dn:learn_alpha=true,alpha=1.5,kappa=self",
    "dn:learn_alpha=true,alpha=2.5,center=true",
    "dn:learn_alpha=true,alpha=1.5,fn=signed",
    "dn:learn_alpha=true,alpha=1.5,kappa=band:2",
    "dn:learn_alpha=true,alpha=1.5,kappa=full",
    "dn:learn_alpha=true,alpha=1.5,kappa=lowrank:4",
    "dn:learn_alpha=true,alpha=1,kappa=lowrank:4",
    "dn:learn_alpha=true,alpha=1.3,kappa=full,center=true",
    "dn:alpha=1.5",
    "dn:alpha=1.5,kappa=self",
    "dn:alpha=1.5,kappa=band:2",
    "dn:alpha=1.3,center=true",
    "dn:alpha=1.5,r=0.5",
    "dn:alpha=1.5,kappa=gaussian",
    "dn:kappa=full",
    "gdn",
    "dn",
    "dn:center=true",
    "dn:kappa=uniform,beta=1,kappa_init=0.1",
]
WIDTHS = (7, 16, 23, 100, 128, 519, 520)


def output_names(layer: torch.nn.Module) -> list[str]:
    """The names of `outputs`' tensors, in its order (the parameters that get a gradient)."""
    return ["output", "input gradient"] + [
        f"{k} gradient" for k, p in layer.named_parameters() if p.requires_grad
    ]


def outputs(layer: torch.nn.Module, x0: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    x = x0.clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    out = layer(x)
    out.backward(g)
    return [out.detach(), x.grad] + [p.grad for p in layer.parameters() if p.grad is not None]


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.reshape(-1), b.reshape(-1)
    keep = ~(torch.isnan(a) & torch.isnan(b))
    return torch.equal(a[keep].contiguous().view(torch.uint8), b[keep].contiguous().view(torch.uint8))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    args = ap.parse_args(argv)
    old = load(args.old, "kernel_bits")  # before this tree's kernel, which may have to be built first
    new = cpu_kernel.extension()
    if new is None:
        sys.exit(
            "kernel_bits: this tree's kernel is not available (LATERALNORM_CPU_KERNEL=torch, or no compiler)"
        )
    builds = {"old": old, "new": new}
    if Path(builds["old"].__file__).name == Path(new.__file__).name:
        sys.exit("kernel_bits: OLD.so is this tree's own build; pass an older one")
    cases = differing = 0
    for spec in SPECS:
        for n in WIDTHS:
            for dtype in (torch.float32, torch.float64):
                torch.manual_seed(n)
                layer = create_norm(spec, n, dtype=dtype)
                with torch.no_grad():  # off the initial values, which are often symmetric
                    for p in layer.parameters():
                        p.add_(0.05 * torch.randn_like(p))
                clean = torch.randn(37, n, dtype=dtype) * 3
                x0 = clean.clone()
                special = torch.tensor([float("nan"), float("inf"), -0.0, 1e-42, -float("inf")], dtype=dtype)
                x0[0, : min(5, n)] = special[: min(5, n)]
                g = torch.randn(37, n, dtype=dtype)
                got = {}
                for name, ext in builds.items():
                    cpu_kernel._state["ext"] = ext  # the layers call the build set here
                    try:  # the clean input too: a parameter's gradient sums all rows, and row 0's NaN hides it
                        got[name] = outputs(layer, x0, g) + outputs(layer, clean, g)
                    except (TypeError, AttributeError) as e:  # an older build takes other arguments
                        first = str(e).splitlines()[0]
                        sys.exit(
                            f"kernel_bits: the {name} build does not take this tree's calls ({first}); "
                            "compare builds of neighbouring commits"
                        )
                cases += 1
                if len(got["old"]) != len(got["new"]) or not all(map(same_bits, got["old"], got["new"])):
                    differing += 1
                    names = output_names(layer) * 2
                    which = sorted(
                        {k for k, a, b in zip(names, got["old"], got["new"]) if not same_bits(a, b)}
                    )
                    print(
                        f"differs: {spec} at width {n}, {dtype}: {', '.join(which) or 'the number of outputs'}"
                    )
    print(f"{cases} cases ({len(SPECS)} forms × {len(WIDTHS)} widths × 2 dtypes): {differing} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
