"""Closed-form references: the dn presets and the named layers equal PyTorch's layers and GDN's formula
(max abs error <= 1e-5 in float32, <= 1e-10 in float64) on ordinary, huge and near-constant inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lateralnorm import create_norm
from lateralnorm.errors import UsageError
from lateralnorm.norms import NonNegative, cpu_kernel

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
DTYPES = [torch.float32, torch.float64]


def inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g, dtype=torch.float64)
    cases = {
        "normal": base,
        "large": base * 1e4,
        "near_constant": 1.0 + 0.05 * base,
        "tiny": base * 1e-3,
        "zeros": torch.zeros(shape, dtype=torch.float64),
    }
    return {k: v.to(dtype) for k, v in cases.items()}


def max_err(a, b):
    return (a - b).abs().max().item()


def randomize_affine(*mods):
    g = torch.Generator().manual_seed(7)
    w = torch.rand(mods[0].weight.shape, generator=g) + 0.5
    b = torch.randn(mods[0].weight.shape, generator=g)
    with torch.no_grad():
        for m in mods:
            m.weight.copy_(w)
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", ["dn:preset=ln", "ln"])
def test_layernorm(spec, dtype):
    n = 64
    ours, ref = create_norm(spec, n, eps=1e-5, dtype=dtype), nn.LayerNorm(n, eps=1e-5, dtype=dtype)
    randomize_affine(ours, ref)
    for case, x in inputs((32, n), dtype).items():
        assert max_err(ours(x), ref(x)) <= TOL[dtype], case


def test_dn_layernorm_near_constant_float32_is_closer_to_truth_than_torch():
    """On 3 + 0.01·noise in float32, torch's LayerNorm is ~3e-5 off the float64 answer; the dn preset's
    two-step centering keeps it under 1e-5."""
    n = 64
    x = (
        3.0 + 1e-2 * torch.randn(32, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ).float()
    truth = nn.functional.layer_norm(x.double(), (n,), eps=1e-5)
    ours = create_norm("dn:preset=ln", n, eps=1e-5)(x).double()
    assert max_err(ours, truth) <= 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", ["dn:preset=rms", "rms"])
def test_rmsnorm(spec, dtype):
    n = 64
    ours, ref = create_norm(spec, n, eps=1e-6, dtype=dtype), nn.RMSNorm(n, eps=1e-6, dtype=dtype)
    randomize_affine(ours, ref)
    for case, x in inputs((32, n), dtype).items():
        assert max_err(ours(x), ref(x)) <= TOL[dtype], case


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", ["dn:preset=lrn", "lrn"])
def test_local_response_norm(spec, dtype):
    ours, ref = create_norm(spec, 16, layout="channels_first", dtype=dtype), nn.LocalResponseNorm(5)
    for case, x in inputs((4, 16, 5, 5), dtype).items():
        assert max_err(ours(x), ref(x)) <= TOL[dtype], case


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(4, 16, 5, 5), (2, 16, 3, 4, 4), (4, 16, 7)])
def test_local_response_norm_low_precision_cpu(dtype, shape):
    """torch has no CPU avg_pool3d for bf16/fp16: the named lrn computes in float32 and rounds once, so it
    equals torch's float32 layer on the same (rounded) input, rounded back."""
    ours, ref = create_norm("lrn", 16, layout="channels_first").to(dtype), nn.LocalResponseNorm(5)
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    y = ours(x)
    assert y.dtype == dtype
    assert torch.equal(y, ref(x.float()).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax(dtype):
    ours, named = create_norm("dn:preset=softmax", 32, dtype=dtype), create_norm("softmax:temperature=2", 32)
    for case, x in inputs((16, 32), dtype).items():
        assert max_err(ours(x), torch.softmax(x, -1)) <= TOL[dtype], case
        assert max_err(named.to(dtype)(x), torch.softmax(x / 2, -1)) <= TOL[dtype], case


def gdn_closed_form(y, kappa, beta):
    """z_i = y_i / sqrt(β_i + Σ_j κ_ij y_j²), channels on axis 1."""
    y2 = y.square().movedim(1, -1)  # (B, ..., C)
    den = beta + y2 @ kappa.T
    return y / den.sqrt().movedim(-1, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", ["gdn", "dn:preset=gdn"])
def test_gdn(spec, dtype):
    c = 12
    m = create_norm(spec, c, layout="channels_first", dtype=dtype)
    for case, y in inputs((3, c, 4, 4), dtype).items():
        # at initialization: β = 1, κ = 0.1·I, so z = y / sqrt(1 + 0.1·y²)
        assert max_err(m(y), y / torch.sqrt(1 + 0.1 * y.square())) <= TOL[dtype], case
    with torch.no_grad():  # move κ and β to arbitrary non-negative values through the parametrization
        g = torch.Generator().manual_seed(3)
        m.kappa.raw.copy_(torch.rand(c, c, generator=g, dtype=torch.float64).to(dtype))
        m.beta.raw.copy_((torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(dtype))
    kappa, beta = m.kappa_matrix(), m.beta_value()
    assert (kappa >= 0).all() and (beta > 0).all()
    for case, y in inputs((3, c, 4, 4), dtype, seed=1).items():
        assert max_err(m(y), gdn_closed_form(y, kappa, beta)) <= TOL[dtype], case


@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_first_layernorm_equals_permute(dtype):
    c = 16
    ours, ref = create_norm("ln", c, layout="channels_first", dtype=dtype), nn.LayerNorm(c, dtype=dtype)
    randomize_affine(ours, ref)
    x = torch.randn(2, c, 7, 7, dtype=dtype)
    assert max_err(ours(x), ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)) <= TOL[dtype]


def test_neural_dn_closed_form():
    """dn default: z_i = relu(y_i)^α / (β + Σ_j κ_ij relu(y_j)^α) with κ = 1/N, β = 1 at init."""
    n, alpha = 10, 2.0
    m = create_norm("dn:alpha=2", n, dtype=torch.float64)
    y = torch.randn(6, n, dtype=torch.float64) * 2
    r = torch.relu(y) ** alpha
    expected = r / (1.0 + r.mean(-1, keepdim=True))
    assert max_err(m(y), expected) <= 1e-12


def test_halfsat_is_beta_to_the_alpha():
    """Neural DN's form z = y^α / (σ^α + Σ_j κ_ij y_j^α): halfsat=σ sets β = σ^α."""
    m = create_norm("dn:alpha=3,halfsat=2,kappa=self,kappa_init=1", 4, dtype=torch.float64)
    y = torch.tensor([[0.5, 1.0, 2.0, -1.0]], dtype=torch.float64)
    r = torch.relu(y) ** 3
    assert max_err(m(y), r / (8.0 + r)) <= 1e-12
    with pytest.raises(ValueError, match="either beta"):
        create_norm("dn:beta=1,halfsat=2", 4)


def test_band_kappa_is_a_band():
    m = create_norm("dn:kappa=band:2", 9, dtype=torch.float64)
    k = m.kappa_matrix()
    i, j = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    assert torch.all(k[(i - j).abs() > 2] == 0)
    assert torch.allclose(k[(i - j).abs() <= 2], torch.full_like(k[(i - j).abs() <= 2], 1 / 5))


@pytest.mark.parametrize("spec", ["dn:kappa=full", "dn:kappa=lowrank:3", "dn:kappa=gaussian", "dn:kappa=self",
                                  "dn:kappa=uniform", "dn:kappa=band:1"])  # fmt: skip
def test_pool_matches_kappa_matrix(spec):
    """Σ_j κ_ij ψ_j computed by the structured kernel equals ψ @ κᵀ with the effective matrix."""
    n = 7
    m = create_norm(spec, n, affine=False, learn_beta=False, dtype=torch.float64)
    y = torch.rand(5, n, dtype=torch.float64) + 0.1
    psi = y.square()
    expected = psi / (1.0 + psi @ m.kappa_matrix().T)
    assert max_err(m(y), expected) <= 1e-12


@pytest.mark.parametrize("spec", ["ln", "dn:preset=ln", "rms", "dn", "gdn", "dn:kappa=full", "dn:fn=signed",
                                  "dn:preset=softmax", "gelu>ln", "dn:learn_alpha=true,alpha=0.7",
                                  "dn:fn=signed,alpha=1.3"])  # fmt: skip
@pytest.mark.parametrize("scale", [0.0, 1e4])
def test_no_nan_on_zero_or_huge_input(spec, scale):
    m = create_norm(spec, 16)
    x = (torch.randn(8, 16) * scale).requires_grad_()
    y = m(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    for p in m.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_beta_at_its_floor_is_finite():
    m = create_norm("dn:eps=1e-6", 8)
    with torch.no_grad():
        m.beta.raw.fill_(-5.0)  # far below the bound: the effective β is the floor
    assert torch.allclose(m.beta_value(), torch.full((8,), 1e-6), rtol=1e-3)
    x = torch.zeros(4, 8, requires_grad=True)
    y = m(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_nonnegative_reparametrization_never_clamps_data():
    p = NonNegative(torch.tensor([0.5, 0.0, 2.0]), minimum=0.0)
    opt = torch.optim.SGD(p.parameters(), lr=1.0)
    for _ in range(50):  # push every value down hard
        opt.zero_grad()
        p().sum().backward()
        opt.step()
    assert (p() >= 0).all()
    assert (p.raw.detach() < 0).any()  # the raw parameter went below the bound; only the value is bounded


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nonnegative_value_is_the_lower_bound_chain_to_the_bit(dtype):
    """NonNegative's one-node value equals lower_bound(p).square() − pedestal in values, in the gradient (the
    bound's rule included: blocked below the bound unless it pushes p up) and in second derivatives."""
    from lateralnorm.norms.base import PEDESTAL, lower_bound

    torch.manual_seed(0)
    p = NonNegative(torch.rand(300, dtype=dtype) * 3 + 0.25, minimum=0.25)
    with torch.no_grad():
        p.raw[:100] = 0.1  # below the bound √(0.25 + pedestal)
    g = torch.randn(300, dtype=dtype)
    g[:50] = -g[:50].abs()  # below the bound, a gradient that pushes p up passes …
    g[50:100] = g[50:100].abs()  # … and one that pushes it down does not
    raw = p.raw.detach().clone().requires_grad_()
    chain = lower_bound(raw, p.bound()).square() - PEDESTAL
    chain.backward(g)
    value = p()
    value.backward(g)
    assert torch.equal(value.detach(), chain.detach())
    assert torch.equal(p.raw.grad, raw.grad)
    assert (p.raw.grad[50:100] == 0).all() and (p.raw.grad[:50] != 0).all()
    h1 = torch.autograd.grad(p(), p.raw, g, create_graph=True)[0]
    h2 = torch.autograd.grad(lower_bound(raw, p.bound()).square() - PEDESTAL, raw, g, create_graph=True)[0]
    w = torch.randn_like(g)
    assert torch.equal(torch.autograd.grad(h1, p.raw, w)[0], torch.autograd.grad(h2, raw, w)[0])


def test_learned_alpha_stays_above_floor():
    m = create_norm("dn:learn_alpha=true,alpha=1.0,alpha_min=0.6", 8)
    opt = torch.optim.SGD(m.parameters(), lr=5.0)
    x = torch.rand(16, 8) + 0.5
    for _ in range(30):
        opt.zero_grad()
        (m.alpha() * 10 + 0 * m(x).sum()).backward()  # the gradient pushes α down
        opt.step()
    assert float(m.alpha().detach()) >= 0.6 - 1e-7


@pytest.mark.parametrize("name", ["rms", "lrn:affine=true"])
@pytest.mark.parametrize(
    "layout, shape", [("last", (16, 32)), ("last", (2, 3, 4, 32)), ("channels_first", (2, 32, 3, 3))]
)
def test_common_names_take_the_row_kernel_and_compute_torchs_function(name, layout, shape, monkeypatch):
    """`rms` and `lrn` run in a compiled CPU kernel (their fastest exact path); in float64 the
    values and input/parameter gradients equal torch's own F.rms_norm / F.local_response_norm."""
    from lateralnorm.norms import cpu_kernel, standard

    if not cpu_kernel.available():
        pytest.skip("the CPU kernel is not built on this machine")
    calls = []
    for fn in ("pooled_divisive", "divisive_rows"):
        real = getattr(standard, fn)
        monkeypatch.setattr(standard, fn, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    from lateralnorm.norms import channel_kernel  # channels-first rms: the channel kernel (no permutes)

    real_apply = channel_kernel.ChannelRows.apply
    monkeypatch.setattr(channel_kernel.ChannelRows, "apply", lambda *a: calls.append(1) or real_apply(*a))
    torch.manual_seed(0)
    m = create_norm(name, 32, layout=layout).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    x = (torch.randn(*shape, dtype=torch.float64) * 5).requires_grad_()
    out = m(x)
    assert calls, "the row kernel was not used"
    last = x if layout == "last" else x.movedim(1, -1)
    if name == "rms":
        ref = F.rms_norm(last, (32,), m.weight, m.eps)
    else:
        cf = last.movedim(-1, 1) if last.ndim > 2 else last.unsqueeze(-1)
        z = F.local_response_norm(cf, 5, 1e-4, 0.75, 1.0)
        z = z.movedim(1, -1) if last.ndim > 2 else z.squeeze(-1)
        ref = z * m.weight + m.bias
    ref = ref if layout == "last" else ref.movedim(-1, 1)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(out)
    got = torch.autograd.grad((out * w).sum(), [x, *m.parameters()])
    want = torch.autograd.grad((ref * w).sum(), [x, *m.parameters()])
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-11)


def test_a_new_kappa_structure_is_one_class_and_one_registry_line(monkeypatch):
    """The extension point of divisive normalization: a κ structure written as one Kappa subclass and added
    to STRUCTURES is usable by spec at once (validation, forward, κ matrix), here an exponential-decay κ
    κ_ij = c·2^{−|i−j|} checked against its closed form."""
    from lateralnorm.norms import kappa as kappa_mod

    class Decay(kappa_mod.Kappa):
        """κ_ij = c_i 2^{−|i − j|}."""

        name = "decay"

        def init(self, norm, arg, o, n):
            self.per_unit(norm, 1.0 if o["kappa_init"] is None else o["kappa_init"], o, n)

        def pool(self, norm, psi):
            return F.linear(psi, self.matrix(norm, None).to(psi.dtype))

        def matrix(self, norm, eye):
            i = torch.arange(norm.num_features, dtype=torch.float64)
            return norm.value("kappa")[:, None] * torch.pow(2.0, -(i[:, None] - i[None, :]).abs())

    monkeypatch.setitem(kappa_mod.STRUCTURES, "decay", Decay())  # the one registry line
    m = create_norm(
        "dn:kappa=decay,kappa_init=0.5,fn=signed,alpha=2,r=0.5,learn_beta=false,beta=1",
        4,
        dtype=torch.float64,
    )
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64)
    i = torch.arange(4, dtype=torch.float64)
    kappa = 0.5 * torch.pow(2.0, -(i[:, None] - i[None, :]).abs())
    want = x / torch.sqrt(1.0 + (x * x) @ kappa.T) * m.weight + m.bias
    torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.kappa_matrix(), kappa)
    with pytest.raises(UsageError, match="takes no ':' argument"):
        create_norm("dn:kappa=decay:3", 4)


@pytest.mark.parametrize("spec, groups", [("gn:groups=4", 4), ("gn", 32), ("ln_chw", 1)])  # gn: gcd(64, 32)
def test_group_norms_on_rows_take_layernorms_kernel_and_equal_group_norm(spec, groups):
    """On (B, N) rows gn and ln_chw run through F.layer_norm (10x faster than F.group_norm there); in
    float64 values and gradients equal torch's F.group_norm."""
    torch.manual_seed(0)
    m = create_norm(spec, 64, dtype=torch.float64)
    with torch.no_grad():
        m.weight.normal_()
        m.bias.normal_()
    x = (torch.randn(6, 64, dtype=torch.float64) * 3 + 1).requires_grad_()
    out = m(x)
    ref = F.group_norm(x, groups, m.weight, m.bias, m.eps)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(out)
    for g, r in zip(torch.autograd.grad((out * w).sum(), [x, m.weight, m.bias]),
                    torch.autograd.grad((ref * w).sum(), [x, m.weight, m.bias])):  # fmt: skip
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("name", ["ln", "rms"])
@pytest.mark.parametrize("shape", [(3, 16, 5, 7), (2, 16, 9), (2, 16, 3, 4, 2)])
def test_channels_first_ln_and_rms_take_the_channel_kernel_and_equal_the_permute_route(name, shape):
    """Per position across C without permute copies (norms/channel_kernel.py): in float64 the values and the
    gradients of x, γ and b equal torch's layer on the permuted input; double backward equals it too."""
    from lateralnorm.norms import channel_kernel, cpu_kernel

    if not cpu_kernel.available():
        pytest.skip("the CPU kernel is not built on this machine")
    torch.manual_seed(0)
    m = create_norm(name, 16, layout="channels_first", dtype=torch.float64)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    x = (torch.randn(*shape, dtype=torch.float64) * 4 + 2).requires_grad_()
    assert channel_kernel.applies(x, m.weight)
    out = m(x)
    assert out.grad_fn is not None and "ChannelRows" in type(out.grad_fn).__name__
    ref = channel_kernel.reference(x, m.weight, getattr(m, "bias", None), m.eps, center=name == "ln")
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(out)
    params = list(m.parameters())
    got = torch.autograd.grad((out * w).sum(), [x, *params], create_graph=True)
    want = torch.autograd.grad((ref * w).sum(), [x, *params], create_graph=True)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-11)
    (gg,) = torch.autograd.grad(got[0].square().sum(), [x])
    (gr,) = torch.autograd.grad(want[0].square().sum(), [x])
    torch.testing.assert_close(gg, gr, rtol=1e-9, atol=1e-10)


def _fused_and_composite(spec: str, n: int, **kw):  # noqa: ANN003, ANN202
    """A layer and its composite-formula twin (fused=false) with the same perturbed parameters and buffers."""
    torch.manual_seed(0)
    fast = create_norm(spec, n, dtype=torch.float64, **kw)
    plain = create_norm(spec + ",fused=false", n, dtype=torch.float64, **kw)
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(torch.rand_like(p))
    plain.load_state_dict(fast.state_dict())
    return fast, plain


@pytest.mark.parametrize(
    "spec",
    [
        "dn:preset=softmax",
        "dn:preset=softmax,center=true",
        "dn:preset=softmax,kappa_init=0.5,affine=true",
        "dn:fn=exp,alpha=1.5,r=1,beta=0,learn_beta=false,learn_kappa=false,affine=true,bias=false",
    ],
)
@pytest.mark.parametrize("layout", ["last", "channels_first"])
def test_the_softmax_form_takes_torch_softmax_and_equals_the_composite(spec, layout):
    """A `dn` that computes softmax(α y)/c (ψ = e^{α t}, p = α, r = 1, a fixed uniform κ = c, a fixed β = 0) runs
    torch's softmax: its graph has softmax's node, and its output and every gradient equal the composite
    formula's (fused=false) in float64, features last and over the channels of an image."""
    fast, plain = _fused_and_composite(spec, 12, layout=layout)
    assert fast._softmax_scale is not None and plain._softmax_scale is None
    shape = (5, 12) if layout == "last" else (3, 12, 4, 5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    got, ref = fast(x), plain(x)
    assert "SoftmaxBackward0" in {type(f).__name__ for f in _graph_functions(got)}
    grads = [
        torch.autograd.grad(out.square().sum(), [x, *m.parameters()])
        for out, m in ((got, fast), (ref, plain))
    ]
    assert max_err(got, ref) <= 1e-14
    for a, b in zip(*grads):
        assert max_err(a, b) <= 1e-12


@pytest.mark.parametrize(
    "spec",
    [
        "dn:preset=softmax,learn_beta=true",  # a learned β
        "dn:preset=softmax,learn_kappa=true",  # a learned κ
        "dn:preset=softmax,beta=0.5",  # β ≠ 0: the shift no longer cancels
        "dn:preset=softmax,alpha=2",  # p = 1 ≠ α
        "dn:preset=softmax,learn_alpha=true",
        "dn:preset=softmax,kappa=band:3",
        "dn:preset=softmax,r=0.5",
    ],
)
def test_other_exp_forms_keep_the_composite(spec):
    """Only the softmax form takes torch's softmax: any other exp form is not softmax(α y)/c and keeps the formula."""
    assert create_norm(spec, 12)._softmax_scale is None


def _graph_functions(out: torch.Tensor) -> list:
    """Every autograd node behind `out`."""
    seen, todo = [], [out.grad_fn]
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.append(f)
        todo.extend(g for g, _ in f.next_functions)
    return seen


@pytest.mark.parametrize(
    "spec",
    [
        "dn:fn=exp",  # α = p = 2, r = 1: ψ's values are the numerator
        "dn:fn=exp,center=true,r=0.5",
        "dn:fn=exp,kappa=band:2,alpha=1.5,r=0.7",  # p = α r ≠ α
        "dn:fn=exp,kappa=lowrank:3",
        "dn:fn=exp,kappa=full,p=0.5",  # p ≠ α r: the shift's factor e^{(p − α r) s}
        "dn:fn=exp,kappa=self,affine=true",
        "dn:fn=exp,kappa=self,p=1,r=0.7,center=true",  # α = 2p: ψ the numerator's square (kept), any r, centered
        "dn:fn=exp,alpha=1.5,p=0.5,r=0.5",  # uniform, α = 3p: ψ the numerator's cube
        "dn:fn=exp,kappa=band:2,alpha=0.5,p=1.5,r=3",  # p = 3α: the numerator ψ's cube
        "dn:fn=exp,kappa=self,alpha=0.5,p=2,r=4",  # p = 4α (r = p/α: outputs of order 1)
        "dn:fn=exp,p=0.7",  # p and α no small multiples: each its own exp
        "dn:fn=exp,kappa=lowrank:3,p=4,r=2",  # a matrix pool, p = 2α: the numerator ψ's square
        "dn:fn=exp,kappa=full,p=1",  # a matrix pool gets ψ from its own node: α = 2p takes the two exps
        "dn:preset=softmax,learn_beta=true",
    ],
)
def test_exp_forms_on_their_nodes_equal_the_composite_to_second_order(spec):
    """The exp family with a fixed α runs two nodes around the κ structure's pool (`exp_rows`): output, every
    first derivative and a second derivative (create_graph) equal the composite formula's (fused=false) in
    float64, on rows whose values span e^{±6}."""
    fast, plain = _fused_and_composite(spec, 12)
    assert fast._exp_nodes and not plain._exp_nodes
    x = (2 * torch.randn(5, 12, dtype=torch.float64)).requires_grad_()
    got, ref = fast(x), plain(x)
    nodes = " ".join(
        type(f).__name__ + f.name() for f in _graph_functions(got)
    )  # (a C++ node's name names its struct)
    if not cpu_kernel.available():
        assert "ExpOutBackward" in nodes
    else:  # an O(N) pool: the kernel's layer node; a matrix pool: the matrix layer node
        o_n = fast.kappa_kind in ("self", "uniform", "band")
        assert ("ExpRowsLayerNode" if o_n else "ExpMatrixRowsNode") in nodes
    assert max_err(got, ref) <= 1e-13 * max(
        1.0, ref.abs().max().item()
    )  # (the kernel's exps: glibc's, ≤ 4 ulp)
    firsts = [
        torch.autograd.grad(out.square().sum(), [x, *m.parameters()], create_graph=True)
        for out, m in ((got, fast), (ref, plain))
    ]
    for a, b in zip(*firsts):
        assert max_err(a, b) <= 1e-11
    seconds = [torch.autograd.grad(sum(g.sum() for g in gs), x)[0] for gs in firsts]
    assert max_err(seconds[0], seconds[1]) <= 1e-10


@pytest.mark.parametrize(
    "spec",
    [
        "dn:fn=exp",
        "dn:fn=exp,kappa=self,alpha=1.5,affine=true",
        "dn:fn=exp,kappa=band:3,center=true,r=0.5",
        "dn:fn=exp,kappa=band:4,p=0.7,affine=true,bias=false",
        "dn:fn=exp,p=1,r=0.5,center=true",  # uniform, α = 2p: the numerator kept, ψ its square
        "dn:fn=exp,kappa=band:3,p=1",  # the band's window over the numerator's squares
        "dn:fn=exp,kappa=self,alpha=1.5,p=0.5,r=0.8,affine=true,bias=false",  # any r: D^{−r} through exp and log
        "dn:fn=exp,kappa=band:2,p=4",  # p = 2α: the numerator ψ's square
        "dn:fn=exp,p=0.7",  # each its own exp (the numerator's again in the backward)
    ],
)
@pytest.mark.parametrize("n", [1, 7, 37])
def test_exp_forms_with_an_o_n_pool_in_the_kernel_in_float32(spec, n):
    """An exp form with an O(N) pool runs the compiled kernel's node (`csrc/exp_rows.cpp`) in float32 too:
    output and every gradient within float32 rounding of the float64 composite, at widths below, at and past a
    band's window, and over 70 rows (two blocks of the parameters' column sums)."""
    if not cpu_kernel.available():
        pytest.skip("no compiled kernel here")
    fast, plain = _fused_and_composite(spec, n)
    fast = fast.float()
    x = 2 * torch.randn(70, n, dtype=torch.float64)
    g = torch.randn_like(x)
    xf = x.float().requires_grad_()
    out = fast(xf)
    assert "ExpRowsLayerNode" in " ".join(f.name() for f in _graph_functions(out))
    got = torch.autograd.grad(out, [xf, *fast.parameters()], g.float())
    xd = x.clone().requires_grad_()
    ref_out = plain(xd)
    ref = torch.autograd.grad(ref_out, [xd, *plain.parameters()], g)
    scale = max(1.0, ref_out.abs().max().item())
    assert max_err(out.double(), ref_out) <= 1e-5 * scale
    for a, b in zip(got, ref):
        assert max_err(a.double(), b) <= 2e-4 * max(1.0, b.abs().max().item())


@pytest.mark.parametrize(
    "spec",
    [
        "dn:fn=exp,kappa=lowrank:4",
        "dn:fn=exp,kappa=full,p=0.5,r=0.7,affine=true",
        "dn:fn=exp,kappa=gaussian,center=true,bias=false",
    ],
)
def test_exp_forms_with_a_matrix_pool_in_the_kernel_in_float32(spec):
    """An exp form with a matrix κ runs its element work on the compiled kernel (`exp_psi_rows`, `exp_given_rows`)
    around the κ structure's pool in float32 too: output and every gradient within float32 rounding of the float64
    composite over 70 rows (two blocks of the parameters' column sums); and the gradients of the parameters alone
    (the input takes none: the output node keeps its share of t's gradient to itself) equal theirs in the full
    backward, twice over one retained graph."""
    if not cpu_kernel.available():
        pytest.skip("no compiled kernel here")
    fast, plain = _fused_and_composite(spec, 37)
    fast = fast.float()
    x = 2 * torch.randn(70, 37, dtype=torch.float64)
    g = torch.randn_like(x)
    xf = x.float().requires_grad_()
    out = fast(xf)
    assert any("ExpMatrixRowsNode" in f.name() for f in _graph_functions(out))
    params = list(fast.parameters())
    got = torch.autograd.grad(out, [xf, *params], g.float(), retain_graph=True)
    again = torch.autograd.grad(out, [xf, *params], g.float(), retain_graph=True)
    only = torch.autograd.grad(out, params, g.float())
    for a, b in zip(got, again):
        assert torch.equal(a, b)
    for a, b in zip(got[1:], only):
        assert torch.equal(a, b)
    xd = x.clone().requires_grad_()
    ref_out = plain(xd)
    ref = torch.autograd.grad(ref_out, [xd, *plain.parameters()], g)
    assert max_err(out.double(), ref_out) <= 1e-5 * max(1.0, ref_out.abs().max().item())
    for a, b in zip(got, ref):
        assert max_err(a.double(), b) <= 2e-4 * max(1.0, b.abs().max().item())


@pytest.mark.parametrize(
    "spec",
    ["dn:fn=exp,kappa=lowrank:2,center=true,p=1,affine=true", "dn:fn=exp,kappa=gaussian,p=0.5,affine=true"],
)
def test_the_exp_matrix_layer_node_gradcheck_and_double_backward(spec):
    """The one-node matrix exp forms against finite differences, their double backward (the formula in Python)."""
    if not cpu_kernel.available():
        pytest.skip("no compiled kernel here")
    torch.manual_seed(6)
    m = create_norm(spec, 6, dtype=torch.float64)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    assert any("ExpMatrixRowsNode" in f.name() for f in _graph_functions(m(x)))
    params = list(m.parameters())
    assert torch.autograd.gradcheck(lambda v, *ps: m(v), (x, *params))
    assert torch.autograd.gradgradcheck(lambda v, *ps: m(v), (x, *params))


@pytest.mark.parametrize("spec", ["dn:fn=exp,kappa=self", "dn:fn=exp", "dn:kappa=band:1", "dn:kappa=uniform"])
def test_second_derivatives_keep_the_floor_rule_for_a_raw_value_under_it(spec):
    """A non-negative parameter's raw value may drift under its floor (nothing clamps `.data`); its gradient then
    still passes where it would raise the value (`lower_bound`'s rule). The kernel nodes' double backward
    (create_graph) differentiates the formula: with the same rule, equal to the composite's (a plain clamp_min
    there gave such a parameter a zero gradient)."""
    fast, plain = _fused_and_composite(spec, 5)
    for m in (fast, plain):
        with torch.no_grad():
            m.beta.raw.fill_(m.beta.bound() - 0.05)
            m.kappa.raw.fill_(m.kappa.bound() - 0.05)
    x = torch.randn(4, 5, dtype=torch.float64)
    for sign in (1.0, -1.0):  # L = ±Σ out: β and κ lower every output (γ > 0), so + raises them and passes
        grads = []
        for m in (fast, plain):
            out = m(x)
            g = torch.full_like(out, sign)
            grads.append(torch.autograd.grad(out, [m.beta.raw, m.kappa.raw], g, create_graph=True))
        for a, b in zip(*grads):
            assert (b.abs().max() > 0) == (sign > 0)  # passed where it raises the value, else held at zero
            assert max_err(a, b) <= 1e-12 * max(1.0, b.abs().max().item())


@pytest.mark.parametrize(
    "spec", ["dn:fn=exp,p=1", "dn:fn=exp,kappa=band:2,p=4", "dn:fn=exp,kappa=self,p=0.7"]
)
def test_exp_kernel_rows_of_a_wide_range_underflow_as_the_composite(spec):
    """Rows spanning e^{±150} in float32: where ψ or the numerator is a power of the other, the products underflow
    to zero where the exps would (the numerator's square where ψ = e^{2d} is below float32's range, e^{d} not):
    output and input gradient within float32 rounding of the float64 composite, scaled by the largest value."""
    if not cpu_kernel.available():
        pytest.skip("no compiled kernel here")
    fast, plain = _fused_and_composite(spec, 40)
    fast = fast.float()
    x = torch.linspace(-150.0, 0.0, 40, dtype=torch.float64).repeat(3, 1)
    x[1] = x[1].flip(0)
    x[2] = x[2] * 0.4 + 3.0
    g = torch.randn_like(x)
    xf = x.float().requires_grad_()
    out = fast(xf)
    (got,) = torch.autograd.grad(out, xf, g.float())
    xd = x.clone().requires_grad_()
    ref_out = plain(xd)
    (ref,) = torch.autograd.grad(ref_out, xd, g)
    assert torch.isfinite(out).all() and torch.isfinite(got).all()
    assert max_err(out.double(), ref_out) <= 1e-5 * max(1.0, ref_out.abs().max().item())
    assert max_err(got.double(), ref) <= 2e-4 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("spec", ["dn:fn=exp,kappa=band:20", "dn:fn=exp,kappa=band:41", "dn:kappa=band:20"])
def test_wide_bands_keep_rows_of_a_wide_range(spec):
    """A wide band over a row from 60 to −40 (ψ spanning e^{±100}): the kernel's and the composite's windows are
    sums of the values themselves (pairs; binary doubling), so the two agree to rounding everywhere in the row,
    output and input gradient (prefix-sum differences, the wide windows' route once on both sides, left windows of
    e^{−70} at the rounding of sums near 1: outputs 1e27 apart)."""
    fast, plain = _fused_and_composite(spec, 200)
    x = torch.linspace(60.0, -40.0, 200, dtype=torch.float64)[None].repeat(2, 1)
    x[1] = x[1].flip(0)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, ref = fast(xa), plain(xb)
    assert max_err(got, ref) <= 1e-12 * max(1.0, ref.abs().max().item())
    g = torch.randn_like(ref)
    (ga,) = torch.autograd.grad(got, xa, g)
    (gb,) = torch.autograd.grad(ref, xb, g)
    assert max_err(ga, gb) <= 1e-10 * max(1.0, gb.abs().max().item())


def test_the_exp_kernel_refuses_a_negative_window_side():
    """The kernel's band reads `before` elements left of each output: a negative side is refused with its reason
    (it would have written in front of the row's scratch), not computed."""
    if not cpu_kernel.available():
        pytest.skip("no compiled kernel here")
    ext = cpu_kernel.extension()
    y, ones = torch.randn(3, 8), torch.ones(8)
    empty = torch.empty(0)
    with pytest.raises(RuntimeError, match="before and after must be >= 0"):
        ext.exp_rows_forward(y, ones, ones, empty, empty, 2, False, 2.0, 2.0, 1.0, -1, 2, True)
    out = ext.exp_rows_forward(y, ones, ones, empty, empty, 2, False, 2.0, 2.0, 1.0, 1, 2, True)[0]
    assert torch.isfinite(out).all()


def test_the_softmax_form_is_decided_again_when_its_buffers_are_loaded():
    """Loading a fixed β other than 0 into a softmax-form layer makes it another exp form (no longer softmax):
    its output then equals the composite's with those buffers; loading β = 0 back returns the softmax form."""
    fast, plain = _fused_and_composite("dn:preset=softmax", 12)
    state = {k: v.clone() for k, v in fast.state_dict().items()}
    state["beta_fixed"] = torch.full_like(state["beta_fixed"], 0.5)
    fast.load_state_dict(state)
    plain.load_state_dict(state)
    assert fast._softmax_scale is None and fast._exp_nodes
    x = torch.randn(5, 12, dtype=torch.float64)
    assert max_err(fast(x), plain(x)) <= 1e-13
    state["beta_fixed"].zero_()
    fast.load_state_dict(state)
    assert fast._softmax_scale == 1.0


@pytest.mark.parametrize(
    "spec",
    [
        "dn:fn=exp,kappa=band:41",
        "dn:fn=exp,kappa=band:20",
        "dn:fn=exp,kappa=band:5",
        "dn:fn=exp,kappa=self",
        "dn:fn=exp",
        "dn:fn=exp,p=1",
    ],
)
def test_exp_kernel_wide_windows_and_nan_rows_follow_the_composite(spec):
    """A band wider than the row (width 83 over 50: 41 pairs and an element), a wide one (41: 20 pairs and an
    element, their count read at run time) or one of the widths unrolled at compile time (11, where the last vector
    of 50 outputs reads its last element past the row: lanes filled one by one) equals the composite; a NaN in a row
    makes the whole row NaN in every pool, as the composite's row maximum does."""
    fast, plain = _fused_and_composite(spec, 50)
    x = torch.randn(6, 50, dtype=torch.float64)
    x[2, 7] = float("nan")
    got, ref = fast(x), plain(x)
    assert torch.isnan(got[2]).all() and torch.isnan(ref[2]).all()
    keep = torch.ones(6, dtype=torch.bool)
    keep[2] = False
    assert max_err(got[keep], ref[keep]) <= 1e-13 * max(1.0, ref[keep].abs().max().item())
