"""A channels-first `dn` with a matrix κ over the channels on its own planes (`matrix_pooled_planes`): the same
function as the rows route (the planes transposed to rows, torch's GEMM) and as the composite formula, values
and every gradient; the rows route's bits under LATERALNORM_CHANNEL_POOL=rows; the forms it does not take."""

from __future__ import annotations

import pytest
import torch

from lateralnorm.errors import UsageError
from lateralnorm.norms import cpu_kernel, create_norm
from lateralnorm.norms.dn_kernel import PLANES_FROM

pytestmark = pytest.mark.skipif(cpu_kernel.extension() is None, reason="needs the compiled CPU kernel")

PLANE_SPECS = [
    "gdn",  # signed, α = 2, r = 1/2, p = 1, β per channel learned
    "dn:kappa=full",  # the default: rectified, α = 2, r = 1, affine
    "dn:kappa=full,alpha=1.5",  # a general α: ψ's node keeps each element's power
    "dn:kappa=full,fn=signed,alpha=1,r=0.75",
    "dn:kappa=full,learn_beta=false,affine=false",  # β a fixed buffer, no γ or b
    "dn:kappa=gaussian",
]


def _layer(spec: str, c: int, dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    layer = create_norm(spec, c, layout="channels_first", dtype=dtype)
    with torch.no_grad():  # parameters off their start, so that each one's gradient is its own
        for p in layer.parameters():
            p.add_(0.1 * torch.rand_like(p))
    return layer


def _step(layer, x: torch.Tensor, g: torch.Tensor):
    for p in layer.parameters():
        p.grad = None
    xa = x.clone().requires_grad_()
    out = layer(xa)
    out.backward(g)
    return out, xa.grad, [p.grad.clone() for p in layer.parameters()]


@pytest.mark.parametrize("spec", PLANE_SPECS)
@pytest.mark.parametrize(
    "shape", [(3, 6, 12, 11), (4, 5, 130)]
)  # images and signals, ≥ PLANES_FROM positions
def test_planes_equal_the_rows_route_and_the_formula(spec, shape, monkeypatch):
    c = shape[1]
    layer = _layer(spec, c, torch.float64)
    formula = create_norm(
        spec + ("," if ":" in spec else ":") + "fused=false", c, layout="channels_first", dtype=torch.float64
    )
    formula.load_state_dict(layer.state_dict())
    x = torch.randn(shape, dtype=torch.float64)
    g = torch.randn(shape, dtype=torch.float64)
    out, gx, gp = _step(layer, x, g)
    assert out.is_contiguous()  # the planes route's own output, not a view of rows
    monkeypatch.setenv("LATERALNORM_CHANNEL_POOL", "rows")
    out_r, gx_r, gp_r = _step(layer, x, g)
    assert not out_r.is_contiguous()  # the rows route: a channels_last view of its rows
    out_f, gx_f, gp_f = _step(formula, x, g)
    for ref_out, ref_gx, ref_gp in ((out_r, gx_r, gp_r), (out_f, gx_f, gp_f)):
        torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(gx, ref_gx, rtol=1e-11, atol=1e-12)
        assert len(gp) == len(ref_gp) > 0 or spec.endswith("affine=false")
        for a, b in zip(gp, ref_gp):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def test_planes_in_float32_match_float64():
    layer = _layer("gdn", 16, torch.float32)
    wide = create_norm("gdn", 16, layout="channels_first", dtype=torch.float64)
    wide.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    x, g = torch.randn(8, 16, 12, 12), torch.randn(8, 16, 12, 12)
    out, gx, gp = _step(layer, x, g)
    assert out.is_contiguous()
    out_d, gx_d, gp_d = _step(wide, x.double(), g.double())
    torch.testing.assert_close(out.double(), out_d, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx.double(), gx_d, rtol=1e-4, atol=1e-5)
    for a, b in zip(gp, gp_d):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-3)


def test_rows_mode_keeps_the_rows_bits(monkeypatch):
    """LATERALNORM_CHANNEL_POOL=rows is the route of the runs stored before: the features-last layer on the
    transposed planes, to the bit (the transposes copy)."""
    monkeypatch.setenv("LATERALNORM_CHANNEL_POOL", "rows")
    cf = _layer("gdn", 8, torch.float32)
    last = create_norm("gdn", 8, dtype=torch.float32)
    last.load_state_dict(cf.state_dict())
    x, g = torch.randn(4, 8, 12, 11), torch.randn(4, 8, 12, 11)  # planes long enough for the planes route
    out, gx, gp = _step(cf, x, g)
    rows = x.movedim(1, -1).contiguous()
    out_l, gx_l, gp_l = _step(last, rows, g.movedim(1, -1).contiguous())
    assert torch.equal(out, out_l.movedim(-1, 1))
    assert torch.equal(gx, gx_l.movedim(-1, 1))
    assert all(torch.equal(a, b) for a, b in zip(gp, gp_l))


