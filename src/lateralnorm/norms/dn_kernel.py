"""A hand-written forward/backward for divisive normalization with an O(N) pool (κ self, uniform or band)
and fixed exponents. Eager PyTorch runs one kernel per op; writing the backward by hand roughly halves the
number of passes over the activations compared with autograd through the composite formula.

Per row (features last), with a = |t| (signed) or relu(t) (rect), t = y − m:

    ψ = a^α,  W = pool(ψ),  D = β + c ⊙ W,  φ = sign(t)^[signed] a^p,  z = φ D^{−r},  out = γ z + b

pool: self W_i = ψ_i (c_i κ_ii); uniform W_i = Σ_j ψ_j (κ_ij = c_i); band W_i = Σ_{j=i−l}^{i+u} ψ_j.
Backward: gz = g γ;  gD = −r gz z / D;  gW = gD c;  gψ = poolᵀ(gW);
gt = gz D^{−r} φ'(t) + gψ ψ'(t);  gy = gt − mean(gt) when centered.
Tested against autograd through the plain formula (tests/test_norms_kernel.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def window_sum(v: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """W_i = Σ_{j=i−before}^{i+after} v_j along the last axis (zero outside).

    Small windows: shifted in-place adds (one pass per offset, exact sums). Wide windows: a float64 prefix
    sum, so the differences keep full precision even when a few entries are huge.
    """
    n = v.shape[-1]
    size = before + 1 + after
    if size <= 33:
        return _window_sum_doubling(v, before, after)
    c = v.cumsum(-1, dtype=torch.float64)  # (..., N)
    lead = c.shape[:-1]
    padded = torch.cat(
        [c.new_zeros(*lead, before + 1), c, c[..., -1:].expand(*lead, after)], dim=-1
    )  # (..., before + 1 + N + after)
    w = before + 1 + after
    return (padded[..., w : w + n] - padded[..., :n]).to(v.dtype)


def _window_sum_doubling(v: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Sliding sums of length K = before + 1 + after over the zero-padded rows, built from sums of length
    1, 2, 4, 8, … (binary doubling): about log2(K) + popcount(K) passes instead of K."""
    n, size = v.shape[-1], before + 1 + after
    padded = F.pad(v, (before, after))  # (..., N + K − 1): window i starts at padded index i
    sums = {1: padded}
    length = 1
    while length * 2 <= size:
        s = sums[length]
        sums[length * 2] = s[..., : s.shape[-1] - length] + s[..., length:]
        length *= 2
    out, offset = None, 0
    for length in sorted(sums, reverse=True):  # K written in binary: largest blocks first
        if size - offset >= length:
            part = sums[length][..., offset : offset + n]
            out = part.clone() if out is None else out.add_(part)
            offset += length
    return out


def _pool(kind: str, psi: torch.Tensor, before: int, after: int) -> torch.Tensor:
    if kind == "self":
        return psi
    if kind == "uniform":
        return psi.sum(-1, keepdim=True)  # (M, 1)
    return window_sum(psi, before, after)


