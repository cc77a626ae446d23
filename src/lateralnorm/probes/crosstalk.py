"""Cross-talk: does driving one silent unit further negative disturb the positively activated ones?

Take one pool y ∈ R^N of a layer's input, its positive set P = {i : y_i > 0} and one unit j ∉ P. Drive j
down, y_j(t) = y_j − t for t ≥ 0, and measure on the layer's output z = f(y):

    D(t) = ‖z_P(t) − z_P(0)‖ / ‖z_P(0)‖          relative disturbance of the positive units
    C(t) = std(z_P(t)) / std(z_P(0))              contrast retained among them
    J(t) = ∂z_P / ∂y_j  at y(t)                    the Jacobian block (|P| numbers), reported as its norm

Known answers (tests/test_probes_crosstalk.py): a rectifier before the pool (relu>ln, rectified dn) gives
D ≡ 0, C ≡ 1, J ≡ 0. Plain LayerNorm squashes the positive units to one value: C(t) = √(σ²(0)+ε)/√(σ²(t)+ε)
with σ²(t) = σ²(0) − 2t(y_j − ȳ)/N + t²(N−1)/N², so C(t) ~ 1/t (`layernorm_reference`). Softmax keeps the
ratios z_i/z_k among P exactly and D saturates at e^{y_j}/(Σ_k e^{y_k} − e^{y_j}).

On a trained model, y is what a norm layer saw on real inputs and t is measured in units of that pool's RMS.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lateralnorm.probes.layers import CapturedLayer, pool_indices

# t on this grid, in units of the pool's RMS for captured layers (absolute for `crosstalk_curve`)
T_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


def _jacobian_column(fn: nn.Module, x: torch.Tensor, tangent: torch.Tensor) -> torch.Tensor:
    """J·tangent for a batch whose rows are independent, by the double-backward trick: g(u) = Jᵀu is linear
    in u, so ∂(g·v)/∂u = J v. (Reverse mode only: forward-mode AD costs seconds of imports on first use.)"""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x)
        if not out.requires_grad:  # the output does not depend on x (e.g. "none" with no parameters)
            return torch.zeros_like(out)
        u = torch.zeros_like(out, requires_grad=True)
        (g,) = torch.autograd.grad(out, x, u, create_graph=True, allow_unused=True)
        if g is None:  # x does not reach the output
            return torch.zeros_like(out)
        (jv,) = torch.autograd.grad(g, u, tangent, allow_unused=True)
    return torch.zeros_like(out) if jv is None else jv.detach()


def drive_curves(
    fn: nn.Module, x: torch.Tensor, j: int, positive: torch.Tensor, ts: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The cross-talk curves of one sample.

    x: one sample (no batch axis), any shape; j: flat index of the driven unit; positive: flat indices of P
    (|P| ≥ 2); ts: (T,) amounts to subtract from x[j]. Returns D, C, J (each (T,)) and z_P (T, |P|).
    """
    T = ts.numel()
    xs = x.detach().reshape(1, -1).repeat(T, 1)  # (T, numel)
    xs[:, j] = xs[:, j] - ts.to(xs.dtype)
    xs = xs.view(T, *x.shape)
    tangent = torch.zeros_like(xs).view(T, -1)
    tangent[:, j] = 1.0
    tangent = tangent.view_as(xs)
    with torch.no_grad():
        z = fn(xs).reshape(T, -1)[:, positive]  # (T, |P|)
    jac = _jacobian_column(fn, xs, tangent).reshape(T, -1)[:, positive]  # (T, |P|)
    z0 = z[0]
    D = (z - z0).norm(dim=1) / z0.norm().clamp_min(1e-30)
    C = z.std(dim=1, unbiased=False) / z0.std(unbiased=False).clamp_min(1e-30)
    return {"D": D, "C": C, "J": jac.norm(dim=1), "z_P": z}


