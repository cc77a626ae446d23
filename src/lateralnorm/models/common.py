"""Pieces every model shares: the activation by name and the layer → norm → activation block.

A block's order is set by the placement (the three variants the project compares):

    post:  z = act(norm(layer(x)))     Linear/Conv → norm → act (the usual order)
    pre:   z = norm(act(layer(x)))     Linear/Conv → act → norm (nonlinearity before the norm)
    only:  z = norm(layer(x))          Linear/Conv → norm (the norm is the only nonlinearity)

Norm slots are attributes called `norm` so probes can find them by module name. With placement `pre` the
activation is part of the slot: `norm` is the composed spec "act>norm" (e.g. "relu>ln"), so a probe that drives
the slot's input measures the whole unit the thread proposes (the activation, then the normalization).
"""

from __future__ import annotations

import torch
from torch import nn

from lateralnorm.choices import Placement, choices  # noqa: F401 (Placement re-exported)
from lateralnorm.errors import UsageError, did_you_mean
from lateralnorm.norms import create_norm
from lateralnorm.norms.activations import ACTIVATIONS

# the norm registry's activations (relu, gelu, elu, silu, softplus, abs, square) plus three the models add
ACT_FUNCTIONS = {
    **{name: fn for name, (fn, _) in ACTIVATIONS.items()},
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}

# where the norm sits in a block (module docstring); the choice list lives in lateralnorm.choices
PLACEMENTS: tuple[str, ...] = choices("placement")

# activations a norm spec can hold, so placement "pre" builds one slot "act>norm" (tanh there is the
# "tanh" norm, γ·tanh + b with affine off by default: plain tanh)
SLOT_ACTIVATIONS = (*ACTIVATIONS, "tanh")


class Act(nn.Module):
    """Element-wise activation by name (no parameters)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        check_activation(name)
        self.name = name
        self.fn = ACT_FUNCTIONS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def check_activation(name: str) -> str:
    if name not in ACT_FUNCTIONS:
        raise UsageError(
            f"unknown activation {name!r}{did_you_mean(name, ACT_FUNCTIONS)} "
            f"(known: {', '.join(ACT_FUNCTIONS)})"
        )
    return name


class NormBlock(nn.Module):
    """layer, then norm and activation in the order the placement gives (see module docstring).

    layer: a Linear (x (B, N_in) or (B, T, N_in)) or a Conv (x (B, C, ...)); width: its output units;
    layout: "last" for Linear outputs, "channels_first" for conv outputs.
    """

    def __init__(
        self, layer: nn.Module, norm: str, width: int, activation: str, placement: str, layout: str = "last"
    ) -> None:
        super().__init__()
        if placement not in PLACEMENTS:
            raise UsageError(f"placement must be one of {', '.join(PLACEMENTS)}; got {placement!r}")
        self.placement = placement
        self.layer = layer
        if placement == "pre" and activation in SLOT_ACTIVATIONS:  # one slot: "relu>ln"
            self.norm = create_norm(f"{activation}>{norm}", width, layout=layout)
            self.act = Act("identity")
        else:
            self.norm = create_norm(norm, width, layout=layout)
            self.act = Act("identity" if placement == "only" else activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x)
        if self.placement == "pre":
            return self.norm(self.act(y))
        return self.act(self.norm(y))

    def extra_repr(self) -> str:
        return f"placement={self.placement}"
