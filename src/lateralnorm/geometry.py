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


# --------------------------------------------------------------------- the output ellipsoid of a trained γ
def ellipsoid_axes(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal axes of LayerNorm's output set for gain γ (Riechers 2024), bias and ε left out.

    With G = diag(γ) the outputs w = √N·G·v, v on the unit sphere of the plane ⊥ 1, satisfy
    wᵀG⁻²w = N on the hyperplane n·w = 0 with n = γ⁻¹ (= G⁻¹1): an (N−1)-dimensional ellipsoid. Its axes are
    the eigenvectors of Q·G⁻²·Q with Q = I − nnᵀ/‖n‖² the projector onto that hyperplane, and the semi-axes
    are √(N/λ) for the N−1 non-zero eigenvalues λ. When γ is constant Q = P = I − 11ᵀ/N and every semi-axis
    is |γ|·√N. (Q·G⁻²·Q, not P·G⁻²·P: the plane the outputs live in is ⊥ γ⁻¹, not ⊥ 1, once γ varies.)

    gamma: (N,) with no zero entry. Returns (axes (N−1, N) orthonormal rows, semi_axes (N−1,)) sorted from
    the longest semi-axis down.
    """
    g = gamma.detach().to(torch.float64).flatten()
    if (g == 0).any():
        raise ValueError("ellipsoid_axes: γ has a zero entry, so the output set is flat along that unit")
    n_vec = 1.0 / g
    q = torch.eye(g.numel(), dtype=torch.float64) - torch.outer(n_vec, n_vec) / n_vec.dot(n_vec)
    lam, vecs = torch.linalg.eigh(q @ torch.diag(g.pow(-2)) @ q)  # ascending; lam[0] ≈ 0 along n
    lam, vecs = lam[1:], vecs[:, 1:]
    return vecs.T.contiguous(), (g.numel() / lam).sqrt()


# --------------------------------------------------------------------- folds along straight lines
def direction_changes(values: torch.Tensor, rel_tol: float = 1e-4) -> torch.Tensor:
    """How often each column of `values` (K, M), sampled along a path, turns back: (M,) counts.

    A step counts as up or down when |Δ| exceeds rel_tol·(range of the column) + 1e-6·max|values|, else
    it is flat and ignored; a direction change is a down step after an up step or the reverse. |s| on
    [−1, 1] has one, relu(s) none, sin(2πks) on [0, 1] has 2k.
    """
    v = values.detach().to(torch.float64)
    if v.ndim == 1:
        v = v.unsqueeze(1)
    d = v[1:] - v[:-1]  # (K−1, M)
    col_range = v.amax(0) - v.amin(0)
    tol = rel_tol * col_range + 1e-6 * v.abs().max().clamp_min(1e-300)
    sign = torch.where(d.abs() > tol, d.sign(), torch.zeros_like(d))
    steps = torch.arange(sign.shape[0]).unsqueeze(1).expand_as(sign)
    last = torch.where(sign != 0, steps, torch.zeros_like(steps)).cummax(0).values  # last non-flat step
    filled = sign.gather(0, last)
    return ((filled[1:] * filled[:-1]) < 0).sum(0)


def line_points(a: torch.Tensor, b: torch.Tensor, steps: int = 512, span: tuple[float, float] = (0.0, 1.0)):
    """Points x(s) = a + s·(b − a) for `steps` values of s spread over `span`: (steps, *a.shape)."""
    s = torch.linspace(span[0], span[1], steps, dtype=a.dtype).view(-1, *([1] * a.ndim))
    return a.unsqueeze(0) + s * (b - a).unsqueeze(0)


def decision_changes(logits: torch.Tensor) -> int:
    """Number of times the predicted class (argmax over the last axis) changes along a path (K, C)."""
    pred = logits.argmax(-1)
    return int((pred[1:] != pred[:-1]).sum())


# --------------------------------------------------------------------- linear regions on a 2-D grid
def grid_2d(lo: tuple[float, float], hi: tuple[float, float], resolution: int) -> torch.Tensor:
    """A resolution × resolution grid over the box [lo, hi] as points (resolution², 2), row-major in y."""
    xs = torch.linspace(lo[0], hi[0], resolution, dtype=torch.float64)
    ys = torch.linspace(lo[1], hi[1], resolution, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=1)


def count_regions_2d(patterns: torch.Tensor, resolution: int) -> dict[str, int]:
    """Connected regions of equal pattern on a grid (4-neighbours), e.g. ReLU on/off patterns.

    patterns: (resolution², P) one pattern per grid point from `grid_2d`. Returns {"regions": connected
    components, "patterns": distinct patterns}. k lines in general position crossing inside the box cut it
    into 1 + k + k(k−1)/2 regions.
    """
    _, ids = torch.unique(patterns.reshape(patterns.shape[0], -1), dim=0, return_inverse=True)
    ids = ids.view(resolution, resolution)
    parent = list(range(resolution * resolution))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    same_right = (ids[:, 1:] == ids[:, :-1]).nonzero().tolist()
    same_down = (ids[1:, :] == ids[:-1, :]).nonzero().tolist()
    for r, c in same_right:
        a, b = find(r * resolution + c), find(r * resolution + c + 1)
        if a != b:
            parent[a] = b
    for r, c in same_down:
        a, b = find(r * resolution + c), find((r + 1) * resolution + c)
        if a != b:
            parent[a] = b
    roots = {find(i) for i in range(resolution * resolution)}
    return {"regions": len(roots), "patterns": int(ids.max()) + 1}
