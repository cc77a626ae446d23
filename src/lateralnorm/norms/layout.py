"""Channels-first tensors to the rows a features-last layer computes on, and their gradients back, on CPU
without torch's strided permute copies.

A `dn` layer used channels-first on (B, C, H, W) computes on rows (B·H·W, C). From a contiguous NCHW input the
generic route (`x.movedim(1, -1)`, then `.contiguous()` where the kernel needs rows) pays torch's strided copy,
3–6× a plain clone on these CPUs, three times a step: the input to rows, the output's gradient to rows, the
input's gradient back to NCHW (the output itself is a free channels_last-strided view). `to_rows` and
`rows_grad_hook` do the first two with the compiled kernel's tile transpose (`transpose_last2`, AVX 8×8 tiles)
and hand back the third through it too. They copy, so every value and gradient is the same to the bit; the
output is the same view as before, so what follows the layer sees the same tensor.
"""

from __future__ import annotations

from typing import Any

import torch

from lateralnorm.norms import cpu_kernel


def applies_to(x: torch.Tensor) -> bool:
    """Whether `to_rows` takes x: a contiguous, non-empty (B, C, ...) CPU float tensor, the kernel loaded, eager
    mode (an empty batch takes the generic route, which passes it through)."""
    return (
        x.dim() > 2
        and x.numel() > 0
        and x.is_contiguous()
        and cpu_kernel.applies_to(x)
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
    )


def _transpose(x3: torch.Tensor) -> torch.Tensor:
    """(B, M, N) → (B, N, M), contiguous, by the kernel's tile transpose."""
    return cpu_kernel.extension().transpose_last2(x3)  # type: ignore[union-attr]


class _ToRows(torch.autograd.Function):
    """(B, C, *S) contiguous → (B, *S, C) contiguous, and the gradient back to (B, C, *S) contiguous."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        ctx.shape = x.shape
        return _transpose(x.reshape(b, c, -1)).view(b, *x.shape[2:], c)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # create_graph: differentiable ops (torch's copy; the same values)
            return g.movedim(-1, 1).contiguous()
        b, c = ctx.shape[:2]
        return _transpose(g.reshape(b, -1, c).contiguous()).view(ctx.shape)


def to_rows(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, *S) as a contiguous (B, *S, C) tensor: the values of `x.movedim(1, -1)` (see `applies_to`)."""
    return _ToRows.apply(x)


def rows_grad_hook(g: torch.Tensor | None) -> torch.Tensor | None:
    """A hook for a channels-first output that is a view of rows (`rows.movedim(-1, 1)`): its gradient g, when
    contiguous NCHW, comes back with the same values in channels_last strides, so the rows' gradient is a free
    view instead of torch's strided copy. Anything else (or a double backward) passes through as it is."""
    if (
        g is None
        or torch.is_grad_enabled()
        or g.dim() < 3
        or not g.is_contiguous()
        or not cpu_kernel.applies_to(g)
    ):
        return g  # (None: an undefined gradient, as gradcheck's probes hand over)
    b, c = g.shape[:2]
    return _transpose(g.reshape(b, c, -1)).view(b, *g.shape[2:], c).movedim(-1, 1)
