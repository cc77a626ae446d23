"""Element-wise activations usable in norm specs ("gelu>ln", "ln>relu"). They act on each unit alone."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lateralnorm.norms.base import Norm

ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "relu": (torch.relu, "max(0, y)"),
    "gelu": (F.gelu, "y·Φ(y) (exact erf form)"),
    "elu": (F.elu, "y if y > 0 else e^y − 1"),
    "silu": (F.silu, "y·sigmoid(y)"),
    "softplus": (F.softplus, "log(1 + e^y)"),
    "abs": (torch.abs, "|y|"),
    "square": (torch.square, "y²"),
}


class Activation(Norm):
    """An element-wise activation with the norm interface (no options, no parameters, any shape)."""

    OPTIONS = {}
    fn: Callable[[torch.Tensor], torch.Tensor]

    def build(self) -> None:  # no parameters
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return type(self).fn(x)

    def extra_repr(self) -> str:
        return ""


def make_activation(name: str) -> type[Activation]:
    fn, formula = ACTIVATIONS[name]
    cls = type(f"Act_{name}", (Activation,), {"name": name, "fn": staticmethod(fn), "__doc__": formula})
    return cls
