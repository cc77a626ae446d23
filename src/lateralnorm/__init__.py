"""lateralnorm: normalization layers as lateral inhibition.

from lateralnorm import create_norm
norm = create_norm("gelu>ln", 256)          # GELU, then LayerNorm over 256 features
"""

from __future__ import annotations

__version__ = "0.1.0"

from lateralnorm.norms import create_norm, list_norms, register_norm, swap_norms  # noqa: E402

__all__ = ["__version__", "create_norm", "list_norms", "register_norm", "swap_norms"]
