"""Checks generated from the registry: every registered norm (and a few composed/option variants) gets
shape, layout, gradcheck, dtype, state-dict, determinism and compile checks by being registered."""

from __future__ import annotations

import io

import pytest
import torch

from lateralnorm import create_norm, list_norms

N = 8
# every registered name, plus the dn structures and compositions the studies use
SPECS = sorted(list_norms()) + [
    "dn:kappa=self",
    "dn:kappa=band:2",
    "dn:kappa=gaussian",
    "dn:kappa=lowrank:2",
    "dn:kappa=full",
    "dn:alpha=1.5,learn_alpha=true",
    "dn:fn=signed,center=true,r=0.5",
    "dn:fn=exp,alpha=1,r=1,beta=0.5",
    "dn:preset=ln",
    "dn:preset=softmax",
    "lng:groups=4",
    "gelu>ln",
    "relu>ln",
    "elu>dn:alpha=2",
    "ln>relu",
]
SHAPES = {"last": [(4, N), (3, 5, N)], "channels_first": [(4, N, 6), (2, N, 3, 3)]}


def make(spec: str, layout: str = "last", dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_norm(spec, N, layout=layout).to(dtype)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("layout", ["last", "channels_first"])
def test_shape_and_finite(spec, layout):
    m = make(spec, layout)
    for shape in SHAPES[layout]:
        x = torch.randn(shape) * 3
        y = m(x)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("spec", SPECS)
def test_layouts_agree(spec):
    """channels_first on (B, C, L) equals features-last on the permuted input."""
    torch.manual_seed(1)
    x = torch.randn(3, N, 5)
    a = make(spec, "channels_first")(x)  # (B, C, L)
    b = make(spec, "last")(x.transpose(1, 2))  # (B, L, C)
    torch.testing.assert_close(a, b.transpose(1, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_gradcheck_float64(spec):
    m = make(spec, dtype=torch.float64)
    if "bn" in spec.split(">"):
        m.eval()
    gen = torch.Generator().manual_seed(2)
    x = (torch.randn(3, N, generator=gen, dtype=torch.float64) * 2 + 0.3).requires_grad_()
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5)
    y = m(x).square().sum()
    y.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "layout, shape", [("last", (4, N)), ("channels_first", (2, N, 3, 3))], ids=["BN", "BCHW"]
)
def test_low_precision_forward(spec, dtype, layout, shape):
    """Every norm runs in low precision on CPU, on flat features and on images (B, C, H, W) alike: torch
    has no low-precision CPU kernel for some ops (avg_pool3d), and only the 4-D path reaches them."""
    m64, m = make(spec, layout, torch.float64), make(spec, layout, dtype)
    x = torch.randn(shape, dtype=torch.float64)
    y = m(x.to(dtype))
    assert y.dtype == dtype and torch.isfinite(y).all()
    tol = 1e-4 if dtype is torch.float32 else 0.1
    torch.testing.assert_close(y.double(), m64(x), atol=tol, rtol=tol)


@pytest.mark.parametrize("spec", SPECS)
def test_state_dict_round_trip(spec):
    a, b = make(spec), create_norm(spec, N)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.rand_like(p) * 0.1)  # move away from init so the copy is visible
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(4, N)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("spec", SPECS)
def test_deterministic(spec):
    x = torch.randn(5, N)
    assert torch.equal(make(spec)(x), make(spec)(x))


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_torch_compile_smoke(spec):
    m = make(spec)
    if "bn" in spec.split(">"):
        m.eval()
    x = torch.randn(4, N)
    compiled = torch.compile(m, backend="eager" if spec.startswith("dn:kappa=gaussian") else "inductor")
    torch.testing.assert_close(compiled(x), m(x), atol=1e-4, rtol=1e-4)  # gn on (B, C): groups of one unit


@pytest.mark.parametrize("spec", ["ln", "dn", "gelu>ln", "dn:kappa=band:2"])
def test_torch_compile_fast_subset(spec):
    """The cheap eager-backend compile path runs in the default suite; inductor for all norms is slow."""
    m = make(spec)
    x = torch.randn(4, N)
    torch.testing.assert_close(torch.compile(m, backend="eager")(x), m(x))


@pytest.mark.parametrize(
    "spec",
    ["ln", "rms", "dn:preset=ln", "dn:kappa=gaussian", "dn:kappa=lowrank:3", "gdn", "dyt", "bn", "relu>ln"],
)
def test_dtype_and_device_go_to_parameter_creation_not_to_process_state(spec, monkeypatch):
    """create_norm(dtype=…, device=…) builds every parameter and buffer there (float64 constants exact) and
    never touches the process-wide default dtype (not thread-safe, a surprise to callers)."""

    def forbidden(*a, **k):
        raise AssertionError("create_norm changed the process-wide default dtype")

    monkeypatch.setattr(torch, "set_default_dtype", forbidden)
    m = create_norm(spec, 8, dtype=torch.float64)
    tensors = list(m.parameters()) + list(m.buffers())
    assert tensors and all(t.dtype == torch.float64 for t in tensors)
    if spec == "dn:preset=ln":
        assert m.beta_fixed[0].item() == 1e-5  # exact in float64, not 1e-5 rounded through float32
    meta = create_norm(spec, 8, device="meta")
    assert all(t.device.type == "meta" for t in list(meta.parameters()) + list(meta.buffers()))
    assert torch.get_default_dtype() == torch.float32


def test_the_readme_recipe_for_a_new_norm_works_end_to_end():
    """README, "Adding a norm": the class as written there registers, builds by spec (with options, dtype and
    a composed spec), computes its equation and trains in a model."""
    import re
    from pathlib import Path

    from lateralnorm.norms import registry

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(
        r"```python\n(import torch\nfrom lateralnorm.norms import register_norm\n.*?)```", readme, re.S
    )
    assert code, "the README's recipe is gone"
    try:
        exec(compile(code.group(1), "README.md", "exec"), {})  # noqa: S102 - our own README
        m = create_norm("pnorm:p=2", 4, dtype=torch.float64)
        assert m.weight.dtype == torch.float64 and m.bias.shape == (4,)
        y = torch.tensor([[3.0, -4.0, 0.0, 0.0]], dtype=torch.float64)
        torch.testing.assert_close(m(y), y / (2.5 + 1e-5))  # (mean y²)^½ = (25 / 4)^½
        chain = create_norm("relu>pnorm", 4)
        assert chain(torch.randn(2, 4)).shape == (2, 4)
    finally:
        registry._REGISTRY.pop("pnorm", None)
