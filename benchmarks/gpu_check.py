"""One-shot check of lateralnorm on a CUDA GPU: exactness, gradients, every registered norm, the models and
the trainer, and informational timings. Meant for a lent GPU machine that has a CUDA build of torch but
not this repo's virtual environment.

    python3 benchmarks/gpu_check.py                  # device cuda (default); exits 3 without CUDA
    python3 benchmarks/gpu_check.py --device cpu --quick   # the same checks on CPU, small timings

Sections a and b are also the test suite's `gpu` tests (tests/test_gpu.py, skipped without CUDA;
`LATERALNORM_TEST_DEVICE=cpu pytest -m gpu` runs them on the CPU); this script is the one-shot runner for a
machine without this repository's environment, and the home of the timing tables (section c).

Imports lateralnorm from this repo's src/ (no install needed). Needs torch (>= 2.4) and Python >= 3.11;
lateralnorm.norms needs nothing else. Section b needs more: `lateralnorm.models` and `lateralnorm.train`
import pydantic (through lateralnorm.runconfig), the data loaders import numpy, and the MNIST-1D run needs
the `mnist1d` package (which imports scipy, matplotlib and requests). Checks whose imports fail are
reported as SKIPPED with the reason; they never count as failures. To run section b on a machine without
them, carry wheels (pydantic, pydantic_core for its Python, annotated_types, typing_inspection, mnist1d),
`pip install --no-index --no-deps --target /tmp/site` them there and set PYTHONPATH=/tmp/site.

Sections (PASS/FAIL per row):
  a. exactness of the dn presets and the named layers against torch's layers / GDN's closed form in float32
     (tol 1e-5) and float64 (tol 1e-10) on normal, ×1e4, near-constant (3 + 0.01·noise), tiny and zero
     inputs; the fused backward of every O(N) dn variant against autograd through the module's own
     formula (`DivisiveNorm._formula`) in float64 (tol 1e-10); every registered norm (and the variants the
     registry tests add) forward+backward without NaN in float32 and bfloat16 in both layouts, close to
     float64, and equal to the same module on the CPU in float64.
     A float32 row passes when it is within tol of torch's float32 layer or of the float64 answer on the
     same input (torch's own float32 LayerNorm is ~3e-5 off on near-constant rows; see
     tests/test_norms_exact.py).
  b. each model family builds with `ln` and a `dn` spec, one AdamW step on a random batch; 1-epoch trainer
     runs (`lateralnorm.train.run`) on a toy data set and, when mnist1d imports, on MNIST-1D.
  c. informational: forward+backward time (median of rounds, CUDA events) and peak extra memory
     (torch.cuda.max_memory_allocated) of one step, as ratios to nn.LayerNorm in the same process.
  t. (asked for by name: --sections at) issue 13's target 5: the O(N) dn forms on the Triton kernels
     ≤ 1.5× nn.LayerNorm and dn:kappa=full ≤ 1.3× nn.Linear at (1024, 512) and (8192, 4096), float32 and
     bfloat16, one PASS/FAIL row per ratio (not in the exit status).

Exit status: 0 when every check in a and b passed or was skipped, 1 when one failed, 3 when device cuda
was asked for and CUDA is not available. With $OUT set the whole output also goes to $OUT/gpu_check.txt.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16


# ----------------------------------------------------------------------------------------------- output
class Log:
    """Print to stdout and, when $OUT is set, to $OUT/gpu_check.txt (written as it goes)."""

    def __init__(self) -> None:
        self.file = None
        out = os.environ.get("OUT")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            self.file = open(Path(out) / "gpu_check.txt", "w")  # noqa: SIM115 - open for the whole run

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        if self.file is not None:
            self.file.write(text + "\n")
            self.file.flush()


log = Log()


class Skip(Exception):
    """A check that cannot run here (a missing package): reported as SKIPPED, never a failure."""


class Results:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []  # (status, section, name, detail)
        self.tracebacks: list[str] = []

    def check(self, section: str, name: str, fn: Callable[[], tuple[bool | None, str]]) -> None:
        """Run fn() → (ok, detail); ok None (part could not run, the rest passed) or Skip is SKIPPED,
        an exception is a FAIL with its message."""
        try:
            ok, detail = fn()
            status = "SKIPPED" if ok is None else "PASS" if ok else "FAIL"
        except Skip as e:
            status, detail = "SKIPPED", str(e)
        except Exception as e:  # noqa: BLE001 - one broken check must not stop the others
            status, detail = "FAIL", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.tracebacks.append(f"[{section}] {name}\n{traceback.format_exc()}")
        self.rows.append((status, section, name, detail))
        log(f"{status:<7} {section:<9} {name:<40} {detail}")

    def failed(self, sections: tuple[str, ...]) -> int:
        return sum(1 for s, sec, _, _ in self.rows if s == "FAIL" and sec.startswith(sections))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference, compared on the CPU in float64 (a and b may live on different devices)."""
    return (a.detach().cpu().double() - b.detach().cpu().double()).abs().max().item()