def default_input(width: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A fixed probe input for a bare layer: y (N,), P = the first ⌈N/2⌉ units (values spread over
    [0.5, 1.5]), the rest negative over [−1.5, −0.5] except the driven unit j = N−1, which starts at 0."""
    n_pos = (width + 1) // 2
    y = torch.cat([torch.linspace(0.5, 1.5, n_pos), -torch.linspace(0.5, 1.5, width - n_pos)])
    j = width - 1
    y[j] = 0.0
    return y, torch.arange(n_pos), j


def crosstalk_curve(
    layer: nn.Module,
    y: torch.Tensor | None = None,
    positive: torch.Tensor | None = None,
    j: int | None = None,
    ts: tuple[float, ...] | torch.Tensor = T_GRID,
) -> dict[str, Any]:
    """Cross-talk of a bare layer on one input y (N,) (default: `default_input`). JSON-able result."""
    layer = layer.eval()
    if y is None:
        n = getattr(layer, "num_features", None) or _width_of(layer)
        y, positive, j = default_input(n)
    if positive is None:
        positive = torch.nonzero(y > 0).flatten()
    if j is None:
        j = int(torch.nonzero(y <= 0).flatten()[-1])
    t = torch.as_tensor(ts, dtype=y.dtype)
    c = drive_curves(layer, y, j, positive, t)
    return {
        "t": t.tolist(),
        "D": c["D"].tolist(),
        "C": c["C"].tolist(),
        "J": c["J"].tolist(),
        "positive": positive.tolist(),
        "j": j,
        "D_max": float(c["D"].max()),
        "C_at_T": float(c["C"][-1]),
    }


def _width_of(layer: nn.Module) -> int:
    for m in layer.modules():
        n = getattr(m, "num_features", None)
        if isinstance(n, int):
            return n
    raise ValueError("cannot tell the layer's width; pass y explicitly")


def crosstalk_layer(
    layer: CapturedLayer, max_samples: int = 64, ts: tuple[float, ...] = T_GRID, seed: int = 0
) -> dict[str, Any]:
    """Distribution of D(t), C(t), |J(t)| over real inputs of one captured norm layer.

    Per sample: one pool (a random position for conv/sequence layers), P = its positive units, j a random
    non-positive unit; t is in units of the pool's RMS. Pools with |P| < 2 or no non-positive unit are
    skipped.
    """
    gen = torch.Generator().manual_seed(seed)
    x = layer.inputs
    axis = layer.feature_axis
    pools = pool_indices(tuple(x.shape[1:]), axis)  # (positions, N)
    grid = torch.tensor(ts, dtype=x.dtype)
    Ds, Cs, Js = [], [], []
    skipped = 0
    order = torch.randperm(x.shape[0], generator=gen)
    module = layer.module.eval()
    for b in order.tolist():
        if len(Ds) >= max_samples:
            break
        sample = x[b]
        pool = pools[int(torch.randint(pools.shape[0], (1,), generator=gen))]  # (N,) flat indices
        y = sample.reshape(-1)[pool]
        pos, neg = pool[y > 0], pool[y <= 0]
        if pos.numel() < 2 or neg.numel() == 0:
            skipped += 1
            continue
        j = int(neg[int(torch.randint(neg.numel(), (1,), generator=gen))])
        rms = y.square().mean().sqrt().clamp_min(1e-12)
        c = drive_curves(module, sample, j, pos, grid * rms)
        Ds.append(c["D"])
        Cs.append(c["C"])
        Js.append(c["J"] * rms)  # dimensionless: ∂z_P/∂(y_j / rms)
    if not Ds:
        return {"t_rel": list(ts), "n_samples": 0, "skipped": skipped}
    D, C, J = torch.stack(Ds), torch.stack(Cs), torch.stack(Js)  # (S, T)
    return {
        "t_rel": list(ts),
        "n_samples": D.shape[0],
        "skipped": skipped,
        "D": _quantiles(D),
        "C": _quantiles(C),
        "J": _quantiles(J),
        "D_at_1": float(D[:, ts.index(1.0)].median()) if 1.0 in ts else None,
        "D_at_T": float(D[:, -1].median()),
        "C_at_T": float(C[:, -1].median()),
        "D_max": float(D.max()),
    }


def _quantiles(v: torch.Tensor) -> dict[str, list[float]]:
    """Per-t summary over samples of v (S, T)."""
    q = torch.quantile(v, torch.tensor([0.1, 0.5, 0.9], dtype=v.dtype), dim=0)  # (3, T)
    return {"mean": v.mean(0).tolist(), "q10": q[0].tolist(), "median": q[1].tolist(), "q90": q[2].tolist()}


def layernorm_reference(
    y: torch.Tensor, j: int, ts: torch.Tensor, eps: float = 0.0
) -> dict[str, torch.Tensor]:
    """Closed form of D(t) and C(t) for LayerNorm without affine, P = {i : y_i > 0}, y_j → y_j − t.

    z_P(t) = (y_P − ȳ(t)) / √(σ²(t)+ε) with ȳ(t) = ȳ − t/N and σ²(t) = σ² − 2t(y_j − ȳ)/N + t²(N−1)/N².
    As t → ∞, C(t)·t → √(σ²+ε)·N/√(N−1) and z_P → 1/√(N−1) for every i ∈ P.
    """
    n = y.numel()
    mean, var = y.mean(), y.var(unbiased=False)
    mean_t = mean - ts / n
    var_t = var - 2 * ts * (y[j] - mean) / n + ts.square() * (n - 1) / n**2
    pos = y > 0
    z = (y[pos].unsqueeze(0) - mean_t.unsqueeze(1)) / (var_t + eps).sqrt().unsqueeze(1)  # (T, |P|)
    D = (z - z[0]).norm(dim=1) / z[0].norm()
    C = (var + eps).sqrt() / (var_t + eps).sqrt()
    return {"D": D, "C": C, "z_P": z}


def crosstalk(layers: list[CapturedLayer], **kw: Any) -> dict[str, Any]:
    """The cross-talk probe over every captured norm layer of a model: {"layers": {name: result}}."""
    return {"layers": {layer.name: crosstalk_layer(layer, **kw) for layer in layers}}