def _pool_t(kind: str, gw: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """The transpose of `_pool` (uniform: the row sum broadcasts back; band: the mirrored window)."""
    if kind == "self":
        return gw
    if kind == "uniform":
        return gw.sum(-1, keepdim=True)
    return window_sum(gw, after, before)


def _pow(a: torch.Tensor, e: float) -> torch.Tensor:
    if e == 1.0:
        return a
    if e == 2.0:
        return a * a
    return a.pow(e)


def _dpow(a: torch.Tensor, e: float) -> torch.Tensor:
    """d/da a^e = e·a^(e−1) for a ≥ 0, taken as 0 at a = 0 (finite for every e > 0)."""
    if e == 2.0:
        return 2.0 * a
    nz = a > 0
    return torch.where(nz, e * torch.where(nz, a, torch.ones_like(a)).pow(e - 1.0), torch.zeros_like(a))


class PooledDivisive(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, y, beta, c, gamma, bias, kind, center, rect, alpha, p, r, before, after):  # noqa: ANN001
        # y: (M, N); beta, c: (N,) per unit or (1,) shared; gamma, bias: (N,) or None
        if center:
            t = y - y.mean(-1, keepdim=True)
            t = t - t.mean(-1, keepdim=True)  # second pass removes the rounding error of the first mean
        else:
            t = y
        a = torch.relu(t) if rect else (t if alpha == 2.0 and p == 1.0 else t.abs())  # signed α=2: ψ = t·t
        psi = _pow(a, alpha)
        w = _pool(kind, psi, before, after)  # (M, N), or (M, 1) for uniform
        d = torch.addcmul(beta, w, c)  # β + c ⊙ W: (M, N), or (M, 1) when β and c are shared
        if p == 1.0:
            phi = a if rect else t
        elif p == alpha and rect:
            phi = psi
        else:
            phi = _pow(a, p) if rect else _pow(a, p) * t.sign()
        dr = None if r == 1.0 else (d.rsqrt() if r == 0.5 else d.pow(-r))  # D^{−r}
        z = phi / d if dr is None else phi * dr
        out = z if gamma is None else (z * gamma if bias is None else torch.addcmul(bias, z, gamma))
        ctx.save_for_backward(a if rect else t, d, dr, z, w, c, gamma)
        ctx.cfg = (kind, center, rect, alpha, p, r, before, after, bias is not None)
        ctx.beta_shape = beta.shape
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        t_or_a, d, dr, z, w, c, gamma = ctx.saved_tensors
        kind, center, rect, alpha, p, r, before, after, has_bias = ctx.cfg
        need = ctx.needs_input_grad
        g_gamma = (g * z).sum(0) if gamma is not None and need[3] else None
        g_bias = g.sum(0) if has_bias and need[4] else None
        gz = g * gamma if gamma is not None else g
        row = d.shape[-1] == 1  # D is one number per row (shared β and c with a uniform pool)
        # q = gz ⊙ z / D, so that ∂out/∂D = −r·q
        q_row = torch.linalg.vecdot(gz, z).unsqueeze(-1).div_(d) if row else None  # Σ_i q_i, (M, 1)
        q = None if row else (gz * z).div_(d)
        g_beta = g_c = None
        if need[1]:
            g_beta = (q_row.sum() if row else q.sum(0)).mul(-r).reshape(ctx.beta_shape)
        if need[2]:
            if row:
                g_c = (q_row * w).sum().mul(-r)
            elif kind == "uniform":
                g_c = (q.T @ w).squeeze(-1).mul_(-r)  # (N,)
            else:
                g_c = (q * w).sum(0).mul_(-r)  # self: W = ψ
            g_c = g_c.reshape(c.shape) if c.numel() > 1 else g_c.sum().reshape(c.shape)
        if not need[0]:
            return None, g_beta, g_c, g_gamma, g_bias, *([None] * 8)
        # ∂/∂ψ: the transpose of the pool applied to ∂/∂W = −r·q ⊙ c
        if row:
            gpsi = q_row * c * (-r)  # (M, 1)
        elif kind == "uniform":
            gpsi = (q @ c.reshape(-1, 1)).mul_(-r) if c.numel() > 1 else q.sum(-1, keepdim=True) * (c * -r)
        else:
            gpsi = _pool_t(kind, q.mul_(c), before, after).mul_(-r)  # (M, N)
        # ∂/∂φ = gz·D^{−r}
        gphi = gz / d if dr is None else gz * dr
        if rect:
            a = t_or_a
            if p == alpha:  # φ = ψ: one shared derivative
                gt = gphi.add_(gpsi).mul_(_dpow(a, alpha))
            else:
                dphi = (a > 0).to(a.dtype) if p == 1.0 else _dpow(a, p)
                gt = torch.addcmul(gphi.mul_(dphi), gpsi, _dpow(a, alpha))
        else:
            t = t_or_a
            if alpha == 2.0 and p == 1.0:  # LayerNorm / RMSNorm: φ' = 1, ψ' = 2t
                gt = torch.addcmul(gphi, gpsi, t, value=2.0)
            else:
                a = t.abs()
                dphi = 1.0 if p == 1.0 else _dpow(a, p)
                gt = torch.addcmul(gphi * dphi, gpsi, _dpow(a, alpha) * t.sign())
        g_y = gt - gt.mean(-1, keepdim=True) if center else gt
        return g_y, g_beta, g_c, g_gamma, g_bias, *([None] * 8)


def pooled_divisive(
    y: torch.Tensor,
    beta: torch.Tensor,
    c: torch.Tensor,
    gamma: torch.Tensor | None,
    bias: torch.Tensor | None,
    *,
    kind: str,
    center: bool,
    rect: bool,
    alpha: float,
    p: float,
    r: float,
    before: int = 0,
    after: int = 0,
) -> torch.Tensor:
    """Divisive normalization over the last axis of y (any leading shape) with the fused backward."""
    shape = y.shape
    out = PooledDivisive.apply(y.reshape(-1, shape[-1]), beta, c, gamma, bias, kind, center, rect, alpha, p, r,
                               before, after)  # fmt: skip
    return out.reshape(shape)
