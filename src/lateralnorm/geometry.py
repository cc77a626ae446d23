"""LayerNorm's geometry, built on one identity (Riechers 2024; the "LayerNorm is a nonlinearity" post):

    LN(x) = √N · u_{Nε}(P x) ⊙ γ + β,     u_ε(v) = v / sqrt(‖v‖² + ε),     P = I − 11ᵀ/N

P projects onto the hyperplane ⊥ 1 (the "project" primitive: removes the mean), u_ε maps onto (almost)
the unit sphere — a sigmoid along each line through 0 (the "stretch" and "fold" primitives), √N rescales
to the sphere of radius √N, and γ, β are the final affine map (an ellipsoid when γ is not constant).
"""

from __future__ import annotations

import math

import torch


def project_out_mean(x: torch.Tensor) -> torch.Tensor:
    """P x = x − mean(x)·1 over the last axis: the orthogonal projection onto the hyperplane Σ_i x_i = 0."""
    return x - x.mean(-1, keepdim=True)


def projection_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """P = I − 11ᵀ/N, (N, N)."""
    return torch.eye(n, dtype=dtype) - torch.full((n, n), 1.0 / n, dtype=dtype)


def u_eps(v: torch.Tensor, eps: float) -> torch.Tensor:
    """u_ε(v) = v / sqrt(‖v‖² + ε) over the last axis. In 1-D it is the sigmoid-shaped v/sqrt(v² + ε)."""
    return v * torch.rsqrt(v.square().sum(-1, keepdim=True) + eps)


def ln_decompose(
    x: torch.Tensor,
    gamma: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> dict[str, torch.Tensor]:
    """Each stage of LN(x) = √N·u_{Nε}(P x) ⊙ γ + β, features on the last axis.

    Returns dict(projected=P x, normalized=u_{Nε}(P x), scaled=√N·u, output=scaled⊙γ+β); `output` equals
    torch.nn.functional.layer_norm(x, (N,), γ, β, eps) up to rounding.
    """
    n = x.shape[-1]
    projected = project_out_mean(x)
    normalized = u_eps(projected, n * eps)
    scaled = math.sqrt(n) * normalized
    out = scaled
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    return {"projected": projected, "normalized": normalized, "scaled": scaled, "output": out}
