"""swap_norms puts a spec's norm in place of every matching norm of an existing model."""

from __future__ import annotations

import torch
from torch import nn

from lateralnorm import create_norm, swap_norms
from lateralnorm.norms import NormChain


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.GELU())
        self.inner = nn.ModuleDict({"deep": nn.Sequential(nn.LayerNorm(d, eps=1e-6))})

    def forward(self, x):
        return self.inner["deep"](self.ff(self.norm1(x)))


class Net(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d), Block(d)])
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.LayerNorm(d, elementwise_affine=False)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_swap_nested_layernorms_and_copy_affine():
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.blocks[1].ff[1].weight.uniform_(0.5, 2)
        net.blocks[1].ff[1].bias.normal_()
    gamma = net.blocks[1].ff[1].weight.clone()
    x = torch.randn(4, 16)
    before = net(x)
    # swapping LN for an exact LN (the dn preset) changes nothing: affine copied, eps kept
    names = swap_norms(net, "dn:preset=ln")
    assert len(names) == 7 and "blocks.1.inner.deep.0" in names and "bn" not in names
    torch.testing.assert_close(net(x), before, atol=1e-5, rtol=1e-5)
    assert torch.equal(net.blocks[1].ff[1].weight.detach(), gamma)
    assert net.head.weight is None  # affine=False carried over
    assert net.blocks[0].inner["deep"][0].opts["beta"] == 1e-6  # eps carried over as LN's β


def test_swap_gelu_before_every_layernorm():
    net = Net()
    swap_norms(net, "gelu>ln")
    assert isinstance(net.blocks[0].norm1, NormChain)
    assert not any(isinstance(m, nn.LayerNorm) for m in net.modules())
    assert net(torch.randn(2, 16)).shape == (2, 16)


def test_swap_batchnorm_with_channels_first_layernorm():
    net = Net()
    swap_norms(net, "ln", match=nn.BatchNorm2d)
    assert net.bn.layout == "channels_first" and net.bn.num_features == 8
    y = net.bn(net.conv(torch.randn(2, 3, 8, 8)))
    ref = create_norm("ln", 8, layout="channels_first")(net.conv(torch.randn(2, 3, 8, 8)))
    assert y.shape == ref.shape


def test_swap_with_predicate_and_dtype():
    net = Net().double()
    names = swap_norms(
        net, "rms", match=lambda name, m: isinstance(m, nn.LayerNorm) and name.endswith("norm1")
    )
    assert names == ["blocks.0.norm1", "blocks.1.norm1"]
    assert net.blocks[0].norm1.weight.dtype == torch.float64
