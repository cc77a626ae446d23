"""Every normalization layer, the registry and the spec grammar. Imports torch only."""

from lateralnorm.norms.base import NonNegative, Norm
from lateralnorm.norms.divisive import PRESETS, DivisiveNorm
from lateralnorm.norms.fold import FrozenScaleNorm, fold_gpt2, fold_into, freeze_scale, unfreeze_scale
from lateralnorm.norms.registry import (
    NormChain,
    create_norm,
    list_norms,
    options_of,
    parse_spec,
    register_norm,
)
from lateralnorm.norms.slots import norm_slots
from lateralnorm.norms.swap import swap_norms

__all__ = [
    "PRESETS", "DivisiveNorm", "NonNegative", "Norm", "NormChain", "create_norm", "list_norms", "options_of",
    "parse_spec", "register_norm", "swap_norms", "norm_slots", "fold_into", "fold_gpt2", "freeze_scale",
    "unfreeze_scale", "FrozenScaleNorm",
]  # fmt: skip
