"""Which modules of a model are its norm slots: the one rule the models, the probes and `swap_norms` users share.

A module is a norm slot when its own name (the last part of its qualified name) contains "norm" (every slot
of lateralnorm's models: `blocks[0].norm`, `cells[0].norm`, `norm_final`), or when it is a normalization layer
by type (torch's LayerNorm, RMSNorm, GroupNorm, BatchNorm, InstanceNorm, LocalResponseNorm, any lateralnorm
norm, a frozen-scale norm) — so the LayerNorms of a Hugging Face GPT-2 (`ln_1`, `ln_2`, `ln_f`) count too.
Only the outermost slot counts: the parts of a chain such as `gelu>ln` are not slots of their own.
"""

from __future__ import annotations

from torch import nn

from lateralnorm.norms.base import Norm
from lateralnorm.norms.registry import NormChain

NORM_TYPES: tuple[type, ...] = (
    nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.LocalResponseNorm,
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, Norm, NormChain,
)  # fmt: skip


def is_norm_slot(name: str, module: nn.Module) -> bool:
    if not name or isinstance(module, nn.ModuleList | nn.ModuleDict):
        return False
    leaf = name.rsplit(".", 1)[-1].lower()
    return "norm" in leaf or isinstance(module, NORM_TYPES) or type(module).__name__ == "FrozenScaleNorm"


def norm_slots(model: nn.Module) -> dict[str, nn.Module]:
    """name → module of every outermost norm slot, in module order."""
    out: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if any(name.startswith(p + ".") for p in out):
            continue
        if is_norm_slot(name, module):
            out[name] = module
    return out