@pytest.mark.parametrize(
    "spec", ["dn:kappa=full,center=true", "dn:kappa=full,learn_alpha=true,alpha=1.3", "dn:kappa=lowrank:2"]
)
def test_forms_outside_the_planes_route_take_rows(spec):
    """Centered rows need their mean over C, a learned α its own nodes, a low-rank κ its K-thin products: those
    channels-first layers keep the rows route (a channels_last view), with their gradients."""
    layer = _layer(spec, 6, torch.float64)
    x = torch.randn(2, 6, 12, 11, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    assert not out.is_contiguous()
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_short_planes_take_rows():
    """Below PLANES_FROM positions a plane the planes route gains nothing, and rows keep the stored runs' bits."""
    layer = _layer("gdn", 6, torch.float64)
    assert not layer(torch.randn(2, 6, PLANES_FROM - 1, dtype=torch.float64)).is_contiguous()
    assert layer(torch.randn(2, 6, PLANES_FROM, dtype=torch.float64)).is_contiguous()


@pytest.mark.parametrize("spec", ["gdn", "dn:kappa=lowrank:2", "dn:kappa=full,center=true"])
def test_an_empty_batch_passes_through(spec):
    layer = _layer(spec, 4, torch.float32)
    x = torch.randn(0, 4, 12, 11, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_planes_without_gradients_and_with_frozen_parameters(monkeypatch):
    """Inference (no_grad), an input that needs no gradient, and frozen parameters: the values and the gradients
    asked for, as the rows route gives them."""
    layer = _layer("gdn", 6, torch.float64)
    x = torch.randn(2, 6, 12, 11, dtype=torch.float64)
    g = torch.randn_like(x)

    def run():
        with torch.no_grad():
            inferred = layer(x)
        for p in layer.parameters():
            p.requires_grad_(True)
            p.grad = None
        layer(x).backward(g)  # x needs no gradient: the parameters' only
        grads = [p.grad.clone() for p in layer.parameters()]
        for p in layer.parameters():
            p.requires_grad_(False)
        xa = x.clone().requires_grad_()
        layer(xa).backward(g)  # frozen parameters: the input's only
        return inferred, grads, xa.grad

    out, grads, gx = run()
    assert out.is_contiguous()
    monkeypatch.setenv("LATERALNORM_CHANNEL_POOL", "rows")
    out_r, grads_r, gx_r = run()
    assert not out_r.is_contiguous()
    torch.testing.assert_close(out, out_r, rtol=1e-12, atol=1e-13)
    assert len(grads) == len(grads_r) == 2
    for a, b in zip(grads, grads_r):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(gx, gx_r, rtol=1e-11, atol=1e-12)


def test_planes_double_backward():
    layer = _layer("gdn", 3, torch.float64)
    x = torch.randn(1, 3, PLANES_FROM, dtype=torch.float64, requires_grad=True)
    assert layer(x).is_contiguous()
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


def test_planes_take_the_layers_type():
    """A float32 input to a float64 layer runs in float64 (the common type), as the other routes do."""
    layer = _layer("gdn", 6, torch.float64)
    out = layer(torch.randn(2, 6, 12, 11))
    assert out.dtype == torch.float64 and out.is_contiguous()


def test_a_bad_channel_pool_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv("LATERALNORM_CHANNEL_POOL", "gemm")
    layer = create_norm("gdn", 4, layout="channels_first")
    with pytest.raises(UsageError, match="LATERALNORM_CHANNEL_POOL='gemm' is not one of planes, rows"):
        layer(torch.randn(2, 4, 12, 11))


def test_planes_node_checks_its_channels():
    ext = cpu_kernel.extension()
    y = torch.randn(6, 5)
    psi, stats, kept = ext.psi_rows_node(y, y.new_empty(0), False, True, 2.0, 2.0)
    with pytest.raises(RuntimeError, match="multiple of the channels"):
        ext.given_pool_planes_node(y, stats, psi, torch.ones(4), None, None, y.new_empty(0), kept, 4, True, 2.0,
                                   2.0, 1.0)  # fmt: skip
