"""A small pre-norm Transformer encoder classifier with a swappable norm.

Tokens: a signal (L,) gives L tokens of one value (MNIST-1D positions), a sequence (T, F) T tokens of F
values, an image (C, H, W) non-overlapping p×p patches (p = 4, or 2 for images under 16 pixels).

    h_0 = W_e · tokens + pos                                   (B, N, d),  d = width
    h   = h + Attn(norm1(h));   h = h + MLP(norm2(h))          per block, MLP: d → 2d → act → d
    logits = W_o · mean_tokens(norm_final(h))

Attention has d/16 heads (at least one) and uses scaled_dot_product_attention. The norms are
`blocks[k].norm1`, `blocks[k].norm2` and `norm_final`, each over the d features of every token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lateralnorm.models.common import Act
from lateralnorm.norms import create_norm


def tokenize(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, L) → (B, L, 1); (B, T, F) as is; (B, C, H, W) → (B, H/p · W/p, C·p·p)."""
    if x.dim() == 2:
        return x.unsqueeze(-1)
    if x.dim() == 3:
        return x
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def token_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(tokens, features per token, patch size) for a sample of the given shape."""
    if len(input_shape) == 1:
        return input_shape[0], 1, 1
    if len(input_shape) == 2:
        return input_shape[0], input_shape[1], 1
    c, h, w = input_shape
    patch = 4 if min(h, w) >= 16 else 2
    return (h // patch) * (w // patch), c * patch * patch, patch


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (
            self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )  # (B, h, N, d_h)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d_h)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, norm: str, activation: str) -> None:
        super().__init__()
        self.norm1 = create_norm(norm, dim, layout="last")
        self.attn = SelfAttention(dim, heads)
        self.norm2 = create_norm(norm, dim, layout="last")
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), Act(activation), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.norm1(h))  # (B, N, d)
        return h + self.mlp(self.norm2(h))


class Transformer(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        width: int,
        depth: int,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        tokens, features, self.patch = token_shape(input_shape)
        heads = max(1, width // 16)
        while width % heads:
            heads -= 1
        self.embed = nn.Linear(features, width)
        self.pos = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(width, heads, norm, activation) for _ in range(depth))
        self.norm_final = create_norm(norm, width, layout="last")
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokenize(x, self.patch)) + self.pos  # (B, N, d)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm_final(h).mean(dim=1))  # (B, classes)
