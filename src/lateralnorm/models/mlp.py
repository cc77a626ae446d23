"""Fully connected models: `linear` (logistic regression) and `mlp`.

linear:  logits = W · flatten(x) + b
mlp:     h_0 = flatten(x),  h_k = block_k(h_{k-1}) for k = 1..depth,  logits = W · h_depth + b
         with block = Linear(width) → norm/act in the placement's order (see models.common).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lateralnorm.models.common import NormBlock


class LinearClassifier(nn.Module):
    """Logistic-regression baseline: one affine map of the flattened input, no norm slot."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))  # (B, classes)


class MLP(nn.Module):
    """depth × (Linear → norm/act) then a Linear head; `blocks[i].norm` is the i-th norm slot."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        width: int,
        depth: int,
        norm: str,
        activation: str,
        placement: str,
    ) -> None:
        super().__init__()
        fan_in = math.prod(input_shape)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(NormBlock(nn.Linear(fan_in, width), norm, width, activation, placement))
            fan_in = width
        self.head = nn.Linear(fan_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (B, N_in)
        for block in self.blocks:
            h = block(h)  # (B, width)
        return self.head(h)  # (B, classes)
