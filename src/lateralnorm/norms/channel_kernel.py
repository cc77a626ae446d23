"""Channels-first LayerNorm and RMSNorm on CPU without the permute copies.

(B, C, ...) is normalized over C at every position, with a per-channel affine (ConvNeXt's channel LN):

    t = x − mean_C x  (LN; RMS: t = x),   r = 1 / sqrt(mean_C t² + ε),   out = w_c · t · r + b_c

The compiled CPU kernel (`csrc/dn_rows.cpp`, `chan_forward` / `chan_backward`) sweeps along the contiguous
positions for each channel, so it needs neither the two permute copies of x nor those of the gradient that
the route permute → nn.LayerNorm → permute pays (0.4-0.5x its time at (64, 64, 28, 28); benchmarks/norms.py).
Tested equal to that route in float64, values and gradients. Double backward (create_graph) and torch.compile
take the reference route instead.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lateralnorm.norms import cpu_kernel
from lateralnorm.norms.partials import partial_grads


def reference(
    x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, eps: float, center: bool
) -> torch.Tensor:
    """The permute route: channels last, torch's own layer, channels back."""
    last = x.movedim(1, -1)
    n = (x.shape[1],)
    out = F.layer_norm(last, n, w, b, eps) if center else F.rms_norm(last, n, w, eps)
    return out.movedim(-1, 1)


class ChannelRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, w, b, eps, center):  # noqa: ANN001, ANN205
        ext = cpu_kernel.extension()
        x3 = x.reshape(x.shape[0], x.shape[1], -1).contiguous()  # (B, C, P)
        empty = x.new_empty(0)
        out, mean, rstd = ext.chan_forward(
            x3, empty if w is None else w, empty if b is None else b, eps, center
        )
        ctx.save_for_backward(x, x3, mean, rstd, w, b)
        ctx.eps, ctx.center = eps, center
        return out.view(x.shape)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        x, x3, mean, rstd, w, b = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference route instead
            gx, gw, gb = partial_grads(
                lambda x, w, b: reference(x, w, b, ctx.eps, ctx.center), (x, w, b), need[:3], g
            )
            return gx, gw, gb, None, None
        gx, gw, gb = cpu_kernel.extension().chan_backward(
            g.reshape(x3.shape).contiguous(), x3, mean, rstd, x3.new_empty(0) if w is None else w, ctx.center
        )
        return (gx.view(x.shape) if need[0] else None, gw if w is not None and need[1] else None,
                gb if b is not None and need[2] else None, None, None)  # fmt: skip


def applies(x: torch.Tensor, w: torch.Tensor | None) -> bool:
    """(B, C, ...) CPU float32/float64 input with at least one position axis, parameters of its dtype, the
    kernel built, not under torch.compile."""
    return (
        x.ndim > 2
        and not torch.compiler.is_compiling()
        and (w is None or w.dtype == x.dtype)
        and cpu_kernel.applies_to(x)
    )


def channel_norm(
    x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, eps: float, center: bool
) -> torch.Tensor:
    """LN (center) or RMS over axis 1 of x with a per-channel affine: the kernel where it applies."""
    if applies(x, w):
        return ChannelRows.apply(x, w, b, eps, center)
    return reference(x, w, b, eps, center)
