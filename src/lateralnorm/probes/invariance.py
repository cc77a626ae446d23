"""Invariance: how much does an output change when its input is scaled by c or shifted by a constant?

For a layer f and inputs x (B, ...), with s the RMS of x over all entries:

    scale  R(c) = ‖f(c·x) − f(x)‖ / ‖f(x)‖          c ∈ SCALES  (contrast invariance of divisive norms)
    shift  S(a) = ‖f(x + a·s) − f(x)‖ / ‖f(x)‖       a ∈ SHIFTS  (LayerNorm removes the mean: S ≡ 0)

norms over all entries (Frobenius). LayerNorm with ε = 0 gives R ≡ 0 and S ≡ 0 exactly; RMSNorm gives
R ≡ 0 only. For a trained model the same is measured on its logits, with the test accuracy beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lateralnorm.probes.layers import CapturedLayer, dtype_of

SCALES: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
SHIFTS: tuple[float, ...] = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def invariance_fn(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scales: tuple[float, ...] = SCALES,
    shifts: tuple[float, ...] = SHIFTS,
    labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """R(c) and S(a) of `fn` on x; with `labels`, also the accuracy of argmax fn(·) at each c and a."""
    rms = float(x.square().mean().sqrt())
    with torch.no_grad():
        base = fn(x)
        out: dict[str, Any] = {"scales": list(scales), "shifts": list(shifts), "input_rms": rms}
        scaled = [fn(c * x) for c in scales]
        shifted = [fn(x + a * rms) for a in shifts]
    out["scale_change"] = [_rel(z, base) for z in scaled]
    out["shift_change"] = [_rel(z, base) for z in shifted]
    out["scale_change_max"] = max(out["scale_change"])
    out["shift_change_max"] = max(out["shift_change"])
    if labels is not None:
        acc = lambda z: float((z.argmax(-1) == labels).double().mean())  # noqa: E731
        out["acc"] = acc(base)
        out["scale_acc"] = [acc(z) for z in scaled]
        out["shift_acc"] = [acc(z) for z in shifted]
    return out


def invariance_bare(layer: nn.Module, width: int, samples: int = 256, seed: int = 0) -> dict[str, Any]:
    """Invariance of a bare layer for Gaussian inputs (samples, width)."""
    gen = torch.Generator().manual_seed(seed)
    return invariance_fn(layer.eval(), torch.randn(samples, width, generator=gen, dtype=dtype_of(layer)))


def invariance(
    layers: list[CapturedLayer],
    model: nn.Module | None = None,
    inputs: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Per captured norm layer (on the inputs it saw) and, given the model, on its logits and accuracy."""
    out: dict[str, Any] = {"layers": {}}
    for layer in layers:
        layer.module.eval()
        out["layers"][layer.name] = invariance_fn(layer.module, layer.inputs)
    if model is not None and inputs is not None:
        was = model.training
        model.eval()
        try:
            out["model"] = invariance_fn(model, inputs, labels=labels)
        finally:
            model.train(was)
    return out