# ------------------------------------------------------------------------------------- a. exactness
def inputs(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g, dtype=F64)
    cases = {
        "normal": base,
        "large": base * 1e4,
        "near_constant": 3.0 + 0.01 * base,
        "tiny": base * 1e-3,
        "zeros": torch.zeros(shape, dtype=F64),
    }
    return {k: v.to(device=device, dtype=dtype) for k, v in cases.items()}


def randomize_affine(*mods: nn.Module) -> None:
    g = torch.Generator().manual_seed(7)
    w = torch.rand(mods[0].weight.shape, generator=g) + 0.5
    b = torch.randn(mods[0].weight.shape, generator=g)
    with torch.no_grad():
        for m in mods:
            m.weight.copy_(w)
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(b)


def rms_reference(n: int, eps: float, dtype: torch.dtype, device: torch.device) -> nn.Module:
    if hasattr(nn, "RMSNorm"):
        return nn.RMSNorm(n, eps=eps, dtype=dtype, device=device)

    class RMS(nn.Module):  # torch < 2.4 has no nn.RMSNorm
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n, dtype=dtype, device=device))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * self.weight

    return RMS()


def gdn_closed_form(y: torch.Tensor, kappa: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """z_i = y_i / sqrt(β_i + Σ_j κ_ij y_j²), channels on axis 1."""
    y2 = y.square().movedim(1, -1)  # (B, ..., C)
    den = beta.to(y.dtype) + y2 @ kappa.to(y.dtype).T
    return y / den.sqrt().movedim(-1, 1)


Pair = tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]


def exact_rows(create_norm: Callable[..., nn.Module]) -> list[tuple[str, str, list, Callable[..., Pair]]]:
    """(label, layout, shapes, make(n, dtype, device) → (ours, reference)) for every exactness row."""

    def affine_pair(spec: str, eps: float, ref_factory: Callable[..., nn.Module]) -> Callable[..., Pair]:
        def make(n: int, dtype: torch.dtype, device: torch.device) -> Pair:
            ours = create_norm(spec, n, eps=eps, dtype=dtype, device=device)
            ref = ref_factory(n, eps=eps, dtype=dtype, device=device)
            randomize_affine(ours, ref)
            return ours, ref

        return make

    def plain(spec: str, ref: Callable, layout: str = "last") -> Callable[..., Pair]:
        def make(n: int, dtype: torch.dtype, device: torch.device) -> Pair:
            return create_norm(spec, n, layout=layout, dtype=dtype, device=device), ref

        return make

    def gdn_random(spec: str) -> Callable[..., Pair]:
        def make(n: int, dtype: torch.dtype, device: torch.device) -> Pair:
            m = create_norm(spec, n, layout="channels_first", dtype=dtype, device=device)
            g = torch.Generator().manual_seed(3)
            with torch.no_grad():  # arbitrary non-negative κ and β through the parametrization
                m.kappa.raw.copy_(torch.rand(n, n, generator=g, dtype=F64).to(dtype))
                m.beta.raw.copy_((torch.rand(n, generator=g, dtype=F64) + 0.5).to(dtype))
                kappa, beta = m.kappa_matrix().detach(), m.beta_value().detach()
            if not ((kappa >= 0).all() and (beta > 0).all()):
                raise AssertionError("κ or β negative after the reparametrization")
            return m, lambda y: gdn_closed_form(y, kappa, beta)

        return make

    softmax = lambda x: torch.softmax(x, -1)
    lrn = nn.LocalResponseNorm(5)
    gdn_init = lambda y: y / torch.sqrt(1 + 0.1 * y.square())  # β = 1, κ = 0.1·I at initialization
    ln_shapes, lrn_shapes = [(32, 64), (16, 8, 768)], [(4, 16, 25), (4, 16, 5, 5), (8, 64, 7, 7)]
    sm_shapes, gdn_shapes = [(16, 32), (8, 4, 1000)], [(3, 12, 16), (3, 12, 4, 4), (4, 64, 7, 7)]
    return [
        ("dn:preset=ln", "last", ln_shapes, affine_pair("dn:preset=ln", 1e-5, nn.LayerNorm)),
        ("ln", "last", ln_shapes, affine_pair("ln", 1e-5, nn.LayerNorm)),
        ("dn:preset=rms", "last", ln_shapes, affine_pair("dn:preset=rms", 1e-6, rms_reference)),
        ("rms", "last", ln_shapes, affine_pair("rms", 1e-6, rms_reference)),
        ("dn:preset=lrn", "channels_first", lrn_shapes, plain("dn:preset=lrn", lrn, "channels_first")),
        ("lrn", "channels_first", lrn_shapes, plain("lrn", lrn, "channels_first")),
        ("dn:preset=softmax", "last", sm_shapes, plain("dn:preset=softmax", softmax)),
        ("softmax", "last", sm_shapes, plain("softmax", softmax)),
        (
            "softmax:temperature=2",
            "last",
            sm_shapes,
            plain("softmax:temperature=2", lambda x: softmax(x / 2)),
        ),
        ("gdn (init)", "channels_first", gdn_shapes, plain("gdn", gdn_init, "channels_first")),
        ("gdn (random κ, β)", "channels_first", gdn_shapes, gdn_random("gdn")),
        ("dn:preset=gdn (random κ, β)", "channels_first", gdn_shapes, gdn_random("dn:preset=gdn")),
    ]


