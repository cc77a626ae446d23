"""The interpretability moves on a trained model's LayerNorms (TransformerLens does both): fold γ, β into the
next linear layer, and freeze the denominator on a batch so the network is linear in the residual stream.

    fold_into(ln, [next_linear, ...])      LN(x)·W + b  →  LN₀(x)·W' + b',  W' = diag(γ)·W, b' = b + β·W
    fold_gpt2(model)                       every ln_1 → attn.c_attn, ln_2 → mlp.c_fc, ln_f → lm_head of a
                                           Hugging Face GPT-2 (the tied head is untied first)
    freeze_scale(model, inputs)            each LayerNorm / RMSNorm divides by the scale it measured on
                                           `inputs` (per sample and position) instead of its input's own:
                                           z = γ·(x − mean x)/σ_frozen + β is then linear (affine) in x

Works on any `nn.Module` with torch's nn.LayerNorm / nn.RMSNorm and nn.Linear, and on Hugging Face's Conv1D
(a linear layer whose weight is stored (in, out)), recognized by name so `transformers` is never imported.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from lateralnorm.errors import UsageError

__all__ = ["FrozenScaleNorm", "fold_gpt2", "fold_into", "freeze_scale", "unfreeze_scale"]


def _in_out_weight(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as (in, out), a view that writes through."""
    if isinstance(layer, nn.Linear):
        return layer.weight.T
    if type(layer).__name__ == "Conv1D" and getattr(layer, "weight", None) is not None:
        return layer.weight  # Hugging Face: y = x @ W + b, W (in, out)
    raise UsageError(f"cannot fold into {type(layer).__name__}: give nn.Linear or Hugging Face Conv1D layers")


@torch.no_grad()
def fold_into(norm: nn.Module, layers: Iterable[nn.Module]) -> None:
    """Fold `norm`'s γ, β into every layer that reads its output (in place); the norm keeps γ = 1, β = 0.

    For y = LN₀(x) ⊙ γ + β followed by out = y·W + b (W as (in, out)): out = LN₀(x)·(diag(γ)·W) + (b + β·W)."""
    if not isinstance(norm, nn.LayerNorm | nn.RMSNorm):
        raise UsageError(f"fold_into: {type(norm).__name__} is not nn.LayerNorm or nn.RMSNorm")
    gamma = norm.weight if norm.weight is not None else None
    beta = getattr(norm, "bias", None)
    layers = list(layers)
    if not layers:
        raise UsageError("fold_into: name at least one layer that reads the norm's output")
    for layer in layers:
        w = _in_out_weight(layer)  # (in, out)
        if w.shape[0] != norm.normalized_shape[-1]:
            raise UsageError(
                f"fold_into: {type(layer).__name__} takes {w.shape[0]} inputs, the norm gives {norm.normalized_shape[-1]}"
            )
        if beta is not None:
            shift = beta @ w  # (out,)
            if layer.bias is None:
                layer.bias = nn.Parameter(shift.clone())
            else:
                layer.bias += shift
        if gamma is not None:
            w.mul_(gamma[:, None])
    if gamma is not None:
        gamma.fill_(1.0)
    if beta is not None:
        beta.zero_()


def fold_gpt2(model: nn.Module) -> list[str]:
    """Fold every LayerNorm of a Hugging Face GPT-2 (GPT2Model or GPT2LMHeadModel) into the layers that read it;
    a head tied to the token embedding is untied first (folding changes it). Returns the folded norms' names."""
    base = getattr(model, "transformer", model)
    blocks = getattr(base, "h", None)
    if blocks is None or not hasattr(base, "ln_f"):
        raise UsageError("fold_gpt2: not a Hugging Face GPT-2 model (no transformer.h / ln_f)")
    folded = []
    for i, block in enumerate(blocks):
        fold_into(block.ln_1, [block.attn.c_attn])
        fold_into(block.ln_2, [block.mlp.c_fc])
        folded += [f"h.{i}.ln_1", f"h.{i}.ln_2"]
    head = getattr(model, "lm_head", None)
    if head is not None:
        if head.weight is getattr(base.wte, "weight", None):
            head.weight = nn.Parameter(head.weight.detach().clone())
            if hasattr(model, "config"):
                model.config.tie_word_embeddings = False
        fold_into(base.ln_f, [head])
        folded.append("ln_f")
    return folded


class FrozenScaleNorm(nn.Module):
    """A LayerNorm / RMSNorm whose divisor is fixed to the one it measured on a batch: affine in its input.

    z = γ ⊙ (x − mean(x)) / s + β  (LayerNorm; RMSNorm: no centering), s of shape (..., 1) as measured."""

    def __init__(self, norm: nn.LayerNorm | nn.RMSNorm, scale: torch.Tensor) -> None:
        super().__init__()
        self.inner = norm
        self.center = isinstance(norm, nn.LayerNorm)
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[:-1] != self.scale.shape[:-1]:
            raise UsageError(
                f"FrozenScaleNorm: frozen on inputs of shape {tuple(self.scale.shape[:-1])} (+ features), got "
                f"{tuple(x.shape)}; freeze again on this batch"
            )
        y = x - x.mean(-1, keepdim=True) if self.center else x
        z = y / self.scale
        if self.inner.weight is not None:
            z = z * self.inner.weight
        if getattr(self.inner, "bias", None) is not None:
            z = z + self.inner.bias
        return z


def _scale_of(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
    if isinstance(norm, nn.LayerNorm):
        return (x.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
    return (x.square().mean(-1, keepdim=True) + eps).sqrt()


@torch.no_grad()
def freeze_scale(model: nn.Module, *inputs: object, **kw: object) -> list[str]:
    """Run `model(*inputs, **kw)` once, then replace each nn.LayerNorm / nn.RMSNorm by a FrozenScaleNorm with
    the divisor it computed there (in place). On those inputs the outputs are unchanged; every norm is now an
    affine map, so the network is linear in the residual stream for attribution. Returns the frozen names."""
    targets = {n: m for n, m in model.named_modules() if isinstance(m, nn.LayerNorm | nn.RMSNorm)}
    if not targets:
        raise UsageError("freeze_scale: the model has no nn.LayerNorm or nn.RMSNorm")
    scales: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            scales.setdefault(name, _scale_of(module, args[0]))

        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in targets.items()]
    try:
        model(*inputs, **kw)
    finally:
        for h in handles:
            h.remove()
    for name, scale in scales.items():
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, FrozenScaleNorm(targets[name], scale))
    return list(scales)


def unfreeze_scale(model: nn.Module) -> int:
    """Put every FrozenScaleNorm's original norm back; returns how many."""
    frozen = [(n, m) for n, m in model.named_modules() if isinstance(m, FrozenScaleNorm)]
    for name, m in frozen:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, m.inner)
    return len(frozen)
