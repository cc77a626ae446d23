"""Channels-first `dn` layers take their rows by the compiled kernel's tile transpose (`norms/layout.py`): a copy,
so every output and gradient equals the generic route's (movedim, torch's strided copies) to the bit."""

from __future__ import annotations

import pytest
import torch

from lateralnorm import create_norm
from lateralnorm.norms import cpu_kernel, layout
from lateralnorm.norms.base import Norm

pytestmark = pytest.mark.skipif(
    not cpu_kernel.available(), reason="the compiled CPU kernel is not built here"
)

SPECS = [
    "dn",
    "dn:kappa=band:3",
    "dn:alpha=1.5,r=0.75,kappa=self",
    "dn:learn_alpha=true,alpha=1.5",
    "dn:preset=lrn",
    "gdn",
    "dn:kappa=full",
    "dn:kappa=lowrank:4",
]


@pytest.mark.parametrize("shape", [(64, 8, 8), (3, 13, 29), (5, 8, 17), (2, 7, 8), (1, 1, 1), (2, 0, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_tile_transpose_is_torchs_transpose(shape, dtype):
    """Whole 8×8 (4×4) tiles, the edges past them, one-element and empty planes."""
    x = torch.randn(*shape).to(dtype)
    got = cpu_kernel.extension().transpose_last2(x)
    assert got.is_contiguous() and torch.equal(got, x.transpose(1, 2))


def test_the_tile_transpose_refuses_what_it_cannot_take():
    ext = cpu_kernel.extension()
    with pytest.raises(RuntimeError, match="contiguous 3-D"):
        ext.transpose_last2(torch.randn(4, 5, 6).transpose(1, 2))
    with pytest.raises(RuntimeError, match="contiguous 3-D"):
        ext.transpose_last2(torch.randn(4, 5))


def _run(m: torch.nn.Module, x: torch.Tensor, g: torch.Tensor, generic: bool, inplace: bool = False):
    x = x.detach().clone().requires_grad_()
    out = Norm.forward(m, x) if generic else m(x)
    if inplace:
        out = out.relu_()
    grads = torch.autograd.grad(out, (x, *m.parameters()), g)
    return out.detach(), grads


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channels_first_rows_give_the_generic_routes_bits(spec, dtype):
    torch.manual_seed(0)
    m = create_norm(spec, 13, layout="channels_first", dtype=dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.rand_like(p) * 0.2)
    x = torch.randn(3, 13, 5, 7, dtype=dtype) * 1.5
    assert layout.applies_to(x)
    for g in (torch.randn_like(x), torch.randn_like(x).contiguous(memory_format=torch.channels_last)):
        for inplace in (False, True):  # an in-place op after the layer (nn.ReLU(inplace=True)) keeps working
            fast, ref = _run(m, x, g, False, inplace), _run(m, x, g, True, inplace)
            assert torch.equal(fast[0], ref[0])
            assert fast[0].stride() == ref[0].stride()  # the same channels_last-strided view of the rows
            for a, b in zip(fast[1], ref[1]):
                assert torch.equal(a, b), spec


def test_the_fast_route_is_taken_and_double_backward_still_works(monkeypatch):
    calls = []
    real = layout._transpose
    monkeypatch.setattr(layout, "_transpose", lambda t: calls.append(t.shape) or real(t))
    m = create_norm("gdn", 8, layout="channels_first", dtype=torch.float64)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    m(x).backward(torch.randn(2, 8, 3, 4, dtype=torch.float64))
    assert len(calls) == 3  # the input, the output's gradient, the input's gradient
    calls.clear()
    m(x).sum().backward()  # an expanded gradient (not contiguous) passes the hook as it is
    assert len(calls) == 2
    x2 = torch.randn(2, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: m(v), (x2,))
    (gx,) = torch.autograd.grad(m(x2).pow(2).sum(), x2, create_graph=True)
    (gg,) = torch.autograd.grad(gx.sum(), x2)
    (gx_ref,) = torch.autograd.grad(Norm.forward(m, x2).pow(2).sum(), x2, create_graph=True)
    (gg_ref,) = torch.autograd.grad(gx_ref.sum(), x2)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(gg, gg_ref, rtol=1e-9, atol=1e-9)


def test_other_inputs_take_the_generic_route():
    m = create_norm("dn", 8, layout="channels_first")
    assert not layout.applies_to(torch.randn(2, 8, 3, 4).contiguous(memory_format=torch.channels_last))
    assert not layout.applies_to(torch.randn(2, 8, 3, 4).half())
    assert not layout.applies_to(torch.randn(2, 8))
    x = torch.randn(2, 8, 3, 4).contiguous(memory_format=torch.channels_last)
    assert torch.equal(m(x), Norm.forward(m, x))