def check_exact(make: Callable[..., Pair], layout: str, shapes: list, dtype: torch.dtype, device) -> tuple:
    """Worst error over shapes and input cases; float32 may match torch's float32 layer or the float64 truth."""
    tol, worst, where = TOL[dtype], 0.0, ""
    with torch.no_grad():
        for shape in shapes:
            n = shape[-1] if layout == "last" else shape[1]
            ours, ref = make(n, dtype, device)
            ref64 = copy.deepcopy(ref).double() if isinstance(ref, nn.Module) else ref
            for case, x in inputs(shape, dtype, device).items():
                z = ours(x)
                if not torch.isfinite(z).all():
                    return False, f"non-finite output on {case} {shape}"
                z_ref = ref(x)
                e_ref = max_err(z, z_ref)
                e_truth = max_err(z, ref64(x.double())) if dtype != F64 else e_ref
                err = min(e_ref, e_truth)
                if err >= worst:
                    top = z_ref.abs().max().item()
                    worst, where = (
                        err,
                        f"{case} {tuple(shape)} (torch {e_ref:.1e}, f64 {e_truth:.1e}; |z| <= {top:.3g})",
                    )
    sync(device)
    return worst <= tol, f"max err {worst:.2e} <= {tol:.0e}? worst: {where}"


GRAD_SPECS = ["dn", "dn:kappa=self", "dn:kappa=band:5", "dn:preset=ln", "dn:preset=lrn", "dn:fn=signed,center=true"]  # fmt: skip


