"""The Triton kernels of dn (CUDA, opt-in: LATERALNORM_CUDA_KERNEL=triton), run on the CPU by Triton's
interpreter (TRITON_INTERPRET=1, set in conftest before Triton is imported) against the float64 PyTorch
kernel. On a GPU, `benchmarks/gpu_check.py` section a.triton runs the same comparison compiled."""

from __future__ import annotations

import sys

import pytest
import torch

from lateralnorm import create_norm

triton = pytest.importorskip(
    "triton", reason="Triton is not installed (the dev extra installs it on Linux x86-64)"
)

SPECS = [
    "dn",
    "dn:kappa=self",
    "dn:kappa=band:2",
    "dn:kappa=band,size=4",
    "dn:preset=ln",
    "dn:preset=rms",
    "dn:preset=lrn",
    "dn:fn=signed,center=true,r=0.5",
    "dn:fn=signed,alpha=1.5,r=0.7",
    "dn:alpha=3,p=1",
    "dn:alpha=0.8,r=1.3,p=0.6",
    "dn:kappa=uniform,learn_kappa=false,learn_beta=false,affine=false",
]


@pytest.fixture
def triton_rows(monkeypatch):
    """Route float32 rows to the Triton kernels (interpreted on the CPU) and count the launches."""
    from lateralnorm.norms import triton_kernel as tk

    monkeypatch.setenv("LATERALNORM_CUDA_KERNEL", "triton")
    monkeypatch.setenv("LATERALNORM_CPU_KERNEL", "torch")  # else the compiled CPU kernel takes CPU rows first
    calls = {"fwd": 0, "bwd": 0}
    fwd, bwd = tk.rows_forward, tk.rows_backward

    def count_fwd(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls["fwd"] += 1
        return fwd(*a, **k)

    def count_bwd(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls["bwd"] += 1
        return bwd(*a, **k)

    monkeypatch.setattr(tk, "rows_forward", count_fwd)
    monkeypatch.setattr(tk, "rows_backward", count_bwd)
    return calls


def _run(m, x, g):  # noqa: ANN001, ANN202
    x = x.clone().requires_grad_()
    y = m(x)
    y.backward(g)
    return [y.detach(), x.grad] + [p.grad for p in m.parameters()]


def _pair(spec: str, n: int = 13):  # noqa: ANN202
    """(float32 module with perturbed parameters, float64 copy, float64 input with a zero and a near-constant
    row, its output gradient)."""
    torch.manual_seed(0)
    m32 = create_norm(spec, n)
    with torch.no_grad():
        for p in m32.parameters():
            p.add_(0.1 * torch.rand_like(p))
    m64 = create_norm(spec, n, dtype=torch.float64)
    m64.load_state_dict(m32.state_dict())
    x = torch.randn(7, n, dtype=torch.float64) * 2
    x[0] = 0.0  # zeros
    x[1] = 3 + 0.01 * torch.randn(n, dtype=torch.float64)  # near-constant
    return m32, m64, x, torch.randn_like(x)


def _assert_near_float64(got: list, ref: list, what: str) -> None:
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.dtype == torch.float32
        err = ((a.double() - b).abs().max() / (1e-3 + b.abs().max())).item()
        assert err <= 2e-5, f"{what} tensor #{i}: relative error {err:.1e}"


@pytest.mark.parametrize("spec", SPECS)
def test_triton_float32_equals_float64_pytorch_kernel(spec, triton_rows, monkeypatch):
    m32, m64, x, g = _pair(spec)
    got = _run(m32, x.float(), g.float())
    assert triton_rows == {"fwd": 1, "bwd": 1}
    ref = _run(m64, x, g)  # float64 rows stay on the PyTorch kernel
    assert triton_rows == {"fwd": 1, "bwd": 1}
    _assert_near_float64(got, ref, spec)


@pytest.mark.parametrize(
    "kind, sizes",
    [(k, s) for k in ("uniform", "self", "band") for s in ((13, 13), (13, 1))] + [("uniform", (1, 1))],
)
def test_raw_parameters_reparametrized_in_the_kernels(kind, sizes, triton_rows):
    """β and c reach the kernels raw, per unit or shared, some at or below their bound: the forward's values
    and the raw gradients (the lower bound's rule: passed where raw ≥ bound or the gradient pushes it up) equal
    the float64 PyTorch kernel's, which reparametrizes in PyTorch ops (the forms it takes: β per unit, or β and
    c shared with the uniform pool)."""
    import math

    from lateralnorm.norms.base import PEDESTAL
    from lateralnorm.norms.dn_kernel import DnConfig, divisive_rows

    n, gen = 13, torch.Generator().manual_seed(11)
    bounds = (math.sqrt(0.05 + PEDESTAL), math.sqrt(PEDESTAL))
    raws = []
    for size, bound in zip(sizes, bounds):
        raw = torch.rand(size, generator=gen, dtype=torch.float64) + 0.3
        raw[::2] = bound * torch.tensor([0.5, 1.0]).repeat(size)[: raw[::2].numel()]  # below and at the bound
        raws.append(raw)
    before, after = (2, 1) if kind == "band" else (0, 0)
    cfg = DnConfig(kind, True, True, 1.5, 1.5, 0.5, before, after, *bounds)
    x = torch.randn(9, n, generator=gen, dtype=torch.float64) * 2
    g = torch.randn(9, n, generator=gen, dtype=torch.float64)
    gamma = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
    bias = torch.randn(n, generator=gen, dtype=torch.float64)
    results = []
    for dtype in (torch.float32, torch.float64):  # float64 rows stay on the PyTorch kernel
        leaves = [t.to(dtype).requires_grad_() for t in (x, *raws, gamma, bias)]
        out = divisive_rows(leaves[0], *leaves[1:], cfg)
        out.backward(g.to(dtype))
        results.append([out.detach()] + [t.grad for t in leaves])
    assert triton_rows == {"fwd": 1, "bwd": 1}
    for raw, got in zip(raws, results[0][2:4]):
        assert got.shape == raw.shape
        if raw.numel() > 1:
            assert (got == 0).any() and (got != 0).any()  # some stopped at the bound, some passed
    _assert_near_float64(*results, f"{kind} {sizes}")


def test_nonnegative_value_and_gradient_in_triton(triton_rows, monkeypatch):
    """A NonNegative parameter (κ of the matrix pools, 40 × 40: two programs) through the Triton element-wise
    kernels equals the float64 PyTorch ops: the value, and the raw gradient below, at and above the bound with
    the gradient pushing either way (stopped only below the bound where a descent step would push it down)."""
    from lateralnorm.norms import base
    from lateralnorm.norms import triton_kernel as tk

    calls = {"fwd": 0, "bwd": 0}
    fwd, bwd = tk.nonneg_forward, tk.nonneg_backward

    def count_fwd(*a):  # noqa: ANN002, ANN202
        calls["fwd"] += 1
        return fwd(*a)

    def count_bwd(*a):  # noqa: ANN002, ANN202
        calls["bwd"] += 1
        return bwd(*a)

    monkeypatch.setattr(tk, "nonneg_forward", count_fwd)
    monkeypatch.setattr(tk, "nonneg_backward", count_bwd)
    gen = torch.Generator().manual_seed(8)
    bound = 0.25
    raw = torch.rand(40, 40, generator=gen, dtype=torch.float64)
    raw.view(-1)[:6] = torch.tensor([0.1, 0.1, 0.25, 0.25, 0.5, 0.5], dtype=torch.float64)
    g = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    g.view(-1)[:6] = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    results = []
    for dtype in (torch.float32, torch.float64):  # float64 stays in PyTorch ops
        p = raw.to(dtype).requires_grad_()
        v = base._NonNegativeValue.apply(p, bound, base.PEDESTAL)
        v.backward(g.to(dtype))
        results.append([v.detach(), p.grad])
    assert calls == {"fwd": 1, "bwd": 1}
    assert (results[0][1].view(-1)[:6] == 0).tolist() == [True, False, False, False, False, False]
    _assert_near_float64(*results, "NonNegative")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_bounds_rounded_as_torch_rounds_a_number(dtype):
    """The kernels' bound for a parameter of this type equals torch's conversion of the Python number."""
    from lateralnorm.norms import triton_kernel as tk

    gen = torch.Generator().manual_seed(0)
    values = [0.02457264123503261, 2.0**-9, 1.0, 1 / 3, 65519.0, 65520.0, 1e6, 3.4e38, 1e39] + (
        torch.rand(200, generator=gen, dtype=torch.float64) * 4
    ).tolist()
    for v in values:
        want = torch.tensor(v, dtype=dtype).item() if dtype != torch.float32 else v
        assert tk._bound_in(dtype, v) == want, (dtype, v)
    assert tk._bound_in(dtype, None) == 0.0


def test_bfloat16_parameters_at_their_floor_as_the_pytorch_route(monkeypatch):
    """A bfloat16 β initialized at its floor: its raw value rounds to the bound rounded to bfloat16, which is
    where the PyTorch route compares it; the kernels compare with the same rounded bound, so the gradient
    passes in both (it was stopped in the kernels when they compared with the float32 bound: a review's case)."""
    monkeypatch.setenv("LATERALNORM_CPU_KERNEL", "torch")
    torch.manual_seed(3)
    x = (torch.randn(6, 8) * 2).to(torch.bfloat16)
    grads = {}
    for route in ("torch", "triton"):
        monkeypatch.setenv("LATERALNORM_CUDA_KERNEL", route)
        m = create_norm("dn:beta=0,eps=6e-4,kappa=self", 8, dtype=torch.bfloat16)
        (-m(x).float().sum()).backward()  # a descent step would push β down: stopped below its bound only
        grads[route] = m.beta.raw.grad.float()
    assert (grads["torch"] != 0).all()
    torch.testing.assert_close(grads["triton"], grads["torch"], rtol=0.05, atol=1e-3)


def test_low_precision_rows_and_channels_first(triton_rows):
    m = create_norm("dn:kappa=band:1", 8, layout="channels_first")
    x = (torch.randn(2, 8, 3, 3) * 3).to(torch.bfloat16).requires_grad_()
    y = m(x)
    y.float().sum().backward()
    assert y.dtype == torch.float32  # bf16 input, float32 parameters: the PyTorch kernel's type promotion
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()
    assert triton_rows["fwd"] == 1 and triton_rows["bwd"] == 1


def test_default_is_the_pytorch_kernel(monkeypatch):
    from lateralnorm.norms import dn_kernel

    monkeypatch.delenv("LATERALNORM_CUDA_KERNEL", raising=False)
    assert not dn_kernel._triton_applies(torch.randn(2, 4), "uniform")


def test_opting_in_without_triton_is_a_clear_error(monkeypatch):
    import lateralnorm.norms
    from lateralnorm.norms import dn_kernel

    monkeypatch.setenv("LATERALNORM_CUDA_KERNEL", "triton")
    monkeypatch.delattr(lateralnorm.norms, "triton_kernel", raising=False)  # imported afresh ...
    monkeypatch.delitem(sys.modules, "lateralnorm.norms.triton_kernel", raising=False)
    monkeypatch.setitem(sys.modules, "triton", None)  # ... on a machine without Triton
    with pytest.raises(RuntimeError, match="LATERALNORM_CUDA_KERNEL=triton but Triton cannot be imported"):
        dn_kernel._triton_applies(torch.randn(2, 4), "uniform")


@pytest.mark.parametrize("spec", ["dn:kappa=band:5", "dn:preset=ln", "dn"])
def test_wider_rows(spec, triton_rows):
    """N = 100 (a block of 128 lanes, 28 masked) and an 11-tap window."""
    torch.manual_seed(2)
    m32 = create_norm(spec, 100)
    m64 = create_norm(spec, 100, dtype=torch.float64)
    m64.load_state_dict(m32.state_dict())
    x = torch.randn(5, 100, dtype=torch.float64)
    g = torch.randn_like(x)
    got, ref = _run(m32, x.float(), g.float()), _run(m64, x, g)
    assert triton_rows == {"fwd": 1, "bwd": 1}
    for a, b in zip(got, ref):
        assert ((a.double() - b).abs().max() / (1e-3 + b.abs().max())).item() <= 2e-5


def test_backward_programs_take_every_pth_row(monkeypatch):
    """The backward runs a fixed number of programs per device, each over every P-th row with its column sums in
    registers: one program for all rows, or one per row, give the same gradients as the float64 kernel."""
    from lateralnorm.norms import triton_kernel as tk

    assert tk.row_programs(7, torch.device("cpu")) == min(7, tk.INTERPRETER_PROGRAMS)
    assert tk.row_programs(1, torch.device("cpu")) == 1
    assert tk.warps(128) == 4 and tk.warps(2048) == 8 and tk.warps(4096) == 16 and tk.warps(16384) == 32
    monkeypatch.setenv("LATERALNORM_CUDA_KERNEL", "triton")
    monkeypatch.setenv("LATERALNORM_CPU_KERNEL", "torch")
    torch.manual_seed(3)
    x = torch.randn(9, 20, dtype=torch.float64) * 2
    g = torch.randn_like(x)
    for spec in ("dn:kappa=band:2", "dn", "dn:fn=signed,center=true,r=0.5"):
        m32 = create_norm(spec, 20)
        with torch.no_grad():
            for p in m32.parameters():
                p.add_(0.1 * torch.rand_like(p))
        m64 = create_norm(spec, 20, dtype=torch.float64)
        m64.load_state_dict(m32.state_dict())
        ref = _run(m64, x, g)
        for programs in (1, 4, 9):
            monkeypatch.setattr(tk, "INTERPRETER_PROGRAMS", programs)
            m32.zero_grad(set_to_none=True)
            got = _run(m32, x.float(), g.float())
            for i, (a, b) in enumerate(zip(got, ref)):
                err = ((a.double() - b).abs().max() / (1e-3 + b.abs().max())).item()
                assert err <= 2e-5, f"{spec}, {programs} programs, tensor #{i}: relative error {err:.1e}"


MATRIX_SPECS = [
    "dn:kappa=full",
    "gdn",
    "dn:kappa=lowrank:4",
    "dn:kappa=gaussian",
    "dn:kappa=full,fn=signed,center=true,r=0.5",
    "dn:kappa=full,alpha=1.5,r=0.7",
    "dn:kappa=full,alpha=3,p=1",
    "dn:kappa=full,affine=false",
]


@pytest.fixture
def triton_matrix(monkeypatch):
    """Route a matrix pool's float32 element work to the Triton kernels (interpreted) and count the launches."""
    from lateralnorm.norms import triton_kernel as tk

    monkeypatch.setenv("LATERALNORM_CUDA_KERNEL", "triton")
    monkeypatch.setenv("LATERALNORM_CPU_KERNEL", "torch")
    calls = {name: 0 for name in ("psi_forward", "psi_backward", "given_forward", "given_backward")}
    for name in calls:
        original = getattr(tk, name)

        def counted(*a, _name=name, _fn=original, **k):  # noqa: ANN002, ANN003, ANN202
            calls[_name] += 1
            return _fn(*a, **k)

        monkeypatch.setattr(tk, name, counted)
    return calls


@pytest.mark.parametrize("spec", MATRIX_SPECS)
def test_matrix_pool_element_work_equals_float64(spec, triton_matrix):
    """κ gaussian, low-rank, full and GDN: ψ and the output from the pool in Triton around the pool's own matmuls,
    every gradient (input, κ's parameters, β, γ, b) against the float64 PyTorch path."""
    m32, m64, x, g = _pair(spec)
    got = _run(m32, x.float(), g.float())
    assert triton_matrix == dict.fromkeys(triton_matrix, 1)
    ref = _run(m64, x, g)
    assert triton_matrix == dict.fromkeys(triton_matrix, 1)  # float64 rows stay on the PyTorch path
    assert len(got) == len(ref) >= 3
    _assert_near_float64(got, ref, spec)


@pytest.mark.parametrize("case", ["kappa frozen", "input frozen", "parameters first"])
def test_matrix_pool_input_gradient_through_the_share(case, triton_matrix):
    """The output kernel hands its share of the input gradient to ψ's kernel, which adds it: right with κ fixed
    (W depends on the input only through ψ), with a frozen input (no share), and when a first backward asks for
    the parameters alone (a share that ψ's node never takes) and a second for the input alone."""
    spec = "dn:kappa=full,learn_kappa=false" if case == "kappa frozen" else "dn:kappa=full"
    m32, m64, x, g = _pair(spec)
    results = []
    for m, xx, gg in ((m32, x.float(), g.float()), (m64, x, g)):
        xx = xx.clone().requires_grad_(case != "input frozen")
        params = list(m.parameters())
        out = m(xx)
        if case == "parameters first":
            grads = list(torch.autograd.grad(out, params, gg)) + list(torch.autograd.grad(m(xx), xx, gg))
        else:
            out.backward(gg)
            grads = [xx.grad] + [p.grad for p in params]
        results.append([out.detach()] + [t for t in grads if t is not None])
    assert len(results[0]) == (len(list(m32.parameters())) + (1 if case == "input frozen" else 2))
    _assert_near_float64(*results, case)


def test_matrix_pool_double_backward_and_bfloat16(triton_matrix):
    """create_graph=True differentiates the plain formula (a Hessian-vector product as the float64 path's), and a
    bfloat16 GDN on channels-first input runs in the kernels with finite gradients."""
    torch.manual_seed(1)
    m32 = create_norm("dn:kappa=full,fn=signed,center=true", 9)
    m64 = create_norm("dn:kappa=full,fn=signed,center=true", 9, dtype=torch.float64)
    m64.load_state_dict(m32.state_dict())
    x64 = torch.randn(5, 9, dtype=torch.float64)
    v = torch.randn_like(x64)

    def hvp(m, x):  # noqa: ANN001, ANN202
        x = x.clone().requires_grad_()
        (gx,) = torch.autograd.grad(m(x).pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad((gx * v.to(x.dtype)).sum(), x)[0]

    got, ref = hvp(m32, x64.float()), hvp(m64, x64)
    assert triton_matrix["psi_forward"] == 1 and triton_matrix["given_forward"] == 1
    assert ((got.double() - ref).abs().max() / ref.abs().max()).item() <= 1e-4
    gdn = create_norm("gdn", 6, layout="channels_first").to(torch.bfloat16)
    x = (torch.randn(2, 6, 3, 3) * 3).to(torch.bfloat16).requires_grad_()
    y = gdn(x)
    y.float().sum().backward()
    assert (
        y.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()
    )
    assert all(p.grad is not None and torch.isfinite(p.grad.float()).all() for p in gdn.parameters())
    assert triton_matrix["given_backward"] == 2


LOWER_ALL = r"""
import itertools, sys
try:
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource, make_backend
except (ImportError, AttributeError) as e:
    print("UNREACHABLE", e)
    sys.exit(0)
from lateralnorm.norms import triton_kernel as tk

target = GPUTarget("cuda", 90, 32)
backend = make_backend(target)
opts = backend.parse_options({"num_warps": 4})
failed, done = [], 0

def lower(fn, signature, constants):
    global done
    ctx = ir.context()
    ir.load_dialects(ctx)
    backend.load_dialects(ctx)
    try:
        ASTSource(fn, signature, constants).make_ir(
            target, opts, backend.get_codegen_implementation(opts), backend.get_module_map(), ctx)
    except Exception as e:
        lines = [x for x in str(e).splitlines() if x.strip(" ^")]
        failed.append(f"{fn.__name__} {constants}: {(lines or ['?'])[-1][:200]}")
    done += 1

f32 = "*fp32"
rows = dict(MEAN=f32, WSAVE=f32, BETA=f32, C=f32, GAMMA=f32, N="i32", alpha="fp32", p="fp32", r="fp32",
            beta_bound="fp32", c_bound="fp32", pedestal="fp32")
# β and c as the layer holds them: (per unit?, raw parameter?) each
params = ((1, 1, True, True), (0, 0, False, False), (1, 0, True, True), (1, 1, False, False), (0, 1, True, False))
kept = 0
for kind, center, rect, a2, pmode, rmode in itertools.product(
        (0, 1, 2), (False, True), (False, True), (False, True), (0, 1, 2), (0, 1, 2)):
    if (pmode + rmode + rect + a2) % 3:  # a third of the combinations, each with two of the parameter forms
        continue
    kept += 1
    for bv, cv, braw, craw in (params[kept % 5], params[(kept + 2) % 5]):
        modes = dict(RECT=rect, A2=a2, PMODE=pmode, RMODE=rmode, KIND=kind, CENTER=center, BETA_VEC=bv,
                     C_VEC=cv, BETA_RAW=braw, C_RAW=craw, BEFORE=2, AFTER=1, BLOCK=128)
        has_gamma, has_bias = kept % 2 == 0, kept % 3 != 0  # an affine, γ alone, b alone (`bias=false`), none
        lower(tk._fwd, dict(Y="*bf16", OUT="*bf16", BIAS=f32, **rows),
              dict(SAVE_W=kind == 2, HAS_GAMMA=has_gamma, HAS_BIAS=has_bias, **modes))
        lower(tk._bwd, dict(Y="*bf16", G="*bf16", GY="*bf16", PART=f32, M="i32", **rows),
              dict(HAS_GAMMA=has_gamma, **modes))
for bv, cv, braw, craw, need_b, need_c in itertools.product((0, 1), (0, 1), *[(False, True)] * 4):
    if need_b or need_c:
        lower(tk._param_grads, dict(SUMS=f32, BETA="*bf16", C=f32, GB="*bf16", GC=f32, GG="*bf16", GBIAS="*bf16",
                                    N="i32", r="fp32", beta_bound="fp32", c_bound="fp32"),
              dict(BETA_VEC=bv, C_VEC=cv, BETA_RAW=braw, C_RAW=craw, NEED_BETA=need_b, NEED_C=need_c,
                   NEED_GAMMA=braw, NEED_BIAS=craw, BLOCK=128))
for i, (center, rect, a2, pmode, rmode) in enumerate(
        itertools.product((False, True), (False, True), (False, True), (0, 1, 2), (0, 2))):
    flags = dict(CENTER=center, RECT=rect, A2=a2, BLOCK=128)
    lower(tk._psi_fwd, dict(Y="*bf16", PSI="*bf16", N="i32", alpha="fp32"), flags)
    lower(tk._psi_bwd, dict(Y="*bf16", GPSI="*bf16", GY="*bf16", ADD="*bf16", N="i32", alpha="fp32"),
          dict(HAS_ADD=i % 2 == 0, **flags))
    given = dict(Y="*bf16", W="*bf16", BETA=f32, GAMMA=f32, N="i32", alpha="fp32", p="fp32", r="fp32",
                 beta_bound="fp32", pedestal="fp32")
    bv, braw = ((1, True), (1, False), (0, True))[i % 3]
    gmodes = dict(PMODE=pmode, RMODE=rmode, BETA_VEC=bv, BETA_RAW=braw, HAS_GAMMA=i % 2 == 0, **flags)
    lower(tk._given_fwd, dict(BIAS=f32, OUT="*bf16", **given), dict(HAS_BIAS=i % 3 != 0, **gmodes))
    lower(tk._given_bwd, dict(G="*bf16", GY="*bf16", GW="*bf16", PART=f32, M="i32", **given), gmodes)
lower(tk._nonneg_fwd, dict(RAW="*bf16", OUT="*bf16", NUMEL="i32", bound="fp32", pedestal="fp32"), dict(BLOCK=1024))
lower(tk._nonneg_bwd, dict(G="*bf16", RAW="*bf16", GRAW="*bf16", NUMEL="i32", bound="fp32"), dict(BLOCK=1024))
print("LOWERED", done)
for line in failed:
    print("FAILED", line)
"""


def test_every_kernel_lowers_for_a_gpu_target():
    """Each kernel, in the modes its host code launches, passes the GPU compiler's front end for an sm_90
    target on the CPU (no GPU, no CUDA; a fresh process without TRITON_INTERPRET). The interpreter runs code that
    does not compile: a per-unit β once returned a block in one branch and a scalar in the other."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", LOWER_ALL], env=env, capture_output=True, text=True, timeout=600
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    if out.startswith("UNREACHABLE"):
        pytest.skip(f"Triton's compiler front end is not reachable here: {out}")
    failures = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert not failures, "\n".join(failures[:10])
    assert int(out.split("LOWERED")[1].split()[0]) == 530


@pytest.mark.parametrize("spec", ["dn:kappa=band:2", "dn:kappa=full"])
def test_create_graph_on_a_non_contiguous_input_in_the_kernels(spec, monkeypatch):
    """The Triton nodes save their inputs themselves (made contiguous before the node): create_graph=True on a
    transposed input differentiates the formula instead of failing on a copy without gradient history."""
    monkeypatch.setenv("LATERALNORM_CUDA_KERNEL", "triton")
    monkeypatch.setenv("LATERALNORM_CPU_KERNEL", "torch")
    torch.manual_seed(5)
    m = create_norm(spec, 6)
    x = torch.randn(6, 5).T.requires_grad_()
    (graphed,) = torch.autograd.grad(m(x).pow(2).sum(), x, create_graph=True)
    xx = x.detach().contiguous().requires_grad_()
    (plain,) = torch.autograd.grad(m(xx).pow(2).sum(), xx)
    torch.testing.assert_close(graphed, plain, atol=1e-5, rtol=1e-4)


def _launches_script():  # noqa: ANN202
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "launches.py"
    spec = importlib.util.spec_from_file_location("launches", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "spec, want",
    [
        ("dn", {"_fwd": 1, "_bwd": 1, "_param_grads": 1, "sum": 1}),
        ("dn:kappa=band:2", {"_fwd": 1, "_bwd": 1, "_param_grads": 1, "sum": 1}),
        ("dn:preset=ln", {"_fwd": 1, "_bwd": 1, "sum": 1}),
        ("dn:kappa=full", {"_psi_fwd": 1, "_psi_bwd": 1, "_given_fwd": 1, "_given_bwd": 1, "_param_grads": 1,
                           "_nonneg_fwd": 1, "_nonneg_bwd": 1, "mm": 3, "sum": 1}),
    ],
)  # fmt: skip
def test_a_triton_step_launches_no_small_ops(spec, want):
    """What one forward+backward on the Triton route launches (`benchmarks/launches.py` counts the PyTorch ops
    that do device work and the Triton kernels, which it stubs): the kernels, κ's own matmuls and the column
    sums' one reduction, and none of the small element-wise ops that reparametrized β, c and κ around them
    (stop 34: 28 launches for `dn`, 33 for κ full; nn.LayerNorm's step is 2, nn.Linear's 4)."""
    launches = _launches_script()
    for dtype in (torch.float32, torch.bfloat16):  # γ, b and β raw in their own type: no casts either
        m = create_norm(spec, 40, dtype=dtype)
        ops, kernels = launches.count_step(m, torch.randn(6, 40, dtype=dtype), "triton")
        if dtype == torch.bfloat16:  # γ's and b's gradients written in their type; the band backward reads γ
            want = {**want, "_param_grads": 1, **({"_to_copy": 1} if "band" in spec else {})}  # in float32
        assert {**ops, **kernels} == want, dtype


@pytest.mark.slow
def test_every_kernel_compiles_to_machine_code_for_sm90():
    """`benchmarks/triton_compile.py`: each kernel, in the modes section t times, all the way to a cubin for
    sm_90a with the ptxas Triton ships (no GPU: nothing is launched), with its registers and spills printed."""
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "triton_compile.py"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, str(script), "--widths", "64"], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rows = [line for line in done.stdout.splitlines() if " N=64 " in line or line.startswith("_nonneg")]
    assert len(rows) == 38 and done.stdout.rstrip().endswith("0 failed")


@pytest.mark.parametrize("spec", ["dn", "dn:kappa=band:2", "gdn", "dn:kappa=full"])
def test_a_bfloat16_input_to_a_float32_layer_computes_in_float32(spec, monkeypatch):
    """The Triton route promotes as the PyTorch route does: a bfloat16 input to a float32 layer gives float32
    (GDN used to give float32 here and bfloat16 there), the input's gradient in bfloat16, and the numbers of
    the float32 input through the same route."""
    from lateralnorm.norms import triton_kernel as tk

    monkeypatch.setenv("LATERALNORM_CUDA_KERNEL", "triton")
    monkeypatch.setenv("LATERALNORM_CPU_KERNEL", "torch")
    launched = []
    for name in ("rows_forward", "given_forward"):
        original = getattr(tk, name)

        def counted(*a, _fn=original, **k):  # noqa: ANN002, ANN003, ANN202
            launched.append(a[0].dtype)
            return _fn(*a, **k)

        monkeypatch.setattr(tk, name, counted)
    torch.manual_seed(0)
    m = create_norm(spec, 12)
    x = torch.randn(5, 12).bfloat16().requires_grad_()
    out = m(x)
    assert out.dtype == torch.float32 and launched and set(launched) == {torch.float32}
    g = torch.randn_like(out)
    out.backward(g)
    assert x.grad.dtype == torch.bfloat16
    x32 = x.detach().float().requires_grad_()
    ref = m(x32)
    ref.backward(g)
    assert torch.equal(out.detach(), ref.detach())
    assert torch.equal(x.grad, x32.grad.bfloat16())
