"""Folds: how often a layer's outputs turn back along straight lines in input space, and linear regions.

Along a line x(s) = a + s·(b − a) each output unit z_i(s) is a curve; a fold is a change of direction
(`geometry.direction_changes`). LayerNorm maps a line onto an arc of at most half a great circle, so each
unit folds at most once per line (exactly once for a line long enough); a rectifier before the norm adds a
kink wherever a unit switches on, and divisive norms fold where a unit's drive starts to dominate. For a
trained model the lines join pairs of real inputs (extended by half their length on each side), every norm
layer's outputs are recorded along them, and the predicted class changes are counted too.

For small nets with 2-D inputs `linear_regions_2d` counts the regions of constant on/off pattern of the
piecewise-linear units (ReLU, abs) on a grid (`geometry.count_regions_2d`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lateralnorm.geometry import count_regions_2d, decision_changes, direction_changes, grid_2d, line_points
from lateralnorm.probes.layers import capture_norm_layers, norm_module_names

LINES = 16
STEPS = 512


def _summary(counts: torch.Tensor) -> dict[str, float]:
    """counts (lines, units) of direction changes → mean per unit, share of units that fold, max."""
    c = counts.to(torch.float64)
    return {
        "folds_per_unit": float(c.mean()),
        "folding_share": float((c > 0).to(torch.float64).mean()),
        "max": int(counts.max()) if counts.numel() else 0,
    }


def folds_bare(
    layer: nn.Module, width: int, lines: int = LINES, steps: int = STEPS, reach: float = 8.0, seed: int = 0
) -> dict[str, Any]:
    """Folds of a bare layer along `lines` random lines a + s·(b − a), a, b ~ N(0, I), s ∈ [−reach, reach]."""
    gen = torch.Generator().manual_seed(seed)
    f = copy.deepcopy(layer).double().eval()
    counts = []
    with torch.no_grad():
        for _ in range(lines):
            a, b = torch.randn(2, width, generator=gen, dtype=torch.float64)
            z = f(line_points(a, b, steps, (-reach, reach)))  # (steps, N)
            counts.append(direction_changes(z))
    return {"lines": lines, "steps": steps, "reach": reach, **_summary(torch.stack(counts))}


def folds_model(
    model: nn.Module, inputs: torch.Tensor, lines: int = LINES, steps: int = STEPS, seed: int = 0
) -> dict[str, Any]:
    """Folds of every norm layer's outputs, and predicted-class changes, along lines between real inputs."""
    gen = torch.Generator().manual_seed(seed)
    f = copy.deepcopy(model).double().eval()
    names = norm_module_names(f)
    per_layer: dict[str, list[torch.Tensor]] = {}
    decisions = []
    for _ in range(lines):
        i, k = torch.randperm(inputs.shape[0], generator=gen)[:2].tolist()
        path = line_points(inputs[i].double(), inputs[k].double(), steps, (-0.5, 1.5))  # (steps, ...)
        for layer in capture_norm_layers(f, path, names):
            z = layer.outputs.reshape(steps, -1)  # every unit at every position
            per_layer.setdefault(layer.name, []).append(direction_changes(z))
        with torch.no_grad():
            decisions.append(decision_changes(f(path)))
    out: dict[str, Any] = {"lines": lines, "steps": steps, "layers": {}}
    for name, counts in per_layer.items():
        out["layers"][name] = _summary(torch.stack(counts))
    out["decision_changes"] = float(sum(decisions) / len(decisions))
    if inputs[0].numel() == 2:
        out["linear_regions"] = linear_regions_2d(model, inputs.reshape(-1, 2))
    return out


def _is_piecewise_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.ReLU | nn.LeakyReLU | nn.PReLU) or getattr(m, "name", None) in ("relu", "abs")


def linear_regions_2d(
    model: nn.Module, points: torch.Tensor | None = None, resolution: int = 128, margin: float = 0.25
) -> dict[str, Any]:
    """Regions of constant ReLU/abs on-off pattern of a model with 2-D inputs, on a grid over the box of
    `points` (widened by `margin` of its size; [−1, 1]² without points). A net with no such unit has one."""
    if points is None:
        lo, hi = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])
    else:
        lo, hi = points.amin(0).double(), points.amax(0).double()
        pad = margin * (hi - lo)
        lo, hi = lo - pad, hi + pad
    grid = grid_2d(tuple(lo.tolist()), tuple(hi.tolist()), resolution)
    f = copy.deepcopy(model).double().eval()
    signs: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, args, _o: signs.append(args[0].reshape(args[0].shape[0], -1) > 0))
        for m in f.modules()
        if _is_piecewise_linear(m)
    ]
    try:
        with torch.no_grad():
            f(grid)
    finally:
        for h in hooks:
            h.remove()
    patterns = torch.cat(signs, 1) if signs else torch.zeros(grid.shape[0], 1, dtype=torch.bool)
    return {
        "resolution": resolution,
        "box": [lo.tolist(), hi.tolist()],
        **count_regions_2d(patterns, resolution),
    }
