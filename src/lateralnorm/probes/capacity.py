"""Capacity: how many random labels can a net memorize? (LN-Net, Ni et al. 2024: LayerNorm alone is a
nonlinearity with real capacity.)

The net is x → [Linear(d, w) → norm(spec, w)] × depth → Linear(w, classes), the same size for every spec:
"ln" is an LN-only net (LayerNorm is its only nonlinearity), "relu" a plain ReLU net, "relu>ln" an act>LN
net, "none" a linear model (the floor). Inputs x ~ N(0, I_d) with labels drawn uniformly at random, so
nothing generalizes: the training accuracy after full-batch Adam is pure memorization.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from lateralnorm.errors import UsageError
from lateralnorm.norms import create_norm


def build_net(spec: str, in_dim: int, width: int, depth: int, classes: int) -> nn.Sequential:
    """[Linear → norm] × depth → Linear; the norm blocks are named "norm<k>"."""
    layers: dict[str, nn.Module] = {}
    d = in_dim
    for k in range(depth):
        layers[f"linear{k}"] = nn.Linear(d, width)
        layers[f"norm{k}"] = create_norm(spec, width)
        d = width
    layers["head"] = nn.Linear(d, classes)
    return nn.Sequential(OrderedDict(layers))


def memorize(
    spec: str,
    width: int,
    depth: int,
    samples: int = 256,
    in_dim: int = 16,
    classes: int = 10,
    steps: int = 500,
    lr: float = 1e-2,
    seed: int = 0,
) -> dict[str, Any]:
    """Train one net on random labels (full batch, Adam) and return its final training accuracy."""
    for name, v in (("width", width), ("samples", samples), ("in_dim", in_dim), ("steps", steps)):
        if v < 1:
            raise UsageError(f"capacity: {name} must be at least 1; got {v}")
    if depth < 1:
        raise UsageError(f"capacity: depth must be at least 1 (hidden layers); got {depth}")
    if classes < 2:
        raise UsageError(f"capacity: classes must be at least 2; got {classes}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, in_dim, generator=gen)
    y = torch.randint(classes, (samples,), generator=gen)
    torch.manual_seed(seed)
    net = build_net(spec, in_dim, width, depth, classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss = torch.tensor(math.nan)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y)
        if not torch.isfinite(loss):
            break
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).double().mean())
    return {
        "norm": spec,
        "width": width,
        "depth": depth,
        "samples": samples,
        "classes": classes,
        "params": sum(p.numel() for p in net.parameters()),
        "train_acc": acc,
        "chance": 1.0 / classes,
        "final_loss": float(loss.detach()),
    }


def capacity(
    specs: list[str], widths: list[int], depths: list[int], seeds: list[int] | None = None, **kw: Any
) -> list[dict[str, Any]]:
    """`memorize` for every spec × width × depth × seed; one record each (JSON-able)."""
    return [
        {**memorize(s, w, d, seed=seed, **kw), "seed": seed}
        for s, w, d, seed in itertools.product(specs, widths, depths, seeds or [0])
    ]
