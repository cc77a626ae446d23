"""Every normalization layer, the registry and the spec grammar. Imports torch only."""

from lateralnorm.norms.base import NonNegative, Norm
from lateralnorm.norms.divisive import PRESETS, DivisiveNorm
from lateralnorm.norms.registry import (
    NormChain,
    create_norm,
    list_norms,
    options_of,
    parse_spec,
    register_norm,
)
from lateralnorm.norms.swap import swap_norms

__all__ = [
    "PRESETS", "DivisiveNorm", "NonNegative", "Norm", "NormChain", "create_norm", "list_norms", "options_of",
    "parse_spec", "register_norm", "swap_norms",
]  # fmt: skip
