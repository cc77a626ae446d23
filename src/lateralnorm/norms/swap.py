"""swap_norms: put any spec's norm in place of the norms of an existing model (timm, Hugging Face, yours)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lateralnorm.errors import UsageError
from lateralnorm.norms.registry import create_norm, options_of, parse_spec

Match = type | tuple[type, ...] | Callable[[str, nn.Module], bool]


def _width_and_layout(name: str, m: nn.Module) -> tuple[int, str]:
    if isinstance(m, nn.LayerNorm | nn.RMSNorm):
        shape = tuple(m.normalized_shape)
        if len(shape) != 1:
            raise UsageError(f"{name}: can only swap a norm over one axis; normalized_shape is {shape}")
        return shape[0], "last"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return m.num_features, "channels_first"
    if isinstance(m, nn.GroupNorm):
        return m.num_channels, "channels_first"
    for attr in ("num_features", "normalized_shape", "dim", "hidden_size"):
        v = getattr(m, attr, None)
        if isinstance(v, int):
            return v, getattr(m, "layout", "last")
        if isinstance(v, tuple | list | torch.Size) and len(v) == 1:
            return int(v[0]), "last"
    w = getattr(m, "weight", None)
    if isinstance(w, torch.Tensor) and w.ndim == 1:
        return w.numel(), "last"
    raise UsageError(f"{name}: cannot tell the width of {type(m).__name__}; pass a match for standard norms")


def _copy_affine(old: nn.Module, new: nn.Module) -> None:
    parts = list(new) if isinstance(new, nn.Sequential) else [new]
    for part in parts:
        w, b = getattr(part, "weight", None), getattr(part, "bias", None)
        if isinstance(w, torch.Tensor) or isinstance(b, torch.Tensor):
            with torch.no_grad():
                ow, ob = getattr(old, "weight", None), getattr(old, "bias", None)
                if isinstance(w, torch.Tensor) and isinstance(ow, torch.Tensor) and ow.shape == w.shape:
                    w.copy_(ow)
                if isinstance(b, torch.Tensor) and isinstance(ob, torch.Tensor) and ob.shape == b.shape:
                    b.copy_(ob)
            return


def swap_norms(model: nn.Module, spec: str, match: Match = nn.LayerNorm, **overrides) -> list[str]:
    """Replace every module of `model` matching `match` (a type, tuple of types, or predicate(name, module))
    with `create_norm(spec, width, layout)`, copying γ/β where the new norm has them, on the old module's
    device and dtype. Returns the qualified names that were replaced (the model is changed in place)."""
    if isinstance(match, type | tuple):
        types = match

        def pred(_: str, m: nn.Module) -> bool:
            return isinstance(m, types)
    else:
        pred = match
    targets = [(name, m) for name, m in model.named_modules() if name and pred(name, m)]
    accepted = {key for name, _ in parse_spec(spec) for key in options_of(name)}
    swapped = []
    for name, old in targets:
        width, layout = _width_and_layout(name, old)
        kw = dict(overrides)
        # carry the old module's eps and affine over where some part of the spec takes them
        if "eps" not in kw and "eps" in accepted and isinstance(getattr(old, "eps", None), float):
            kw["eps"] = old.eps
        if "affine" not in kw and "affine" in accepted and getattr(old, "weight", 0) is None:
            kw["affine"] = False
        new = create_norm(spec, width, layout=layout, **kw)
        _copy_affine(old, new)
        ref = next(iter(old.parameters()), None)
        ref = ref if ref is not None else next(iter(old.buffers()), None)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
        swapped.append(name)
    return swapped