def check_fused_grad(create_norm: Callable[..., nn.Module], spec: str, device: torch.device) -> tuple:
    """The module's forward (fused kernel) against autograd through its own `_formula`, float64."""
    torch.manual_seed(0)
    m = create_norm(spec, 64, dtype=F64, device=device)
    if not getattr(m, "_fusable", False):
        return False, "the fused kernel is not used for this spec (_fusable is False)"
    with torch.no_grad():  # move every parameter off its initial value
        for p in m.parameters():
            p.add_(0.1 * torch.rand_like(p))
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(16, 8, 64, generator=gen, dtype=F64) * 2).to(device)
    x[0, 0] = 0.0  # a row of exact zeros (ψ' at 0)
    g = torch.randn(x.shape, generator=gen, dtype=F64).to(device)

    def run(fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple:
        m.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_()
        y = fn(xx)
        y.backward(g)
        return y.detach(), xx.grad, {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    y_f, gx_f, gp_f = run(m)
    y_p, gx_p, gp_p = run(m._formula)
    sync(device)
    if set(gp_f) != set(gp_p):
        return False, f"parameter grads differ in which exist: {sorted(gp_f)} vs {sorted(gp_p)}"
    e_y, e_x = max_err(y_f, y_p), max_err(gx_f, gx_p)
    e_p = max((max_err(gp_f[k], gp_p[k]) for k in gp_f), default=0.0)
    ok = max(e_y, e_x, e_p) <= 1e-10
    return ok, f"|Δy| {e_y:.1e}  |Δdx| {e_x:.1e}  |Δdparams| {e_p:.1e} ({len(gp_f)} params)  <= 1e-10?"


TRITON_SPECS = [
    "dn", "dn:kappa=self", "dn:kappa=band:2", "dn:kappa=band:5", "dn:preset=ln", "dn:preset=rms",
    "dn:preset=lrn", "dn:fn=signed,center=true,r=0.5", "dn:fn=signed,alpha=1.5,r=0.7", "dn:alpha=3,p=1",
    "dn:alpha=2,p=1,r=0.5", "dn:kappa=band,size=4",
    # a matrix pool: its element work in the Triton kernels around κ's own matmuls
    "dn:kappa=full", "gdn", "dn:kappa=lowrank:4", "dn:kappa=gaussian", "dn:kappa=full,fn=signed,center=true,r=0.5",
]  # fmt: skip


def is_matrix_pool(spec: str) -> bool:
    return spec.startswith("gdn") or any(f"kappa={k}" in spec for k in ("full", "lowrank", "gaussian"))


def check_triton(
    create_norm: Callable[..., nn.Module], spec: str, device: torch.device, interpreted: bool = False
) -> tuple:
    """On CUDA, float32 `dn` with an O(N) pool, or a matrix pool's element work, runs in the Triton kernels:
    output and every gradient against the float64 PyTorch path on the same parameters and input (relative to
    each tensor's scale); bfloat16 forward+backward finite. `interpreted`: on the CPU under Triton's
    interpreter (TRITON_INTERPRET=1; the tests check this check there)."""
    if device.type != "cuda" and not interpreted:
        raise Skip("the Triton kernels run on CUDA only")
    need("triton", "the Triton kernels")
    from lateralnorm.norms import triton_kernel as tk

    calls = {"fwd": 0, "bwd": 0}
    names = ("given_forward", "given_backward") if is_matrix_pool(spec) else ("rows_forward", "rows_backward")
    fwd, bwd = getattr(tk, names[0]), getattr(tk, names[1])

    def count(name: str, fn: Callable) -> Callable:
        def wrapped(*a, **k):  # noqa: ANN002, ANN003, ANN202
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    setattr(tk, names[0], count("fwd", fwd))
    setattr(tk, names[1], count("bwd", bwd))
    before = os.environ.get("LATERALNORM_CUDA_KERNEL")
    os.environ["LATERALNORM_CUDA_KERNEL"] = "triton"  # opt-in
    cpu_before = os.environ.get("LATERALNORM_CPU_KERNEL")
    if interpreted:  # else the compiled CPU kernel takes the CPU rows first
        os.environ["LATERALNORM_CPU_KERNEL"] = "torch"
    try:
        torch.manual_seed(0)
        m32 = create_norm(spec, 48, device=device)
        with torch.no_grad():
            for prm in m32.parameters():
                prm.add_(0.1 * torch.rand_like(prm))
        m64 = create_norm(spec, 48, dtype=F64, device=device)
        m64.load_state_dict(m32.state_dict())
        gen = torch.Generator().manual_seed(1)
        x = (torch.randn(40, 48, generator=gen, dtype=F64) * 2).to(device)
        x[0] = 0.0
        x[1] = 3.0 + 0.01 * torch.randn(48, generator=gen, dtype=F64).to(device)
        g = torch.randn(x.shape, generator=gen, dtype=F64).to(device)
        outs = []
        for m, dtype in ((m32, F32), (m64, F64)):
            xx = x.to(dtype).clone().requires_grad_()
            y = m(xx)
            y.backward(g.to(dtype))
            outs.append([y.detach(), xx.grad] + [p.grad for p in m.parameters()])
        worst = max(max_err(a, b) / (1e-3 + b.abs().max().item()) for a, b in zip(*outs))
        xb = x.to(torch.bfloat16).requires_grad_()
        yb = create_norm(spec, 48, device=device)(xb)
        yb.float().sum().backward()
        finite = all_finite(yb, xb.grad)
        sync(device)
    finally:
        setattr(tk, names[0], fwd)
        setattr(tk, names[1], bwd)
        for key, value in (("LATERALNORM_CUDA_KERNEL", before), ("LATERALNORM_CPU_KERNEL", cpu_before)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if calls["fwd"] < 2 or calls["bwd"] < 2:
        return False, f"the Triton kernels were not used (calls {calls})"
    ok = worst <= 2e-5 and finite
    return ok, f"float32 Triton vs float64: worst relative error {worst:.1e} <= 2e-5?; bf16 finite {finite}"


REGISTRY_EXTRAS = [  # the variants tests/test_norms_registry.py adds to every registered name
    "dn:kappa=self", "dn:kappa=band:2", "dn:kappa=gaussian", "dn:kappa=lowrank:2", "dn:kappa=full",
    "dn:alpha=1.5,learn_alpha=true", "dn:fn=signed,center=true,r=0.5", "dn:fn=exp,alpha=1,r=1,beta=0.5",
    "dn:preset=ln", "dn:preset=softmax", "lng:groups=4", "gelu>ln", "relu>ln", "elu>dn:alpha=2", "ln>relu",
]  # fmt: skip
N_REG = 32
REG_SHAPES = {"last": [(64, N_REG), (8, 16, N_REG)], "channels_first": [(64, N_REG, 16), (8, N_REG, 6, 6)]}


def all_finite(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


def check_registry_spec(create_norm: Callable[..., nn.Module], spec: str, device: torch.device) -> tuple:
    """float32 and bfloat16 forward+backward in both layouts (finite, right shape and dtype), close to float64;
    float64 on the device equals float64 on the CPU (output, input and parameter grads). With --device cpu
    a bfloat16 op that torch's CPU build lacks is noted as not run (on CUDA it is a failure)."""
    problems, skipped = [], []
    for dtype in (F32, BF16):
        for layout, shapes in REG_SHAPES.items():
            torch.manual_seed(0)
            m = create_norm(spec, N_REG, layout=layout).to(device=device, dtype=dtype)
            for shape in shapes:
                x = (torch.randn(shape, device=device) * 3).to(dtype).requires_grad_()
                try:
                    y = m(x)
                except NotImplementedError as e:
                    if device.type != "cpu" or dtype is not BF16:
                        raise
                    skipped.append(f"bfloat16 {layout} {shape}: torch CPU: {str(e).splitlines()[0]}")
                    continue
                y.backward(torch.randn_like(y))
                grads = [p.grad for p in m.parameters()]
                if y.shape != x.shape or y.dtype != dtype:
                    problems.append(f"{dtype} {layout} {shape}: got {tuple(y.shape)} {y.dtype}")
                elif not all_finite(y, x.grad, *grads):
                    problems.append(f"{str(dtype)[6:]} {layout} {shape}: non-finite output or grad")
        # closeness to float64 (as tests/test_norms_registry.py: tol 1e-4 float32, 0.1 bfloat16)
        torch.manual_seed(0)
        m, m64 = create_norm(spec, N_REG).to(device, dtype), create_norm(spec, N_REG).to(device, F64)
        m64.load_state_dict(m.state_dict())
        x = torch.randn(4, N_REG, generator=torch.Generator().manual_seed(5), dtype=F64).to(device)
        with torch.no_grad():
            err, ref = max_err(m(x.to(dtype)), m64(x)), m64(x).abs().max().item()
        tol = 1e-4 if dtype is F32 else 0.1
        if not err <= tol * (1 + ref):
            problems.append(f"{str(dtype)[6:]} vs float64: max err {err:.2e} > {tol:g}·(1+{ref:.2g})")
    # the same float64 module and input on the CPU and on the device
    torch.manual_seed(0)
    cpu = create_norm(spec, N_REG, dtype=F64)
    dev = copy.deepcopy(cpu).to(device)
    x = torch.randn(16, N_REG, generator=torch.Generator().manual_seed(6), dtype=F64) * 3
    outs = []
    for mod, xx in ((cpu, x), (dev, x.to(device))):
        xx = xx.clone().requires_grad_()
        y = mod(xx)
        y.backward(torch.ones_like(y))
        outs.append([y, xx.grad, *[p.grad for p in mod.parameters()]])
    worst = max(
        (max_err(a, b) / (1 + b.abs().max().item()) for a, b in zip(*outs) if a is not None), default=0
    )
    if not worst <= 1e-10:
        problems.append(f"float64 {device.type} vs cpu: rel err {worst:.1e}")
    sync(device)
    if problems:
        return False, "; ".join(problems + skipped)
    if skipped:
        return None, "the rest passed; not run: " + "; ".join(skipped)
    return True, f"f32+bf16 × 2 layouts finite, close to f64; cpu-agree {worst:.0e}"


def section_a(res: Results, device: torch.device) -> None:
    from lateralnorm import create_norm, list_norms

    log("\n## a. exactness, fused gradients, registry")
    for label, layout, shapes, make in exact_rows(create_norm):
        for dtype in (F32, F64):
            res.check(
                "a.exact",
                f"{label} {str(dtype)[6:]}",
                partial(check_exact, make, layout, shapes, dtype, device),
            )
    for spec in GRAD_SPECS:
        res.check("a.grad", spec, partial(check_fused_grad, create_norm, spec, device))
    for spec in TRITON_SPECS:
        res.check("a.triton", spec, partial(check_triton, create_norm, spec, device))
    specs = sorted(list_norms()) + REGISTRY_EXTRAS
    for spec in specs:
        res.check("a.registry", spec, partial(check_registry_spec, create_norm, spec, device))


# --------------------------------------------------------------------------------- b. models, trainer
MODEL_NORMS = ["ln", "dn:kappa=band:2"]
# input shape per model family; the others take MNIST-1D signals (40,)
MODEL_SHAPES = {"cnn": (1, 28, 28), "transformer": (1, 28, 28), "gpt": (16,)}
LM_MODELS = {"gpt"}  # language models: tokens (B, T) in, next-token logits (B, T, vocab) out


def skipped(reason: str) -> tuple[bool, str]:
    raise Skip(reason)


def need(module: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError as e:
        raise Skip(f"{what} needs {e.name or module} ({e})") from None


def check_model_step(name: str, norm: str, device: torch.device) -> tuple:
    need("pydantic", "lateralnorm.models")
    from lateralnorm.models import build_model, norm_modules
    from lateralnorm.runconfig import RunConfig

    shape = MODEL_SHAPES.get(name, (40,))
    torch.manual_seed(0)
    model = build_model(RunConfig(model=name, norm=norm, width=32, depth=2), shape, 10).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if name in LM_MODELS:  # byte tokens (vocabulary 10 here) and a next-token target per position
        x, y = (torch.randint(0, 10, (64, *shape), device=device) for _ in range(2))
    else:
        x, y = torch.randn(64, *shape, device=device), torch.randint(0, 10, (64,), device=device)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(x)
    loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grads_ok = all_finite(*[p.grad for p in model.parameters()])
    opt.step()
    moved = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with torch.no_grad():
        after = model.eval()(x)
    sync(device)
    ok = math.isfinite(loss.item()) and grads_ok and moved > 0 and all_finite(after)
    slots = len(norm_modules(model))
    return ok, f"loss {loss.item():.4f}, grads finite {grads_ok}, {moved} tensors stepped, {slots} norm slots"


def check_train_run(dataset: str, model: str, norm: str, device: torch.device) -> tuple:
    need("pydantic", "lateralnorm.train")
    need("numpy", "lateralnorm.data")
    if dataset == "mnist1d":
        need("mnist1d", "the MNIST-1D run")
    from lateralnorm.train import default_config, run

    with tempfile.TemporaryDirectory() as tmp:
        cfg = default_config(
            dataset, model, norm=norm, epochs=1, device=device.type, out_dir=tmp, checkpoint=False
        )
        t0 = time.perf_counter()
        result = run(cfg, progress=False)
        wall = time.perf_counter() - t0
        ran_on = json.loads((Path(tmp) / "config.json").read_text())["device"]
    acc = result.test_acc
    ok = result.status == "done" and acc is not None and math.isfinite(acc) and ran_on.startswith(device.type)
    return ok, f"status {result.status}, test_acc {acc}, ran on {ran_on}, {wall:.1f} s"


def section_b(res: Results, device: torch.device) -> None:
    log("\n## b. models and trainer")
    try:
        need("pydantic", "lateralnorm.models")
        from lateralnorm.models import MODELS
    except Skip as e:
        res.check("b.model", "every model", partial(skipped, str(e)))
        MODELS = ()
    for name in MODELS:
        for norm in MODEL_NORMS:
            res.check("b.model", f"{name} norm={norm}", partial(check_model_step, name, norm, device))
    runs = [  # (dataset, model, norm): spirals needs only numpy, the others the mnist1d package
        ("spirals", "mlp", "dn"), ("mnist1d", "mlp", "ln"), ("mnist1d", "cnn1d", "dn:kappa=band:2"),
        ("mnist1d", "gru", "ln"),
    ]  # fmt: skip
    for dataset, model, norm in runs:
        label = f"train {dataset} {model} norm={norm} 1 epoch"
        res.check("b.train", label, partial(check_train_run, dataset, model, norm, device))


# ----------------------------------------------------------------------------------------- c. timing
TIME_SPECS = ["ln", "dn:preset=ln", "dn", "dn:kappa=self", "dn:kappa=band:5", "dn:preset=lrn", "dn:kappa=full", "gdn"]  # fmt: skip


def step(m: nn.Module, x: torch.Tensor, g: torch.Tensor) -> None:
    x.grad = None
    m(x).backward(g)


def time_steps(m: nn.Module, x: torch.Tensor, g: torch.Tensor, iters: int, device: torch.device) -> float:
    """Seconds per forward+backward, averaged over `iters` back-to-back steps."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step(m, x, g)
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3 / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        step(m, x, g)
    return (time.perf_counter() - t0) / iters


def peak_bytes(m: nn.Module, x: torch.Tensor, g: torch.Tensor, device: torch.device) -> int | None:
    """Peak memory one forward+backward step allocates above what was allocated before it (CUDA only)."""
    if device.type != "cuda":
        return None
    x.grad = None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(m, x, g)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def timing_table(
    title: str, mods: dict[str, nn.Module], shape: tuple, device, rounds: int, iters: int, dtype=F32
) -> dict[str, float]:
    """Log one table (times and peak memory as ratios to the first module) and return the median seconds."""
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    g = torch.randn(shape, device=device, dtype=dtype)
    mods = {k: m.to(device=device, dtype=dtype) for k, m in mods.items()}
    broken: dict[str, str] = {}
    for k, m in list(mods.items()):  # warm up (CUDA context, kernels, allocator); creates the parameter grads
        try:
            for _ in range(3):
                step(m, x, g)
            sync(device)
        except Exception as e:  # noqa: BLE001 - one module that fails (e.g. a kernel that does not compile)
            if k == next(iter(mods)):  # ... but not the reference
                raise
            broken[k] = (
                f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:160] if str(e).strip() else ''}"
            )
            del mods[k]
    times: dict[str, list[float]] = {k: [] for k in mods}
    for _ in range(rounds):  # interleaved, so drift hits every layer alike
        for k, m in mods.items():
            times[k].append(time_steps(m, x, g, iters, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {k: peak_bytes(m, x, g, device) for k, m in mods.items()}
    ref = next(iter(mods))
    log(
        f"\n### {title}: reference {ref} = {med[ref] * 1e3:.3f} ms fwd+bwd (median of {rounds} rounds × {iters})"
    )
    log("| norm | ms fwd+bwd | time × ref | peak MiB | mem × ref | note |")
    log("|---|---|---|---|---|---|")
    for k in mods:
        note = ""
        linear = next((r for r in mods if r.startswith(("nn.Linear", "nn.Conv2d"))), None)
        if k == "dn:kappa=full" and linear:
            note = f"{med[k] / med[linear]:.2f}× {linear}"
        if mem[k] is None:
            mib = ratio = "n/a"
        else:
            mib, ratio = f"{mem[k] / 2**20:.1f}", f"{mem[k] / max(mem[ref], 1):.2f}"
        log(f"| {k} | {med[k] * 1e3:.3f} | {med[k] / med[ref]:.2f} | {mib} | {ratio} | {note} |")
    for k, err in broken.items():
        log(f"| {k} | failed | | | | {err} |")
    return med


TRITON_TIMED = ["dn:preset=ln", "dn", "dn:kappa=self", "dn:kappa=band:5", "dn:preset=lrn"]


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


class WithCudaKernel(nn.Module):
    """Runs a norm with LATERALNORM_CUDA_KERNEL set during its forward (the kernel is chosen there)."""

    def __init__(self, inner: nn.Module, kernel: str) -> None:
        super().__init__()
        self.inner, self.kernel = inner, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = os.environ.get("LATERALNORM_CUDA_KERNEL")
        os.environ["LATERALNORM_CUDA_KERNEL"] = self.kernel
        try:
            return self.inner(x)
        finally:
            if before is None:
                os.environ.pop("LATERALNORM_CUDA_KERNEL", None)
            else:
                os.environ["LATERALNORM_CUDA_KERNEL"] = before


def section_c(res: Results, device: torch.device, quick: bool, compiled: list[str]) -> None:
    """Timing tables; `compiled` specs are also timed wrapped in torch.compile (features-last; the first
    steps, which compile, are the warm-up and are not timed)."""
    from lateralnorm import create_norm

    rounds, iters = (2, 2) if quick else (7, 20)
    b, n = (256, 512) if quick else (1024, 512)
    bc, c, hw = (16, 64, 28) if quick else (64, 64, 28)
    log(
        f"\n## c. timing (informational; {'CUDA events' if device.type == 'cuda' else 'wall clock'}, float32)"
    )
    torch.manual_seed(0)

    def last() -> None:
        mods = {"nn.LayerNorm": nn.LayerNorm(n), "nn.Linear(N,N)": nn.Linear(n, n)}
        mods.update({s: create_norm(s, n) for s in TIME_SPECS})
        if device.type == "cuda" and triton_available():
            mods.update({f"{s} [triton]": WithCudaKernel(create_norm(s, n), "triton") for s in TRITON_TIMED})
        if compiled:
            mods["nn.LayerNorm [torch.compile]"] = torch.compile(nn.LayerNorm(n).to(device))
            mods.update(
                {f"{s} [torch.compile]": torch.compile(create_norm(s, n).to(device)) for s in compiled}
            )
        timing_table(f"features-last (B={b}, N={n})", mods, (b, n), device, rounds, iters)

    def channels_first() -> None:
        from norms import PermuteLN  # benchmarks/norms.py: the channels-first reference of the CPU benchmark

        mods = {"permute>nn.LayerNorm": PermuteLN(c), "nn.Conv2d(C,C,1)": nn.Conv2d(c, c, 1)}
        mods.update({s: create_norm(s, c, layout="channels_first") for s in TIME_SPECS})
        timing_table(
            f"channels-first (B={bc}, C={c}, {hw}×{hw})", mods, (bc, c, hw, hw), device, rounds, iters
        )

    for label, fn in (("features-last", last), ("channels-first", channels_first)):
        try:
            fn()
            sync(device)
        except Exception as e:  # noqa: BLE001 - timing is informational; report and go on
            res.check("c.timing", label, lambda e=e: (False, f"{type(e).__name__}: {e}"))


TARGET5_TRITON = ["dn", "dn:kappa=self", "dn:kappa=band:5", "dn:preset=ln"]
TARGET5_SIZES = [(1024, 512), (8192, 4096)]


def section_t(res: Results, device: torch.device, quick: bool) -> None:
    """Issue 13's target 5, one table per size and type: the O(N) `dn` forms on the Triton kernels
    ≤ 1.5× nn.LayerNorm, and `dn:kappa=full` ≤ 1.3× nn.Linear, fwd+bwd, at (1024, 512) and (8192, 4096) in
    float32 and bfloat16 (every module cast to the type). Each ratio is a row (PASS: met, FAIL: missed);
    informational like section c: not in the exit status."""
    from lateralnorm import create_norm

    rounds, iters = (2, 2) if quick else (7, 20)
    sizes = [(64, 128)] if quick else TARGET5_SIZES
    triton_rows = device.type == "cuda" and triton_available()
    log(f"\n## t. issue 13's target 5 ({'CUDA events' if device.type == 'cuda' else 'wall clock'})")
    if not triton_rows:
        res.check("t.target5", "dn [triton]", lambda: skipped("needs CUDA and Triton"))
    for b, n in sizes:
        for dtype in (F32, BF16):
            torch.manual_seed(0)
            mods = {"nn.LayerNorm": nn.LayerNorm(n), "nn.Linear(N,N)": nn.Linear(n, n)}
            mods["dn:kappa=full"] = create_norm("dn:kappa=full", n)
            mods["dn"] = create_norm("dn", n)  # the default CUDA path (the PyTorch kernel), for comparison
            if triton_rows:
                mods.update(
                    {f"{s} [triton]": WithCudaKernel(create_norm(s, n), "triton") for s in TARGET5_TRITON}
                )
                mods["dn:kappa=full [triton]"] = WithCudaKernel(create_norm("dn:kappa=full", n), "triton")
            where = f"({b}, {n}) {str(dtype).removeprefix('torch.')}"
            try:
                med = timing_table(f"target 5 at {where}", mods, (b, n), device, rounds, iters, dtype)
            except Exception as e:  # noqa: BLE001 - report and go on to the next size
                res.check("t.target5", where, lambda e=e: (False, f"{type(e).__name__}: {e}"))
                continue
            pairs = [(f"{s} [triton]", "nn.LayerNorm", 1.5) for s in TARGET5_TRITON if triton_rows]
            pairs.append(("dn:kappa=full", "nn.Linear(N,N)", 1.3))
            if triton_rows:
                pairs.append(("dn:kappa=full [triton]", "nn.Linear(N,N)", 1.3))
            for k, ref, bound in pairs:
                if k not in med or ref not in med:
                    res.check(
                        "t.target5",
                        f"{k} {where}",
                        lambda: (False, "did not run (its row in the table says why)"),
                    )
                    continue
                ratio = med[k] / med[ref]
                res.check("t.target5", f"{k} {where}",
                          lambda ratio=ratio, ref=ref, bound=bound: (ratio <= bound, f"{ratio:.2f}× {ref} (≤ {bound})"))  # fmt: skip


# --------------------------------------------------------------------------------------------- main
def header(device: torch.device) -> None:
    log(f"# lateralnorm GPU check: python {platform.python_version()} ({sys.executable}), "
        f"torch.version.cuda {torch.version.cuda}")  # fmt: skip
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        log(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, "
            f"{p.multi_processor_count} SMs; TF32 off for matmul and cuDNN")  # fmt: skip
    else:
        log(f"device: cpu, {torch.get_num_threads()} threads")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--quick", action="store_true", help="small timing shapes and few rounds")
    ap.add_argument(
        "--sections",
        default="abc",
        help="which sections to run, e.g. 'ab' (default abc; t: issue 13's target 5)",
    )
    ap.add_argument(
        "--compiled", default="", metavar="SPECS",
        help="comma-separated specs also timed under torch.compile in section c (e.g. dn,dn:kappa=band:5)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    log(f"torch.__version__ {torch.__version__}, torch.cuda.is_available() {torch.cuda.is_available()}")
    if args.device == "cuda" and not torch.cuda.is_available():
        log(
            f"no CUDA: torch {torch.__version__} ({torch.__file__}) sees no GPU; use a CUDA build of torch or --device cpu"
        )
        return 3
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 references must be float32, not TF32
        torch.backends.cudnn.allow_tf32 = False
        # CPU-side references in this run use the PyTorch kernel: no C++ extension build on the GPU machine
        os.environ.setdefault("LATERALNORM_CPU_KERNEL", "torch")
    header(device)
    import lateralnorm

    log(f"lateralnorm {lateralnorm.__version__} from {Path(lateralnorm.__file__).parent}")
    res = Results()
    for key, run_section in (("a", lambda: section_a(res, device)), ("b", lambda: section_b(res, device))):
        if key in args.sections:
            t0 = time.perf_counter()
            run_section()
            log(f"(section {key}: {time.perf_counter() - t0:.1f} s)")
    if "c" in args.sections:
        t0 = time.perf_counter()
        section_c(res, device, args.quick, [x for x in args.compiled.split(",") if x])
        log(f"(section c: {time.perf_counter() - t0:.1f} s)")
    if "t" in args.sections:
        t0 = time.perf_counter()
        section_t(res, device, args.quick)
        log(f"(section t: {time.perf_counter() - t0:.1f} s)")

    log("\n## summary")
    log("| section | PASS | FAIL | SKIPPED |\n|---|---|---|---|")
    for sec in sorted({r[1] for r in res.rows}):
        counts = [sum(1 for r in res.rows if r[1] == sec and r[0] == s) for s in ("PASS", "FAIL", "SKIPPED")]
        log(f"| {sec} | {counts[0]} | {counts[1]} | {counts[2]} |")
    for status, sec, name, detail in res.rows:
        if status != "PASS":
            log(f"{status}: [{sec}] {name}: {detail}")
    if res.tracebacks:
        log("\n## tracebacks")
        for tb in res.tracebacks:
            log(tb)
    failed, timing, target = res.failed(("a", "b")), res.failed(("c",)), res.failed(("t",))
    note = f"; {timing} timing table(s) failed (informational, not in the exit status)" if timing else ""
    note += f"; {target} target-5 row(s) missed (not in the exit status)" if target else ""
    log(
        f"\n{'FAILED' if failed else 'OK'}: {failed} failing check(s) in a/b{note}; {time.perf_counter() - t_start:.1f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
