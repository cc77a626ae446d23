"""A small causal decoder (GPT-style) over bytes, with every norm slot swappable by spec.

    tokens (B, T) → token + position embedding → depth × block → norm_final → head (tied to the embedding)

    pre-LN  (placement "pre", GPT-2):      x = x + attn(norm1(x));   x = x + mlp(norm2(x));  norm_final at the end
    post-LN (placement "post", Vaswani):   x = norm1(x + attn(x));   x = norm2(x + mlp(x));  no final norm
    no norm in the blocks ("only" is not used; norm "none" makes the LN-free transformer)

Attention is causal multi-head (F.scaled_dot_product_attention, is_causal), heads of 16 dimensions (at least
one); the MLP is width → 4·width → width with GELU. The norm slots are `blocks[k].norm1`, `blocks[k].norm2` and
`norm_final` (an act>LN spec such as "relu>ln" puts the activation inside the slot). Output: logits (B, T, vocab).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lateralnorm.norms import create_norm


class Block(nn.Module):
    def __init__(self, width: int, heads: int, norm: str, pre: bool) -> None:
        super().__init__()
        self.pre, self.heads = pre, heads
        self.norm1 = create_norm(norm, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = create_norm(norm, width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (
            self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        )  # 3 × (B, h, T, d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, d)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.fc(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        if self.pre:
            x = x + self.attend(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attend(x))
        return self.norm2(x + self.mlp(x))


class CausalLM(nn.Module):
    """depth blocks of width units over a context of `context` tokens; vocab outputs per position."""

    def __init__(
        self, vocab: int, context: int, *, width: int, depth: int, norm: str, placement: str
    ) -> None:
        super().__init__()
        heads = max(1, width // 16)
        while width % heads:
            heads -= 1
        pre = placement != "post"
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads, norm, pre) for _ in range(depth))
        self.norm_final = create_norm(norm, width) if pre else None  # post-LN ends on a block's norm2
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied
        for m in self.modules():  # GPT-2's initialization
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for block in self.blocks:  # residual projections scaled by depth
            nn.init.normal_(block.proj.weight, 0.0, 0.02 / math.sqrt(2 * depth))
            nn.init.normal_(block.out.weight, 0.0, 0.02 / math.sqrt(2 * depth))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) int64
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        if self.norm_final is not None:
            x = self.norm_final(x)
        return self.head(x)  # (B, T, vocab)
