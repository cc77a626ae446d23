"""The classic layers, each a thin, fast wrapper over PyTorch's own kernels, held to the same references
as the `dn` presets (tests/test_norms_exact.py)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lateralnorm.errors import UsageError
from lateralnorm.norms import cpu_kernel
from lateralnorm.norms.base import COMMON, Norm
from lateralnorm.norms.channel_kernel import channel_norm
from lateralnorm.norms.dn_kernel import DnConfig, divisive_rows, pooled_divisive
from lateralnorm.norms.options import Opt


class Identity(Norm):
    """No normalization: z = y."""

    name = "none"
    summary = "identity: z = y"

    def build(self) -> None:  # no parameters
        pass

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class LayerNorm(Norm):
    """LayerNorm (Ba et al. 2016) over the feature axis: z = γ (y − mean y) / sqrt(var y + ε) + b.
    With layout channels_first, each position (pixel, time step) is normalized across its C channels
    (ConvNeXt style)."""

    name = "ln"
    summary = (
        "LayerNorm: (y − mean)/sqrt(var + ε) over the features (per pixel across channels if channels_first)"
    )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "channels_first" and x.ndim > 2:  # per position across C, without permute copies
            self._check(x)
            return channel_norm(x, self.weight, self.bias, self.eps, center=True)
        return super().forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.num_features,), self.weight, self.bias, self.eps)


RMS_AS_DN = DnConfig("uniform", center=False, rect=False, alpha=2.0, p=1.0, r=0.5)  # β = ε, c = 1/N


class RMSNorm(Norm):
    """RMSNorm (Zhang & Sennrich 2019) over the feature axis: z = γ y / sqrt(mean y² + ε); no centering, no bias."""

    name = "rms"
    summary = "RMSNorm: y / sqrt(mean y² + ε), no centering"
    OPTIONS = {**COMMON, "eps": Opt(float, 1e-6, "added to mean y²", lo=0.0)}

    def build(self) -> None:  # γ only: RMSNorm has no bias
        self.weight = nn.Parameter(torch.ones(self.num_features, **self.factory)) if self.affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "channels_first" and x.ndim > 2:  # per position across C, without permute copies
            self._check(x)
            return channel_norm(x, self.weight, None, self.eps, center=False)
        return super().forward(x)

    # the same function as dn:preset=rms (β = ε, uniform κ = 1/N, α = 2, r = 1/2): on CPU it runs in the
    # compiled row kernel, 2-3x faster than torch's composite F.rms_norm (benchmarks/norms.py)
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if cpu_kernel.applies_to(x) and (self.weight is None or self.weight.dtype == x.dtype):
            beta, c = (
                x.new_full((1,), self.eps),
                x.new_full((1,), 1.0 / self.num_features),
            )  # in x's precision
            return divisive_rows(x, beta, c, self.weight, None, RMS_AS_DN)
        return F.rms_norm(x, (self.num_features,), self.weight, self.eps)


class GroupedLayerNorm(Norm):
    """LN-G (Ni et al. 2024): the N features split into G contiguous groups, LayerNorm within each group,
    then a per-feature affine. G = 1 is LayerNorm."""

    name = "lng"
    summary = "grouped LayerNorm (LN-G, Ni et al. 2024): LayerNorm within G groups of features"
    OPTIONS = {**COMMON, "groups": Opt(int, 2, "number of groups G (must divide N)", lo=1)}

    def build(self) -> None:
        self.groups = self.opts["groups"]
        if self.num_features % self.groups:
            raise UsageError(f"norm 'lng': groups={self.groups} must divide num_features={self.num_features}")
        self._init_affine()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.groups
        z = F.layer_norm(x.unflatten(-1, (g, -1)), (self.num_features // g,), None, None, self.eps)
        return self._apply_affine(z.flatten(-2))


class BatchNorm(Norm):
    """BatchNorm (Ioffe & Szegedy 2015): each channel normalized over the batch and all positions with
    batch statistics in training, running statistics in eval."""

    name = "bn"
    summary = "BatchNorm: each channel over the batch and positions; running statistics in eval"
    native_layout = "channels_first"
    OPTIONS = {**COMMON, "momentum": Opt(float, 0.1, "running-statistics momentum", lo=0.0, hi=1.0)}

    def build(self) -> None:
        self._init_affine()
        self.register_buffer("running_mean", torch.zeros(self.num_features, **self.factory))
        self.register_buffer("running_var", torch.ones(self.num_features, **self.factory))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, ...)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.opts["momentum"], self.eps)  # fmt: skip


def _auto_groups(n: int) -> int:
    return math.gcd(n, 32)


class GroupNorm(Norm):
    """GroupNorm (Wu & He 2018): channels split into G groups, each normalized over its channels and all
    positions of one sample; per-channel affine. groups=0 picks gcd(C, 32)."""

    name = "gn"
    summary = "GroupNorm: G channel groups, each over its channels and positions"
    native_layout = "channels_first"
    OPTIONS = {**COMMON, "groups": Opt(int, 0, "number of groups (0: gcd(C, 32))", lo=0)}

    def build(self) -> None:
        num_features = self.num_features
        self.groups = self.opts["groups"] or _auto_groups(num_features)
        if num_features % self.groups:
            raise UsageError(
                f"norm '{self.name}': groups={self.groups} must divide num_features={num_features}"
            )
        self._init_affine()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, ...)
        if (
            x.ndim == 2
        ):  # (B, N): each group is a row segment, LayerNorm's fused kernel is the fast exact path
            b, n = x.shape
            if self.groups == 1:
                return F.layer_norm(x, (n,), self.weight, self.bias, self.eps)
            z = F.layer_norm(
                x.view(b, self.groups, n // self.groups), (n // self.groups,), None, None, self.eps
            )
            return self._apply_affine(z.view(b, n))
        return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)


class LayerNormCHW(GroupNorm):
    """LayerNorm over C×H×W (all of a sample's channels and positions together), per-channel affine —
    GroupNorm with one group. With layout last on (B, T, N) it normalizes over T×N."""

    name = "ln_chw"
    summary = "LayerNorm over C×H×W of each sample, per-channel affine"
    OPTIONS = COMMON

    def build(self) -> None:
        self.groups = 1
        self._init_affine()


class LocalResponseNorm(Norm):
    """Local response normalization (Krizhevsky et al. 2012) across channels:
    z_c = y_c / (k + α/n Σ_{c' ∈ window(c)} y_c'²)^β, window of n channels. Defaults are torch's."""

    name = "lrn"
    summary = "local response norm: y_c / (k + α/n Σ_window y²)^β across neighbouring channels"
    native_layout = "channels_first"
    OPTIONS = {
        **COMMON,
        "affine": Opt(bool, False, "learned per-unit gain γ and bias b"),
        "size": Opt(int, 5, "window of n neighbouring channels", lo=1),
        "alpha": Opt(float, 1e-4, "α (the window sum is scaled by α/n)", lo=0.0),
        "beta": Opt(float, 0.75, "exponent β", lo=0.0),
        "k": Opt(float, 1.0, "additive constant k", lo=0.0),
    }

    # the same function as dn:preset=lrn (a band pool of `size` channels, β = k, c = α/n, r = β): on CPU
    # it runs in the compiled row kernel, ~20x faster than torch's avg_pool3d route (benchmarks/norms.py)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        o = self.opts
        if (
            o["beta"] > 0
            and cpu_kernel.applies_to(x)
            and (self.weight is None or self.weight.dtype == x.dtype)
        ):
            # features last for the row kernel: (B, C, ...) → (B, ..., C) and back when channels-first
            last = x if self.layout == "last" or x.ndim == 2 else x.movedim(1, -1)
            n = o["size"]
            k, c = x.new_full((1,), o["k"]), x.new_full((1,), o["alpha"] / n)  # in x's precision
            z = pooled_divisive(last, (k, None), (c, None), self.weight, self.bias, kind="band",
                                center=False, rect=False, alpha=2.0, p=1.0, r=o["beta"], before=n // 2,
                                after=(n - 1) // 2)  # fmt: skip
            return z if last is x else z.movedim(-1, 1)
        return super().forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, ...)
        o = self.opts
        # torch sums the window with avg_pool3d for 4-D and 5-D inputs, which has no CPU kernel for bfloat16
        # or float16: on CPU those dtypes run in float32 (every rank alike) and the result is rounded once
        upcast = x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16)
        y = x.float() if upcast else x
        z = F.local_response_norm(
            y if y.ndim > 2 else y.unsqueeze(-1), o["size"], o["alpha"], o["beta"], o["k"]
        )
        z = (z if y.ndim > 2 else z.squeeze(-1)).to(x.dtype)
        if self.weight is None:
            return z
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return z * self.weight.view(shape) + self.bias.view(shape)


class Softmax(Norm):
    """Softmax over the feature axis: z_i = e^{y_i/τ} / Σ_j e^{y_j/τ} (divisive normalization with κ ≡ 1, β = 0)."""

    name = "softmax"
    summary = "Softmax over the features: e^{y_i/τ} / Σ_j e^{y_j/τ}"
    OPTIONS = {
        **COMMON,
        "affine": Opt(bool, False, "learned per-unit gain γ and bias b"),
        "temperature": Opt(float, 1.0, "temperature τ", lo=0.0, open_lo=True),
    }

    def build(self) -> None:
        self.temperature = self.opts["temperature"]
        self._init_affine()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.softmax(x / self.temperature if self.temperature != 1.0 else x, dim=-1)
        return self._apply_affine(z)


class DyT(Norm):
    """Dynamic Tanh (Zhu et al. 2025): z = γ tanh(a·y) + b with a learned scalar a — a normalization-free
    stand-in for LayerNorm."""

    name = "dyt"
    summary = "Dynamic Tanh (Zhu et al. 2025): γ·tanh(a·y) + b, learned scalar a"
    OPTIONS = {**COMMON, "alpha_init": Opt(float, 0.5, "initial a", lo=0.0, open_lo=True)}

    def build(self) -> None:
        self.alpha = nn.Parameter(torch.tensor(float(self.opts["alpha_init"]), **self.factory))
        self._init_affine()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_affine(torch.tanh(self.alpha * x))


class Tanh(Norm):
    """z = γ tanh(y) + b: a fixed squashing nonlinearity in the norm slot (no pooling across units)."""

    name = "tanh"
    summary = "tanh squashing in the norm slot: γ·tanh(y) + b, no pooling"
    OPTIONS = {**COMMON, "affine": Opt(bool, False, "learned per-unit gain γ and bias b")}

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_affine(torch.tanh(x))
