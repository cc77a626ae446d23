"""The base class every norm shares: declared options, the two layouts, shape checks, and the
non-negative reparametrization used for κ and β."""

from __future__ import annotations

import math
import os
import sys
from types import ModuleType
from typing import Any, ClassVar

import torch
from torch import nn

from lateralnorm.errors import UsageError
from lateralnorm.norms import cpu_kernel
from lateralnorm.norms.options import Opt, resolve_options

LAYOUTS = ("last", "channels_first")

# options every norm accepts (a norm may change the defaults)
COMMON: dict[str, Opt] = {
    "eps": Opt(float, 1e-5, "added to the variance / denominator for stability", lo=0.0),
    "affine": Opt(bool, True, "learned per-unit gain γ and bias b"),
}


class Norm(nn.Module):
    """A normalization over a pool of units.

    Subclasses implement `_forward(x)` for inputs in their `native_layout`: "last" means features on the
    last axis, (B, ..., N); "channels_first" means (B, C, ...). The base moves the feature axis when the
    layer was built for the other layout, and checks rank and feature size with a clear error.
    """

    name: ClassVar[str] = "norm"
    OPTIONS: ClassVar[dict[str, Opt]] = COMMON
    native_layout: ClassVar[str] = "last"

    def __init__(
        self,
        num_features: int,
        eps: float | None = None,
        affine: bool | None = None,
        layout: str = "last",
        **options: Any,
    ) -> None:
        super().__init__()
        # where and in what dtype parameters and buffers are created (torch's factory_kwargs convention);
        # taken out of `options` here so every subclass accepts them without naming them
        self.factory: dict[str, Any] = {
            "device": options.pop("device", None),
            "dtype": options.pop("dtype", None),
        }
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise UsageError(
                f"norm '{self.name}': num_features must be a positive integer; got {num_features!r}"
            )
        if layout not in LAYOUTS:
            raise UsageError(f"norm '{self.name}': layout must be 'last' or 'channels_first'; got {layout!r}")
        given = dict(options)
        if eps is not None:
            given["eps"] = eps
        if affine is not None:
            given["affine"] = affine
        self.opts = resolve_options(self.name, self.OPTIONS, given)
        self.num_features = num_features
        self.layout = layout
        self.eps = self.opts.get("eps", 0.0)
        self.affine = self.opts.get("affine", False)
        self.build()

    def build(self) -> None:
        """Create the norm's parameters and buffers (in `self.factory`'s device and dtype) from `self.opts`.
        The default is the per-unit affine γ, b when `affine` is on; a norm with other state overrides this,
        never the constructor."""
        self._init_affine()

    # ----------------------------------------------------------------- affine helpers
    def _init_affine(self) -> None:
        if self.affine:
            self.weight = nn.Parameter(torch.ones(self.num_features, **self.factory))
            self.bias = nn.Parameter(torch.zeros(self.num_features, **self.factory))  # (N,)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def _apply_affine(self, z: torch.Tensor) -> torch.Tensor:
        """γ ⊙ z + b with features on the last axis."""
        if self.weight is None:
            return z
        if self.bias is None:
            return z * self.weight
        return torch.addcmul(self.bias, z, self.weight)

    # ----------------------------------------------------------------- layout + checks
    def _check(self, x: torch.Tensor) -> None:
        if x.ndim < 2 or x.ndim > 5:
            raise UsageError(
                f"norm '{self.name}' ({self.layout}): expected input of shape {self._want()} with 2 to 5 "
                f"dims; got {tuple(x.shape)}"
            )
        axis = -1 if self.layout == "last" else 1
        if x.shape[axis] != self.num_features:
            raise UsageError(
                f"norm '{self.name}' ({self.layout}): expected {self.num_features} features at axis {axis}, "
                f"shape {self._want()}; got {tuple(x.shape)}"
            )

    def _want(self) -> str:
        n = self.num_features
        return f"(B, ..., {n})" if self.layout == "last" else f"(B, {n}, ...)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if self.layout == self.native_layout or x.ndim == 2:  # (B, N): both layouts coincide
            return self._forward(x)
        if self.native_layout == "last":  # (B, C, ...) → (B, ..., C) and back
            return self._forward(x.movedim(1, -1)).movedim(-1, 1)
        return self._forward(x.movedim(-1, 1)).movedim(1, -1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        shown = {k: v for k, v in self.opts.items() if v != self.OPTIONS[k].default}
        opts = "".join(f", {k}={v}" for k, v in shown.items())
        return f"{self.num_features}, layout={self.layout}{opts}"


# --------------------------------------------------------------------- non-negative parameters
# The pedestal of the square-root reparametrization v = p² − pedestal. GDN implementations (Ballé's, CompressAI)
# use a reparametrization *offset* of 2**-18 and a pedestal of offset² = 2**-36; ours is 2**-18 itself, a
# larger pedestal: p never gets closer to 0 than √(2**-18) = 2**-9 (for a floor of 0), so the map stays well
# conditioned near 0. Kept (not changed to 2**-36) because stored results and checkpoints were made with it.
PEDESTAL = 2.0**-18


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it pushes x back above the bound (Ballé et al.)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """max(x, bound) with `_LowerBound`'s gradient rule. On CPU, once the compiled kernel is loaded, through its
    own node (`lower_bound_node`: the same ATen calls each way, so the same bits, without a Python call each
    way; at the studies' widths the Python Function cost a learned-α layer about a tenth of its step:
    `benchmarks/lower_bound_ab.py`). `_LowerBound` otherwise (other devices, no kernel, torch.compile, jit
    tracing), and as the oracle. A `dn` layer on the compiled kernel does not call this for its learned α: its
    own node (`dn_rows_node`) applies the floor, with the same bits (`DivisiveNorm._forward`)."""
    ext = _compiled_for(x)
    if ext is not None and not torch.jit.is_tracing():
        return ext.lower_bound_node(x, bound)
    return _LowerBound.apply(x, bound)


class _NonNegativeValue(torch.autograd.Function):
    """v = max(p, bound)² − pedestal with `_LowerBound`'s gradient rule, as one autograd node: the same float
    operations as lower_bound(p, bound).square() − pedestal and its three backward nodes (∂v/∂p =
    g·(2·max(p, bound)), passed where p ≥ bound or it pushes p up), so the same bits, at a fraction of the
    per-step overhead (these parameters are small: their cost is autograd's, not arithmetic). On CPU, once the
    compiled kernel is loaded, forward and backward are one call each into it (the same operations again)."""

    @staticmethod
    def forward(ctx: Any, p: torch.Tensor, bound: float, pedestal: float) -> torch.Tensor:
        ctx.save_for_backward(p)
        ctx.bound = bound
        ext = _compiled_for(p)
        if ext is not None:
            return ext.nonneg_value(p, bound, pedestal)
        tk = triton_kernels_for(p)
        if tk is not None and p.is_contiguous():  # one kernel instead of three element-wise ops
            return tk.nonneg_forward(p, bound, pedestal)
        return p.clamp_min(bound).square().sub_(pedestal)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (p,) = ctx.saved_tensors
        ext = _compiled_for(p)
        if ext is not None and grad.dtype == p.dtype and not torch.is_grad_enabled():
            return ext.nonneg_grad(grad, p, ctx.bound).view_as(p), None, None
        tk = triton_kernels_for(p)
        if tk is not None and grad.dtype == p.dtype and p.is_contiguous() and not torch.is_grad_enabled():
            return tk.nonneg_backward(grad, p, ctx.bound), None, None  # one kernel instead of about eight
        return _nonneg_backward_in_torch(grad, p, ctx.bound), None, None


def _nonneg_backward_in_torch(grad: torch.Tensor, p: torch.Tensor, bound: float) -> torch.Tensor:
    """∂v/∂p · grad for v = max(p, bound)² − pedestal in torch ops: under create_graph=True the differentiable
    chain (lower_bound, square), else g·(2·max(p, bound)) passed where p ≥ bound or it pushes p up. Also the
    compiled node's double backward (`nonneg_node` in csrc/dn_rows.cpp calls it)."""
    if torch.is_grad_enabled():
        with torch.enable_grad():
            v = lower_bound(p, bound).square()
            return torch.autograd.grad(v, p, grad, create_graph=True)[0]
    g = grad * (2 * p.clamp_min(bound))
    return g * ((p >= bound) | (g < 0)).to(g.dtype)


def triton_kernels_for(t: torch.Tensor) -> ModuleType | None:
    """The Triton kernels (`triton_kernel`) when they run t: LATERALNORM_CUDA_KERNEL=triton (opt-in until they
    are measured on a GPU; the default `torch` takes PyTorch ops) and t is a float32/16 or bfloat16 tensor on
    CUDA, or on the CPU under Triton's interpreter (TRITON_INTERPRET=1: how the tests check the kernels without
    a GPU). Else None. A clear error when opted in without Triton."""
    if not (t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1") or torch.compiler.is_compiling():
        return None  # (under torch.compile: the PyTorch ops, which it compiles itself)
    if os.environ.get("LATERALNORM_CUDA_KERNEL", "torch").strip().lower() != "triton":
        return None
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return None
    tk = sys.modules.get("lateralnorm.norms.triton_kernel")  # imported once (a per-step import costs µs)
    if tk is not None:
        return tk
    try:
        from lateralnorm.norms import triton_kernel as tk
    except ImportError as exc:
        raise RuntimeError(
            f"LATERALNORM_CUDA_KERNEL=triton but Triton cannot be imported ({exc}); pip install triton, or unset it"
        ) from None
    return tk


def _compiled_for(p: torch.Tensor) -> Any:
    """The loaded CPU kernel when it runs p (CPU float32/float64, not under torch.compile), else None."""
    if (
        p.device.type != "cpu"
        or p.dtype not in (torch.float32, torch.float64)
        or torch.compiler.is_compiling()
    ):
        return None
    return cpu_kernel.loaded_extension()


class NonNegative(nn.Module):
    """A parameter v ≥ minimum stored as p = √(v + pedestal); v = max(p, √(minimum + pedestal))² − pedestal.

    The optimiser never sees the constraint; nothing ever clamps `.data`.
    """

    def __init__(self, init: torch.Tensor, minimum: float = 0.0) -> None:
        super().__init__()
        if init.device.type != "meta" and (init < minimum).any():  # (meta tensors have no values)
            raise UsageError(f"initial value {init.min().item():g} is below the floor {minimum:g}")
        self.minimum = float(minimum)
        self.raw = nn.Parameter(torch.sqrt(init + PEDESTAL))

    def bound(self) -> float:
        return math.sqrt(self.minimum + PEDESTAL)

    def forward(self) -> torch.Tensor:
        return nonneg_value(self.raw, self.bound())


def nonneg_value(raw: torch.Tensor, bound: float | None) -> torch.Tensor:
    """The value of a non-negative parameter from its source: `NonNegative`'s raw parameter and bound
    (max(raw, bound)² − pedestal, with `_LowerBound`'s gradient rule), or a fixed buffer (bound None) as is."""
    if bound is None:
        return raw
    ext = _compiled_for(raw)
    if ext is not None and not torch.jit.is_tracing():  # the kernel's own node: no Python per call
        return ext.nonneg_node(raw, bound, PEDESTAL)
    return _NonNegativeValue.apply(raw, bound, PEDESTAL)
