"""The hand-written backward of dn (O(N) κ) equals autograd through the plain formula."""

from __future__ import annotations

import pytest
import torch

from lateralnorm import create_norm
from lateralnorm.norms.dn_kernel import window_sum

CONFIGS = [
    "dn",
    "dn:kappa=self",
    "dn:kappa=band:2",
    "dn:kappa=band,size=4",
    "dn:fn=signed,center=true,r=0.5,alpha=2",
    "dn:fn=signed,alpha=1.5,r=0.7",
    "dn:alpha=3,p=1",
    "dn:alpha=0.8,r=1.3,p=0.6",
    "dn:preset=ln",
    "dn:preset=rms",
    "dn:preset=lrn",
    "dn:kappa=uniform,learn_kappa=false,learn_beta=false,affine=false",
]


@pytest.mark.parametrize("spec", CONFIGS)
def test_fused_equals_formula(spec):
    torch.manual_seed(0)
    fused = create_norm(spec, 11, dtype=torch.float64)
    plain = create_norm(
        spec + ",fused=false" if ":" in spec else spec + ":fused=false", 11, dtype=torch.float64
    )
    plain.load_state_dict(fused.state_dict())
    with torch.no_grad():  # move every parameter off its initial value
        for a, b in zip(fused.parameters(), plain.parameters()):
            a.add_(0.1 * torch.rand_like(a))
            b.copy_(a)
    x = torch.randn(3, 5, 11, dtype=torch.float64) * 2
    x[0, 0] = 0.0  # a row of exact zeros (ψ' at 0)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fused(xa), plain(xb)
    torch.testing.assert_close(ya, yb, atol=1e-12, rtol=1e-10)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-10, rtol=1e-8)
    for (name, pa), pb in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-10, rtol=1e-8, msg=name)


@pytest.mark.parametrize("before, after", [(2, 1), (0, 3), (20, 20), (12, 30)])
def test_window_sum_matches_loop_and_keeps_precision(before, after):
    v = torch.rand(4, 9, dtype=torch.float64)
    w = window_sum(v, before, after)
    for i in range(9):
        assert torch.allclose(w[:, i], v[:, max(0, i - before) : i + after + 1].sum(-1))
    # one huge entry does not swamp the small windows far from it (float32 in)
    x = torch.ones(1, 64)
    x[0, 0] = 1e8
    assert torch.equal(window_sum(x, 1, 1)[0, 10:63], torch.full((53,), 3.0))


@pytest.mark.parametrize("before, after", [(20, 20), (41, 41), (5, 30)])
def test_window_sum_keeps_each_wide_window_to_its_own_precision(before, after):
    """A wide window over a row spanning e^{0} to e^{−200} (ψ of a row with a wide range): every window sum within
    1e-12 of its own direct sum, relatively, far from the large values too (a float64 prefix sum and its differences,
    the wide windows' route once, left the tail's windows at the prefix sums' rounding, ~1e-16 absolute)."""
    v = torch.exp(torch.linspace(0.0, -200.0, 120, dtype=torch.float64))[None]
    w = window_sum(v, before, after)[0]
    for i in range(120):
        ref = v[0, max(0, i - before) : i + after + 1].sum()
        assert abs(w[i] - ref) <= 1e-12 * ref
