"""κ structures of divisive normalization: how the pooled drive W_i = Σ_j κ_ij ψ_j is formed.

One class per structure. Each declares its parameters (created on the norm module, so the state-dict keys
stay `kappa…`), its pooled sum, its N×N matrix (for inspection, probes and tests; the forward pass never
builds it for the O(N) structures) and whether the fused dn kernels run it (`fused`: the kernels' pool
`kind`). Adding a structure is one class here, one line in `STRUCTURES`, and its closed-form test.

    self       κ_ij = c_i δ_ij                      W_i = c_i ψ_i                       O(N)
    uniform    κ_ij = c_i                           W_i = c_i Σ_j ψ_j                   O(N)
    band:w     κ_ij = c_i on j ∈ [i − l, i + u]     W_i = c_i Σ_{window} ψ_j            O(N)
    gaussian   κ_ij = a_i exp(−(i−j)²/2σ²)          learned width σ (Miller et al. 2022)  O(N²)
    lowrank:k  κ = U Vᵀ, U, V ≥ 0 (N×k)             W = U (Vᵀ ψ)                        O(Nk)
    full       κ ≥ 0, N×N (GDN, Ballé et al. 2016)  W = κ ψ                             O(N²)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from lateralnorm.errors import UsageError
from lateralnorm.norms.base import NonNegative
from lateralnorm.norms.dn_kernel import lowrank_formula, lowrank_product, window_sum

if TYPE_CHECKING:  # pragma: no cover
    from lateralnorm.norms.divisive import DivisiveNorm


def channel_product(kappa: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """κ ψ[b] for each plane set b of ψ (B, C, P): one batched GEMM with κ broadcast (an expanded view, no copy),
    whose gradient for κ is the batch's products summed (expand's backward). Forward + backward this way takes
    0.55–0.8× the time of the same product as a 1×1 convolution (oneDNN's) and ~0.55× torch.matmul(κ, ψ)'s at
    (64, 64, 784) (`benchmarks/RESULTS.md`, stop 43)."""
    b, c = psi.shape[:2]
    return torch.bmm(kappa.expand(b, c, c), psi)


class Kappa:
    """A κ structure (stateless: the parameters live on the norm). `arg` is what follows ':' in the spec."""

    name: ClassVar[str]
    fused: ClassVar[bool] = False  # O(N): the fused dn kernels run it (as their pool `kind` = name)
    size_arg: ClassVar[str | None] = None  # what "name:k" sets, if the structure takes one
    channel_pooled: ClassVar[bool] = False  # a matrix κ with its own pool over channels-first planes

    def init(self, norm: DivisiveNorm, arg: str, o: dict[str, Any], n: int) -> None:
        raise NotImplementedError

    def pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        """Σ_j κ_ij ψ_j for ψ of shape (..., N); (..., 1) for a uniform κ with c shared."""
        raise NotImplementedError

    def kernel_pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        """The pool as the compiled-kernel route runs it (`matrix_pooled_rows`): `pool` unless the structure
        has a faster product of its own there; `pool` stays the formula that it is tested against."""
        return self.pool(norm, psi)

    def linear_matrix(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        """κ (N, N) in ψ's type where the pool is torch's linear map W = F.linear(ψ, κ) (full, gaussian: their
        `pool` and `channel_pool`, and the compiled kernel's one-node layer, `dn_kernel.matrix_rows`, which runs
        that map itself)."""
        raise NotImplementedError

    def channel_pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        """The pool over axis 1 of channels-first planes ψ (B, C, P), W[b, :, p] = κ ψ[b, :, p], for
        `matrix_pooled_planes`; only where `channel_pooled` (the others' channels-first layers take rows)."""
        raise NotImplementedError

    def matrix(self, norm: DivisiveNorm, eye: torch.Tensor) -> torch.Tensor:
        """The effective N×N κ (rows i, columns j). The default reads it off the pool: κ e_j is column j."""
        return self.pool(norm, eye).T.contiguous()

    # --------------------------------------------------------------------------------------- helpers
    def check_arg(self, arg: str) -> None:
        if arg and self.size_arg is None:
            raise UsageError(f"norm 'dn': kappa='{self.name}' takes no ':' argument; got '{self.name}:{arg}'")

    def size(self, arg: str, default: int | None) -> int:
        """The positive integer after ':' (or the default)."""
        if not arg:
            if default is None:
                raise UsageError(f"norm 'dn': kappa='{self.name}' needs a size, e.g. kappa={self.name}:4")
            return default
        try:
            v = int(arg)
        except ValueError:
            v = -1
        if v < 1:
            raise UsageError(
                f"norm 'dn': option 'kappa'='{self.name}:{arg}' needs a positive integer after ':'"
            )
        return v

    @staticmethod
    def per_unit(norm: DivisiveNorm, value: float, o: dict[str, Any], n: int) -> None:
        """The per-unit c (learned ≥ 0, or a fixed buffer), the state of self, uniform, band and gaussian."""
        init = torch.full((n,), float(value), **norm.factory)
        norm.kappa = norm.nonneg(init, o["learn_kappa"], "kappa")


class SelfKappa(Kappa):
    """κ_ij = c_i δ_ij: each unit divided by its own drive, W_i = c_i ψ_i."""

    name, fused = "self", True

    def init(self, norm: DivisiveNorm, arg: str, o: dict[str, Any], n: int) -> None:
        self.per_unit(norm, 1.0 if o["kappa_init"] is None else o["kappa_init"], o, n)

    def pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return psi * norm.value("kappa")

    def matrix(self, norm: DivisiveNorm, eye: torch.Tensor) -> torch.Tensor:
        return torch.diag(norm.value("kappa"))


class UniformKappa(Kappa):
    """κ_ij = c_i: every unit pools the whole layer, W_i = c_i Σ_j ψ_j (LN, RMSNorm, Softmax)."""

    name, fused = "uniform", True

    def init(self, norm: DivisiveNorm, arg: str, o: dict[str, Any], n: int) -> None:
        self.per_unit(norm, 1.0 / n if o["kappa_init"] is None else o["kappa_init"], o, n)

    def pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return psi.sum(-1, keepdim=True) * norm.value("kappa")

    def matrix(self, norm: DivisiveNorm, eye: torch.Tensor) -> torch.Tensor:
        n = eye.shape[0]
        return norm.value("kappa")[:, None].expand(n, n).clone()


class BandKappa(Kappa):
    """κ_ij = c_i on the window j ∈ [i − l, i + u] (a 1-D convolution along the units; LRN's window with
    `size`: l = size // 2, u = (size − 1) // 2; `band:w`: l = u = w)."""

    name, fused, size_arg = "band", True, "half-width w"

    def init(self, norm: DivisiveNorm, arg: str, o: dict[str, Any], n: int) -> None:
        size = o["size"] if o["size"] is not None and not arg else 2 * self.size(arg, 2) + 1
        norm.pad = (size // 2, (size - 1) // 2)
        self.per_unit(norm, 1.0 / size if o["kappa_init"] is None else o["kappa_init"], o, n)

    def pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return window_sum(psi, *norm.pad) * norm.value("kappa")


class GaussianKappa(Kappa):
    """κ_ij = a_i exp(−(i − j)² / 2σ²) with a learned width σ ≥ 0.25 (Miller et al. 2022)."""

    name, channel_pooled = "gaussian", True

    def init(self, norm: DivisiveNorm, arg: str, o: dict[str, Any], n: int) -> None:
        f = norm.factory
        norm.sigma = NonNegative(torch.tensor(float(o["sigma"]), **f), minimum=0.25)
        offsets = torch.arange(n, device=f["device"], dtype=f["dtype"] or torch.get_default_dtype())
        norm.register_buffer("dist2", (offsets[:, None] - offsets[None, :]).square(), persistent=False)
        amp = 1.0 / (o["sigma"] * math.sqrt(2 * math.pi)) if o["kappa_init"] is None else o["kappa_init"]
        self.per_unit(norm, amp, o, n)  # per-unit amplitude a_i

    def pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return F.linear(psi, self.linear_matrix(norm, psi))

    def linear_matrix(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return self.matrix(norm, psi).to(psi.dtype)

    def channel_pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return channel_product(self.linear_matrix(norm, psi), psi)

    def matrix(self, norm: DivisiveNorm, eye: torch.Tensor) -> torch.Tensor:
        sigma = norm.sigma()
        return norm.value("kappa")[:, None] * torch.exp(-norm.dist2.to(sigma.dtype) / (2 * sigma.square()))


class LowRankKappa(Kappa):
    """κ = U Vᵀ with U, V ≥ 0 of shape (N, k): W = U (Vᵀ ψ); every κ_ij starts at kappa_init (default 1/N)."""

    name, size_arg = "lowrank", "rank k"

    def init(self, norm: DivisiveNorm, arg: str, o: dict[str, Any], n: int) -> None:
        k = self.size(arg, None)
        total = 1.0 / n if o["kappa_init"] is None else o["kappa_init"]
        for name in ("kappa_u", "kappa_v"):
            init = torch.full((n, k), math.sqrt(total / k), **norm.factory)
            setattr(norm, name, norm.nonneg(init, o["learn_kappa"], name))

    def pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return lowrank_formula(psi, *self._factors(norm, psi))

    def kernel_pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        """The compiled kernel's K-thin row products on CPU (MKL's GEMM packs ψ before each thin product)."""
        return lowrank_product(psi, *self._factors(norm, psi))

    @staticmethod
    def _factors(norm: DivisiveNorm, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """U and V (N, k), valued, in ψ's type."""
        return norm.value("kappa_u").to(psi.dtype), norm.value("kappa_v").to(psi.dtype)

    def matrix(self, norm: DivisiveNorm, eye: torch.Tensor) -> torch.Tensor:
        return norm.value("kappa_u") @ norm.value("kappa_v").T


class FullKappa(Kappa):
    """κ ≥ 0, a full N×N matrix (GDN, Ballé et al. 2016): W = κ ψ; starts at kappa_init everywhere, or at
    kappa_init·I with kappa_eye (GDN's start)."""

    name, channel_pooled = "full", True

    def init(self, norm: DivisiveNorm, arg: str, o: dict[str, Any], n: int) -> None:
        value = 1.0 / n if o["kappa_init"] is None else o["kappa_init"]
        f = norm.factory
        full = value * torch.eye(n, **f) if o["kappa_eye"] else torch.full((n, n), value, **f)
        norm.kappa = norm.nonneg(full, o["learn_kappa"], "kappa")

    def pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return F.linear(psi, self.linear_matrix(norm, psi))

    def linear_matrix(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return norm.value("kappa").to(psi.dtype)

    def channel_pool(self, norm: DivisiveNorm, psi: torch.Tensor) -> torch.Tensor:
        return channel_product(self.linear_matrix(norm, psi), psi)

    def matrix(self, norm: DivisiveNorm, eye: torch.Tensor) -> torch.Tensor:
        return norm.value("kappa")


STRUCTURES: dict[str, Kappa] = {
    k.name: k() for k in (SelfKappa, UniformKappa, BandKappa, GaussianKappa, LowRankKappa, FullKappa)
}
