"""Sparsity and competition of a layer's outputs, one pool per row z ∈ R^N:

    Hoyer sparsity   H(z) = (√N − ‖z‖₁/‖z‖₂) / (√N − 1)       1 for a one-hot vector, 0 for a constant one
    near-zero share  #{i : |z_i| ≤ τ·max_k |z_k|} / N           (τ = 0.01)
    kurtosis         m₄/m₂² − 3 (excess; 0 Gaussian, −1.2 uniform, 3 Laplace, −2 for ±1)
                     population: across the units of one row; lifetime: across rows for one unit
    winner-take-all  max_i |z_i| / Σ_i |z_i|                     1 for one-hot, 1/N for constant

Each statistic is averaged over rows (rows where it is undefined, e.g. an all-zero row, are left out).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lateralnorm.probes.layers import CapturedLayer, dtype_of, pool_view

NEAR_ZERO_TAU = 0.01


def hoyer(z: torch.Tensor) -> torch.Tensor:
    """Hoyer sparsity over the last axis: (..., N) → (...); NaN for an all-zero row."""
    n = z.shape[-1]
    l1 = z.abs().sum(-1)
    l2 = z.norm(dim=-1)
    ratio = torch.where(l2 > 0, l1 / l2, torch.full_like(l1, math.nan))
    return (math.sqrt(n) - ratio) / (math.sqrt(n) - 1)


def excess_kurtosis(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """m₄/m₂² − 3 along `dim` (population moments); NaN where the values are constant."""
    c = x - x.mean(dim, keepdim=True)
    m2 = c.square().mean(dim)
    m4 = c.pow(4).mean(dim)
    return torch.where(m2 > 0, m4 / m2.square().clamp_min(1e-300), torch.full_like(m2, math.nan)) - 3.0


def near_zero_fraction(z: torch.Tensor, tau: float = NEAR_ZERO_TAU) -> torch.Tensor:
    """Share of units with |z_i| ≤ τ·max_k |z_k|, per row: (..., N) → (...)."""
    a = z.abs()
    return (a <= tau * a.amax(-1, keepdim=True)).to(z.dtype).mean(-1)


def wta_index(z: torch.Tensor) -> torch.Tensor:
    """Top unit's share of the row's output mass, max|z_i| / Σ|z_i|: (..., N) → (...); NaN if all zero."""
    a = z.abs()
    s = a.sum(-1)
    return torch.where(s > 0, a.amax(-1) / s.clamp_min(1e-300), torch.full_like(s, math.nan))


def sparsity_stats(z: torch.Tensor) -> dict[str, float]:
    """All statistics of the module docstring for rows z (M, N)."""
    z = z.double()
    return {
        "hoyer": float(hoyer(z).nanmean()),
        "near_zero": float(near_zero_fraction(z).mean()),
        "population_kurtosis": float(excess_kurtosis(z, dim=1).nanmean()),
        "lifetime_kurtosis": float(excess_kurtosis(z, dim=0).nanmean()) if z.shape[0] > 1 else math.nan,
        "wta": float(wta_index(z).nanmean()),
        "rows": int(z.shape[0]),
        "width": int(z.shape[1]),
    }


def sparsity_layer(layer: CapturedLayer) -> dict[str, float]:
    """Sparsity of one captured layer's outputs on real inputs."""
    return sparsity_stats(pool_view(layer.outputs, layer.feature_axis))


def sparsity_bare(layer: nn.Module, width: int, samples: int = 1024, seed: int = 0) -> dict[str, Any]:
    """Sparsity of a bare layer's outputs for Gaussian inputs y ~ N(0, I) (samples, width)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(samples, width, generator=gen, dtype=dtype_of(layer))
    with torch.no_grad():
        z = layer.eval()(y)
    return {"input": sparsity_stats(y), "output": sparsity_stats(z)}


def sparsity(layers: list[CapturedLayer], **_: Any) -> dict[str, Any]:
    """The sparsity probe over every captured norm layer: {"layers": {name: stats}}."""
    return {"layers": {layer.name: sparsity_layer(layer) for layer in layers}}
