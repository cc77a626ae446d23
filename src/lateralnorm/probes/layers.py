"""Where probes get their layers: a bare norm from a spec, or the norm layers of a trained model captured with
forward hooks on real inputs.

Every probe works on pools of units. A layer's pool is its feature axis: the last axis for layout "last",
axis 1 for "channels_first" (both coincide for a (B, N) input). `pool_view` turns a tensor into rows of one
pool each, (M, N), so statistics never care which layout a layer had.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from lateralnorm.errors import UsageError


@dataclass
class CapturedLayer:
    """One norm module and what it saw: `inputs` (B, ...) and `outputs` (B, ...) on real data."""

    name: str
    module: nn.Module
    inputs: torch.Tensor
    outputs: torch.Tensor

    @property
    def feature_axis(self) -> int:
        return feature_axis(self.module, self.inputs.ndim)


def layout_of(module: nn.Module) -> str:
    """The module's layout ("last" or "channels_first"): its own `layout`, else the first submodule's."""
    for m in module.modules():
        layout = getattr(m, "layout", None)
        if layout in ("last", "channels_first"):
            return layout
    return "last"


def feature_axis(module: nn.Module, ndim: int) -> int:
    """Index of the pooled feature axis for an input of rank `ndim` (non-negative)."""
    if ndim <= 2 or layout_of(module) == "last":
        return ndim - 1
    return 1


def pool_view(x: torch.Tensor, axis: int) -> torch.Tensor:
    """(B, ..., N at `axis`, ...) → (M, N): one row per pool (sample × position)."""
    return x.movedim(axis, -1).reshape(-1, x.shape[axis])


def pool_indices(sample_shape: tuple[int, ...], axis: int) -> torch.Tensor:
    """Flat indices into one sample of shape `sample_shape` (no batch axis), grouped by pool: (P, N).

    `axis` is the feature axis of the batched tensor (so axis - 1 within a sample).
    """
    idx = torch.arange(int(torch.tensor(sample_shape).prod().item())).view(sample_shape)
    return idx.movedim(axis - 1, -1).reshape(-1, sample_shape[axis - 1])


def norm_module_names(model: nn.Module) -> list[str]:
    """Names of the model's outermost norm slots (the rule of `lateralnorm.norms.slots`, shared with the
    models): a module named "...norm..." or a normalization layer by type, e.g. a Hugging Face GPT-2's ln_1."""
    from lateralnorm.norms.slots import norm_slots

    return list(norm_slots(model))


def capture_norm_layers(
    model: nn.Module, inputs: torch.Tensor | Iterator[torch.Tensor], names: list[str] | None = None
) -> list[CapturedLayer]:
    """Run `model` (eval mode, no grad) on `inputs` and record each norm layer's input and output.

    A layer called several times in one forward (a recurrent cell) has its calls concatenated along the batch
    axis when their shapes agree; otherwise only the first call is kept.
    """
    names = norm_module_names(model) if names is None else names
    if not names:
        raise UsageError(
            "the model has no norm layer (no module named '...norm...' and no LayerNorm, RMSNorm, ... by type) to probe; "
            "probe a bare layer instead (lateralnorm probe --norm SPEC --width N)"
        )
    modules = dict(model.named_modules())
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in names}

    def hook_for(name: str):
        def hook(_m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                seen[name].append((args[0].detach().cpu(), out.detach().cpu()))

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batches = [inputs] if isinstance(inputs, torch.Tensor) else inputs
            for xb in batches:
                model(xb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    layers = []
    for n in names:
        calls = seen[n]
        if not calls:
            continue
        shape = calls[0][0].shape[1:]
        same = [c for c in calls if c[0].shape[1:] == shape]
        x = torch.cat([c[0] for c in same])
        z = torch.cat([c[1] for c in same])
        layers.append(CapturedLayer(n, modules[n], x, z))
    return layers


def dtype_of(module: nn.Module) -> torch.dtype:
    """The dtype of a module's first floating parameter or buffer (float32 when it has none)."""
    for t in [*module.parameters(), *module.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def bare_layer(spec: str, width: int, seed: int = 0) -> nn.Module:
    """A freshly built norm layer in eval mode (its initial parameters; seeded for learned κ, β)."""
    from lateralnorm.norms import create_norm

    if width < 2:
        raise UsageError(f"--width must be at least 2 for a pool to normalize over; got {width}")
    torch.manual_seed(seed)
    return create_norm(spec, width).eval()
