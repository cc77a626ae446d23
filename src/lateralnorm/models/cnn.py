"""Convolutional models with a norm after every convolution (channels-first layout).

    cnn   (images (C, H, W)):  depth × [Conv3×3(width, pad 1) → norm/act → MaxPool2 while H, W ≥ 8]
                               → flatten → Linear(classes)
    cnn1d (signals (L,) or (C, L)):  depth × [Conv1d k5 stride 2 pad 2 (width) → norm/act]
                               → flatten → Linear(classes)        (MNIST-1D: 40 → 20 → 10 → 5)

The norm sees (B, C, H, W) or (B, C, L): "ln" is then LayerNorm of each pixel across its channels
(ConvNeXt style), "bn"/"gn"/"ln_chw"/"lrn"/"dn" pool as their docstrings say.
"""

from __future__ import annotations

import torch
from torch import nn

from lateralnorm.models.common import NormBlock


class CNN(nn.Module):
    """2-D CNN; `blocks[i].norm` is the norm of the i-th conv block."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width: int,
        depth: int,
        norm: str,
        activation: str,
        placement: str,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.blocks = nn.ModuleList()
        self.pools = nn.ModuleList()
        for _ in range(depth):
            conv = nn.Conv2d(c, width, kernel_size=3, padding=1)
            self.blocks.append(NormBlock(conv, norm, width, activation, placement, layout="channels_first"))
            pool = h >= 8 and w >= 8
            self.pools.append(nn.MaxPool2d(2) if pool else nn.Identity())
            c, h, w = width, (h // 2 if pool else h), (w // 2 if pool else w)
        self.head = nn.Linear(c * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x  # (B, C, H, W)
        for block, pool in zip(self.blocks, self.pools):
            h = pool(block(h))  # (B, width, H', W')
        return self.head(h.flatten(1))  # (B, classes)


class CNN1d(nn.Module):
    """1-D CNN for signals; `blocks[i].norm` is the norm of the i-th conv block."""

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
        c, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
        self.in_channels = c
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            conv = nn.Conv1d(c, width, kernel_size=5, stride=2, padding=2)
            self.blocks.append(NormBlock(conv, norm, width, activation, placement, layout="channels_first"))
            c, length = width, (length - 1) // 2 + 1
        self.head = nn.Linear(c * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], self.in_channels, -1)  # (B, C, L)
        for block in self.blocks:
            h = block(h)  # (B, width, L')
        return self.head(h.flatten(1))  # (B, classes)
