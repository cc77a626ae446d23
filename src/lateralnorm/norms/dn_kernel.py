"""A hand-written forward/backward for divisive normalization with an O(N) pool (κ self, uniform or band)
and fixed exponents. Eager PyTorch runs one kernel per op; writing the backward by hand roughly halves the
number of passes over the activations compared with autograd through the composite formula.

Per row (features last), with a = |t| (signed) or relu(t) (rect), t = y − m:

    ψ = a^α,  W = pool(ψ),  D = β + c ⊙ W,  φ = sign(t)^[signed] a^p,  z = φ D^{−r},  out = γ z + b

pool: self W_i = ψ_i (c_i κ_ii); uniform W_i = Σ_j ψ_j (κ_ij = c_i); band W_i = Σ_{j=i−l}^{i+u} ψ_j.
Backward: gz = g γ;  gD = −r gz z / D;  gW = gD c;  gψ = poolᵀ(gW);
gt = gz D^{−r} φ'(t) + gψ ψ'(t);  gy = gt − mean(gt) when centered.
Tested against autograd through the plain formula (tests/test_norms_kernel.py).

On CPU (float32/float64) the same formula runs in the compiled row kernel of `csrc/dn_rows.cpp` (a few
sweeps per row; see `cpu_kernel.py`): eager calls through the kernel's own C++ autograd node (`dn_rows_node`:
no Python on the per-call path but the layer's call), torch.compile through its registered ops. With
LATERALNORM_CUDA_KERNEL=triton, CUDA rows run in the Triton kernels of `triton_kernel.py`; elsewhere, or
when the CPU kernel cannot be built, in the PyTorch ops below.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lateralnorm.norms import cpu_kernel
from lateralnorm.norms.base import PEDESTAL, lower_bound, nonneg_value, triton_kernels_for
from lateralnorm.norms.partials import partial_grads

KIND_CODE = {"self": 0, "uniform": 1, "band": 2}  # the kernel's `Kind`
KIND_NAME = {code: name for name, code in KIND_CODE.items()}


@dataclass(frozen=True)
class DnConfig:
    """Everything about one divisive-norm call that is not a tensor: the O(N) pool, the exponents, the band
    window, and how β and c are stored (the lower bound of a learned `NonNegative`, None for a fixed buffer).
    Passed whole to every kernel (hashable, so torch.compile treats it as a constant)."""

    kind: str  # "self" | "uniform" | "band"
    center: bool  # subtract the row mean first
    rect: bool  # φ, ψ from relu(t) (else signed, from |t|)
    alpha: float  # ψ = a^α
    p: float  # φ = a^p (signed: sign(t)·|t|^p)
    r: float  # D^{−r}
    before: int = 0  # band window: units before …
    after: int = 0  # … and after each unit
    beta_bound: float | None = None
    c_bound: float | None = None

    def formula(self) -> tuple[str, bool, bool, float, float, float, int, int]:
        """(kind, center, rect, alpha, p, r, before, after): the fields the formula reads, for unpacking."""
        return (self.kind, self.center, self.rect, self.alpha, self.p, self.r, self.before, self.after)

    def keeps_rowwise(self) -> bool:
        """Whether the CPU kernel's forward keeps a second (M, N) tensor for the backward when asked: the
        band pool's window sums, or for an exp/log element policy one power or ln a per element, so that the
        backward takes no log (`cpu_kernel.keeps_rowwise`, the same rule as csrc/dn_rows.cpp; tested to agree)."""
        return cpu_kernel.keeps_rowwise(KIND_CODE[self.kind], self.alpha, self.p)

    def kernel_args(self) -> tuple:
        """The C++/Triton kernels' positional configuration (kind code, center, rect, α, p, r, before, after)."""
        return (
            KIND_CODE[self.kind],
            self.center,
            self.rect,
            self.alpha,
            self.p,
            self.r,
            self.before,
            self.after,
        )


def window_sum(v: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """W_i = Σ_{j=i−before}^{i+after} v_j along the last axis (zero outside), from sums of lengths 1, 2, 4, …
    (binary doubling): about log2(K) + popcount(K) passes for a width K, sums of the values themselves at any
    width. Wide windows once took a float64 prefix sum and its differences, which lose a window of small values
    after large ones (a row of ψ spanning e^{±100}: a window near e^{−70} from prefix sums near 1)."""
    n, size = v.shape[-1], before + 1 + after
    padded = F.pad(v, (before, after))  # (..., N + K − 1): window i starts at padded index i
    sums = {1: padded}
    length = 1
    while length * 2 <= size:
        s = sums[length]
        sums[length * 2] = s[..., : s.shape[-1] - length] + s[..., length:]
        length *= 2
    out, offset = None, 0
    for length in sorted(sums, reverse=True):  # K written in binary: largest blocks first
        if size - offset >= length:
            part = sums[length][..., offset : offset + n]
            out = part.clone() if out is None else out.add_(part)
            offset += length
    return out


def pool_rows(kind: str, psi: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """An O(N) pool without κ's values: self ψ, uniform Σ_j ψ_j (M, 1), band the window sums."""
    if kind == "self":
        return psi
    if kind == "uniform":
        return psi.sum(-1, keepdim=True)  # (M, 1)
    return window_sum(psi, before, after)


def _pool_t(kind: str, gw: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """The transpose of `pool_rows` (uniform: the row sum broadcasts back; band: the mirrored window)."""
    if kind == "self":
        return gw
    if kind == "uniform":
        return gw.sum(-1, keepdim=True)
    return window_sum(gw, after, before)


def power(a: torch.Tensor, e: torch.Tensor | float) -> torch.Tensor:
    """a^e for a ≥ 0, exact for e = 1 and e = 2, with finite derivatives of every order at a = 0 (taken as 0
    there) for other e, a learned (tensor) e included. The one power function of φ and ψ: the reference
    formula, the PyTorch kernel and DivisiveNorm's composite formula all use it."""
    if isinstance(e, float) and e == 1.0:
        return a
    if isinstance(e, float) and e == 2.0:
        return a * a
    nz = a > 0
    return torch.where(nz, torch.where(nz, a, torch.ones_like(a)).pow(e), torch.zeros_like(a))


def _dpow(a: torch.Tensor, e: float) -> torch.Tensor:
    """d/da a^e = e·a^(e−1) for a ≥ 0, taken as 0 at a = 0 (finite for every e > 0)."""
    if e == 2.0:
        return 2.0 * a
    nz = a > 0
    return torch.where(nz, e * torch.where(nz, a, torch.ones_like(a)).pow(e - 1.0), torch.zeros_like(a))


def _value(src: torch.Tensor, bound: float | None) -> torch.Tensor:
    """A non-negative parameter's value from its source: a fixed buffer (bound None) or the raw parameter of
    `NonNegative` (value = max(raw, bound)² − pedestal; the same map, without its autograd nodes)."""
    if bound is None:
        return src
    return src.clamp_min(bound).square_().sub_(PEDESTAL)


def _raw_grad(g_value: torch.Tensor, src: torch.Tensor, bound: float | None) -> torch.Tensor:
    """Chain rule back through `_value`, with the lower bound's rule: the gradient passes where raw is above
    the bound, or where it would push raw back up (as `base._LowerBound`)."""
    if bound is None:
        return g_value
    g = g_value * 2.0 * src.clamp_min(bound)
    return g * ((src >= bound) | (g < 0)).to(g.dtype)


def _rows_of(y: torch.Tensor) -> torch.Tensor:
    """y as (M, N) rows: (B, N) as it is, else reshaped. A 2-D input takes no reshape, so each step's graph has
    no view nodes around the kernel (at the studies' widths the per-node work is a visible share of a step)."""
    return y if y.dim() == 2 else y.reshape(-1, y.shape[-1])


def _unrows(out: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The kernel's (M, N) rows back in the input's shape (see `_rows_of`)."""
    return out if len(shape) == 2 else out.reshape(shape)


def _shaped_like(g: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """A per-unit (N,) gradient for a parameter of shape (N,) or a shared (1,) one."""
    return g.reshape(src.shape) if src.numel() == g.numel() else g.sum().reshape(src.shape)


def _kernel_params(y, beta_src, c_src, gamma, bias, cfg, dtype):  # noqa: ANN001, ANN202
    """β, c, γ and b as the row kernels take them: values (through the reparametrization) in `dtype`,
    contiguous; β and c both per unit, or both shared with the uniform pool; γ = 1 and b = 0 when absent."""
    kind, n = cfg.kind, y.shape[-1]
    beta, c = _value(beta_src, cfg.beta_bound).to(dtype), _value(c_src, cfg.c_bound).to(dtype)
    if beta.numel() != c.numel() or (kind != "uniform" and beta.numel() != n):
        beta, c = beta.expand(n), c.expand(n)
    gam = y.new_ones(n, dtype=dtype) if gamma is None else gamma.to(dtype)
    bia = y.new_zeros(n, dtype=dtype) if bias is None else bias.to(dtype)
    return beta.contiguous(), c.contiguous(), gam.contiguous(), bia.contiguous()


class CompiledRows(torch.autograd.Function):
    """The formula of `PooledDivisive` in the compiled CPU row kernel under torch.compile or torch.jit.trace:
    the kernel's registered operators (`cpu_kernel.rows_forward`/`rows_backward`), which graph capture sees as
    ops (a raw extension call would be invisible to it), with the parameter values in PyTorch ops. Eager calls
    take the kernel's own C++ autograd node instead (`dn_rows_node`, see `divisive_rows`). Saves the input,
    three numbers per row (the mean and the uniform pool's Σψ) and, for the band pool, the window sums; the
    backward recomputes the rest."""

    @staticmethod
    def forward(ctx: Any, y, beta_src, c_src, gamma, bias, cfg):  # noqa: ANN001
        args = cfg.kernel_args()
        save_w = cfg.keeps_rowwise() and any(ctx.needs_input_grad[:5])  # a recompute costs a pass or exp/log
        beta, c, gam, bia = _kernel_params(y, beta_src, c_src, gamma, bias, cfg, y.dtype)
        out, stats, w = cpu_kernel.rows_forward(y.contiguous(), beta, c, gam, bia, *args, save_w)
        ctx.save_for_backward(y, stats, w if save_w else None, beta_src, c_src, gamma, bias, beta, c, gam)
        ctx.args, ctx.cfg = args, cfg
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        y, stats, w, beta_src, c_src, gamma, bias, beta, c, gam = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain formula instead
            return _differentiable_backward(g, (y, beta_src, c_src, gamma, bias), need, ctx.cfg) + (None,)
        cfg = ctx.cfg
        r, beta_bound, c_bound = cfg.r, cfg.beta_bound, cfg.c_bound
        gy, s_gz, s_g, s_q, s_qw = cpu_kernel.rows_backward(
            g.contiguous(), y.contiguous(), stats, stats.new_empty(0) if w is None else w, beta, c, gam, *ctx.args,
            need[0], gamma is not None and need[3], bias is not None and need[4], need[1], need[2],
        )  # fmt: skip
        g_beta = _raw_grad(_shaped_like(s_q * -r, beta_src), beta_src, beta_bound) if need[1] else None
        g_c = _raw_grad(_shaped_like(s_qw * -r, c_src), c_src, c_bound) if need[2] else None
        g_gamma = s_gz if gamma is not None and need[3] else None
        g_bias = s_g if bias is not None and need[4] else None
        return (gy if need[0] else None), g_beta, g_c, g_gamma, g_bias, None


def _node(ext, rows, beta_src, c_src, gamma, bias, alpha_raw, cfg, tied, alpha_bound=0.0):  # noqa: ANN001, ANN202
    """The layer's output through the kernel's C++ autograd node (eager CPU): β and c's values, the kernel
    and their gradients all in C++, one node in the graph. alpha_raw: a learned α's raw parameter, whose floor
    alpha_bound the node applies (`base.lower_bound`'s value and gradient rule, same bits), or None
    (cfg.alpha)."""
    return ext.dn_rows_node(
        rows, beta_src, c_src, gamma, bias, alpha_raw, _bound(cfg.beta_bound), _bound(cfg.c_bound), PEDESTAL,
        *cfg.kernel_args(), tied, alpha_bound,
    )  # fmt: skip


def _node_formula_backward(g, y, beta_src, c_src, gamma, bias, alpha, numbers, need, tied):  # noqa: ANN001, ANN202
    """The C++ node's double backward (create_graph=True): the gradients as a graph of PyTorch ops through
    the plain formula, as `_differentiable_backward`. numbers: (kind code, center, rect, α, p, r, before, after,
    β bound, c bound, α's floor) as the node ran them (a bound < 0: a fixed buffer); alpha: the learned α's raw
    parameter or None."""
    kind, center, rect, a, p, r, before, after, beta_bound, c_bound, alpha_bound = numbers
    cfg = DnConfig(
        KIND_NAME[int(kind)], center, rect, a, p, r, int(before), int(after),
        None if beta_bound < 0 else beta_bound, None if c_bound < 0 else c_bound,
    )  # fmt: skip
    inputs = (y, beta_src, c_src, gamma, bias) + (() if alpha is None else (alpha,))
    return _differentiable_backward(g, inputs, need[: len(inputs)], cfg, tied=tied, alpha_bound=alpha_bound)


def learned_alpha_rows(
    y: torch.Tensor,
    beta_src: torch.Tensor,
    c_src: torch.Tensor,
    gamma: torch.Tensor | None,
    bias: torch.Tensor | None,
    alpha_raw: torch.Tensor,
    alpha_bound: float,
    cfg: DnConfig,
    tied: bool,
) -> torch.Tensor | None:
    """Divisive normalization with a learned α = max(alpha_raw, alpha_bound) (`base.lower_bound`, applied in
    the node; alpha_raw a 0-d parameter; p = α·r when `tied`, else cfg.p) in the compiled
    CPU kernel, or None where that kernel does not run (not CPU float, not built, or under torch.compile or
    torch.jit.trace): the caller then differentiates its composite formula. The kernel runs at α's current
    value, and its backward adds ∂L/∂α = Σ ln(a) (gψ ψ + ∂p/∂α · gz z), a = |t| or relu(t), in the same loop
    as the input's gradient. Where the forward keeps a power per element (p = α > 1, or α = 1 or 2 with another
    p; self or uniform pool) it keeps ln a with it, (2, M, N), so the backward takes no exp or log (three times
    LayerNorm's activation memory, instead of a log per element); where it keeps ln a itself (the other pairs),
    that one plane serves both."""
    rows = _rows_of(y)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    ext = cpu_kernel.extension_for(rows)
    if ext is None or not _kernel_types(beta_src, c_src, gamma, bias, alpha_raw):
        return None
    if alpha_raw.numel() == 1 and alpha_raw.detach().item() < alpha_bound:
        # under its floor the gradient rule is not the identity, and it must see the sum of every share of α's
        # gradient (a double backward's second share comes through the node's own backward): the floor as its
        # own node then, as the formula has it (the same bits; above the floor the rule passes each share whole)
        alpha_raw, alpha_bound = lower_bound(alpha_raw, alpha_bound), -math.inf
    return _unrows(_node(ext, rows, beta_src, c_src, gamma, bias, alpha_raw, cfg, tied, alpha_bound), y.shape)


class TritonRows(torch.autograd.Function):
    """The same formula on CUDA in two Triton kernels (`triton_kernel.py`), float32 arithmetic, and a third for
    the parameters' gradients. The kernels take β, c, γ and b as the layer holds them (raw parameters,
    reparametrized in the kernels; γ and b in their own type), so a step launches no small PyTorch ops around
    them. Saves the input, the row means and, for the band pool, the window sums."""

    @staticmethod
    def forward(ctx: Any, y, beta_src, c_src, gamma, bias, cfg):  # noqa: ANN001
        from lateralnorm.norms import triton_kernel as tk

        kind, center, rect, alpha, p, r, before, after = cfg.formula()
        beta_src, c_src = beta_src.contiguous(), c_src.contiguous()
        gamma = None if gamma is None else gamma.contiguous()
        bias = None if bias is None else bias.contiguous()
        save_w = kind == "band" and any(ctx.needs_input_grad[:5])
        out_dtype = torch.promote_types(y.dtype, beta_src.dtype)  # as the PyTorch kernel's type promotion
        bounds = (cfg.beta_bound, cfg.c_bound)
        args = (kind, center, rect, alpha, p, r, before, after, save_w, out_dtype)
        out, mean, w = tk.rows_forward(y, beta_src, c_src, bounds, gamma, bias, *args)
        ctx.save_for_backward(y, mean, w, beta_src, c_src, gamma, bias)
        ctx.cfg = cfg
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        from lateralnorm.norms import triton_kernel as tk

        y, mean, w, beta_src, c_src, gamma, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain formula instead
            return _differentiable_backward(g, (y, beta_src, c_src, gamma, bias), need, ctx.cfg) + (None,)
        cfg = ctx.cfg
        bounds = (cfg.beta_bound, cfg.c_bound)
        gy, g_beta, g_c, g_gamma, g_bias = tk.rows_backward(
            g.contiguous(), y, mean, w, beta_src, c_src, bounds, gamma, bias, need[1:5], *cfg.formula()
        )
        return gy if need[0] else None, g_beta, g_c, g_gamma, g_bias, None


def _triton_applies(rows: torch.Tensor, kind: str) -> bool:
    """Rows run in the Triton kernels where `base.triton_kernels_for` says they run and the kernels take these
    rows (`triton_kernel.applies`)."""
    tk = triton_kernels_for(rows)
    return tk is not None and tk.applies(rows, kind)


def _bound(bound: float | None) -> float:
    """The kernel's encoding of a parameter source: its lower bound, or −1 for a fixed buffer."""
    return -1.0 if bound is None else float(bound)


def _differentiable_backward(
    g: torch.Tensor,
    inputs: tuple,
    need: tuple,
    cfg: DnConfig,
    tied: bool = False,
    alpha_bound: float | None = None,
) -> tuple:
    """The gradients as a graph of PyTorch ops, for double backward (create_graph=True: Hessian-vector and
    Jacobian-vector products by the double-backward trick). The fused backwards treat what the forward saved
    as constants, so their own ops would miss second-order terms; this differentiates the plain formula.
    inputs: (y, β source, c source, γ, b) and, for a learned α, α last (its raw parameter when alpha_bound is
    given: the floor is then part of the formula)."""

    def formula(y, beta_src, c_src, gamma, bias, alpha=None):  # noqa: ANN001, ANN202
        if alpha is not None and alpha_bound is not None:
            alpha = lower_bound(alpha, alpha_bound)
        return formula_rows(y, beta_src, c_src, gamma, bias, cfg, alpha=alpha, tied=tied)

    return tuple(partial_grads(formula, inputs, need, g))


def center_rows(y: torch.Tensor) -> torch.Tensor:
    """y − mean(y) over the last axis in two passes (the second removes the rounding error of the first
    mean): the one centering of every Python copy of the formula."""
    t = y - y.mean(-1, keepdim=True)
    return t - t.mean(-1, keepdim=True)


def formula_rows(y, beta_src, c_src, gamma, bias, cfg, alpha=None, tied=False):  # noqa: ANN001, ANN201
    """The kernels' formula in plain differentiable ops on (M, N) rows (same inputs as the kernels); a learned
    α comes as a tensor (`alpha`; p = α·r when `tied`)."""
    kind, center, rect, alpha_c, p, r, before, after = cfg.formula()
    if alpha is None:
        alpha = alpha_c
    elif tied:
        p = alpha * r
    # the floor with its gradient rule (lower_bound: a raw value under it still takes a gradient that raises it)
    beta = beta_src if cfg.beta_bound is None else lower_bound(beta_src, cfg.beta_bound).square() - PEDESTAL
    c = c_src if cfg.c_bound is None else lower_bound(c_src, cfg.c_bound).square() - PEDESTAL
    t = center_rows(y) if center else y
    a = torch.relu(t) if rect else t.abs()
    psi = _psi_of(t, a, alpha, rect)
    if kind == "self":
        w = psi
    elif kind == "uniform":
        w = psi.sum(-1, keepdim=True)
    else:
        w = F.pad(psi, (before, after)).unfold(-1, before + 1 + after, 1).sum(-1)
    return _output_of(t, a, beta + c * w, p, r, rect, gamma, bias)


def _psi_of(t: torch.Tensor, a: torch.Tensor, alpha, rect: bool) -> torch.Tensor:  # noqa: ANN001
    """ψ = a^α (a = relu(t) or |t|; signed α = 2: t·t), α a float or a tensor."""
    return t * t if (isinstance(alpha, float) and alpha == 2.0 and not rect) else power(a, alpha)


def _output_of(t, a, d, p, r, rect, gamma, bias):  # noqa: ANN001, ANN201
    """γ φ(t) D^(−r) + b, φ = a^p (signed: sign(t)·|t|^p), for the denominator D."""
    if isinstance(p, float) and p == 1.0:
        phi = a if rect else t
    else:
        phi = power(a, p) if rect else power(a, p) * torch.sign(t)
    z = phi * d.pow(-r)
    if gamma is not None:
        z = z * gamma
    return z if bias is None else z + bias


def _psi_formula(y: torch.Tensor, cfg: DnConfig, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """ψ(t) of `formula_rows` (t centered when cfg.center); a learned α as a tensor (`alpha`), else cfg.alpha."""
    t = center_rows(y) if cfg.center else y
    return _psi_of(t, torch.relu(t) if cfg.rect else t.abs(), cfg.alpha if alpha is None else alpha, cfg.rect)


def _given_pool_formula(y, w, beta, gamma, bias, cfg, p=None):  # noqa: ANN001, ANN201
    """γ φ(t) (β + W)^(−r) + b of `formula_rows` for a given pool W; a learned p as a tensor (`p`), else cfg.p."""
    t = center_rows(y) if cfg.center else y
    a = torch.relu(t) if cfg.rect else t.abs()
    return _output_of(t, a, beta + w, cfg.p if p is None else p, cfg.r, cfg.rect, gamma, bias)


def _matrix_cfg(numbers: tuple) -> DnConfig:
    """The DnConfig of a matrix pool's element work from the compiled nodes' (center, rect, α, p[, r])."""
    center, rect, alpha, p, *r = numbers
    return DnConfig("uniform", center, rect, alpha, p, r[0] if r else 1.0)  # the kind is not read


def _psi_formula_backward(g_psi, y, numbers, alpha=None, need=(True, False)):  # noqa: ANN001, ANN202
    """`psi_rows_node`'s double backward (create_graph=True): the gradients of (y, α) as a graph of PyTorch ops
    through the plain formula (the kernel's backward treats saved values as constants), None where `need` says no
    or α is fixed. numbers: (center, rect, α, p); `alpha`: a learned α as a tensor."""
    cfg = _matrix_cfg(numbers)
    return partial_grads(lambda v, a: _psi_formula(v, cfg, a), (y, alpha), need, g_psi)


def _given_pool_formula_backward(
    g, y, w, beta, gamma, bias, numbers, need, beta_bound=None, alpha=None, tied=False, channels=0
):  # noqa: ANN001, ANN202
    """`given_pool_node`'s double backward: the gradients of (y, W, β, γ, b, α) as a graph of PyTorch ops through
    the plain formula, None where `need` says no (five entries: no α). numbers: (center, rect, α, p, r). With
    `beta_bound`, β is a raw `NonNegative` parameter (the Triton node's) and its gradient is the raw one. `alpha`:
    a learned α as a tensor (p = α r where `tied`, else the fixed p: α's gradient is then None). `channels` C > 0:
    y, W and g are the (B·C, P) planes of `given_pool_planes_node`, whose β, γ and b hold one value a channel."""
    cfg = _matrix_cfg(numbers)

    def formula(y, w, beta, gamma, bias, a):  # noqa: ANN001, ANN202
        p = a * cfg.r if a is not None and tied else None
        beta = nonneg_value(beta, beta_bound)
        if channels:  # each parameter along the planes' channel axis: (B, C, P) against (C, 1)
            y3, w3 = y.view(-1, channels, y.shape[-1]), w.view(-1, channels, y.shape[-1])
            col = [None if v is None else v.reshape(-1, 1) for v in (beta, gamma, bias)]
            return _given_pool_formula(y3, w3, *col, cfg, p).view(y.shape)
        return _given_pool_formula(y, w, beta, gamma, bias, cfg, p)

    return partial_grads(formula, (y, w, beta, gamma, bias, alpha), (*need, False)[:6], g)


def matrix_pooled_rows(
    y: torch.Tensor,
    pool: Callable[[torch.Tensor], torch.Tensor],
    beta: tuple[torch.Tensor, float | None],
    gamma: torch.Tensor | None,
    bias: torch.Tensor | None,
    cfg: DnConfig,
    alpha_raw: torch.Tensor | None = None,
    alpha_bound: float = 0.0,
    tied: bool = False,
) -> torch.Tensor | None:
    """Divisive normalization whose pool is a matrix product (`pool`: ψ (M, N) → W (M, N), the κ structure's
    own differentiable ops) with the element work in the compiled CPU kernel: ψ rows, then the pool, then the
    output from W. None where that kernel does not run (not CPU float, not built, under torch.compile or
    torch.jit.trace): the caller then differentiates its composite formula. `beta`: (source, bound), a raw
    `NonNegative` parameter and its bound, or a buffer and None. cfg: center, rect, α, p, r (its kind is not
    read). A learned α: `alpha_raw` (its 0-d raw parameter, floored at `alpha_bound`; p = α r when `tied`), on
    CPU only and unless LATERALNORM_MATRIX_LEARNED_ALPHA=formula (`cpu_kernel.matrix_learned_alpha`)."""
    rows = _rows_of(y)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    if alpha_raw is not None:
        return _learned_alpha_matrix_rows(y, rows, pool, beta, gamma, bias, cfg, alpha_raw, alpha_bound, tied)
    on_cpu = cpu_kernel.applies_to(rows)
    if not on_cpu and not _triton_applies(rows, "uniform"):
        return None
    rows = rows.contiguous()  # before the nodes: they save their inputs themselves (double backward)
    if not on_cpu:  # CUDA (opt-in): ψ, then the pool's own matmuls, then the output, in Triton around them;
        # the output node hands its share of the input gradient to ψ's through `share` (as the CPU nodes' box)
        share = _GradShare()
        w = pool(TritonPsi.apply(rows, cfg, share)).contiguous()
        return _unrows(TritonGivenPool.apply(rows, w, beta[0], beta[1], gamma, bias, cfg, share), y.shape)
    ext = cpu_kernel.extension()
    # both nodes hold this empty tensor: the output node's backward hands its share of the input gradient to ψ's
    # through it, and ψ's adds its own in place (one (M, N) tensor instead of two that autograd adds; the same
    # one rounding, so the same bits). `kept`: for an exp/log policy the power each element's ψ came from, which
    # the output node and both backwards read instead of taking the log and exp again (same bits; else empty)
    box = rows.new_empty(0)
    element = (cfg.center, cfg.rect, cfg.alpha, cfg.p)
    psi, stats, kept = ext.psi_rows_node(rows, box, *element)
    w = pool(psi)
    beta_value = nonneg_value(*beta)
    return _unrows(
        ext.given_pool_node(rows, stats, w, beta_value, gamma, bias, box, kept, *element, cfg.r), y.shape
    )


# A channels-first matrix κ takes the planes route from this many positions a plane (H·W, or L) up: below it a
# call per short plane and the batched GEMM's small products cost about what the three transposes save, and
# rows keep the stored runs' bits. Measured planes/rows a step (`benchmarks/channel_pool.py`, GDN and full κ,
# 2026-12-07): 0.98–1.00 at 40 positions, 0.99–1.04 at 49, 0.98 at 100, 0.64–0.72 at 196, 0.79–0.81 at 784.
PLANES_FROM = 128


def matrix_pooled_planes(
    x: torch.Tensor,
    pool: Callable[[torch.Tensor], torch.Tensor],
    beta: tuple[torch.Tensor, float | None],
    gamma: torch.Tensor | None,
    bias: torch.Tensor | None,
    cfg: DnConfig,
) -> torch.Tensor:
    """`matrix_pooled_rows` for a contiguous channels-first CPU input x (B, C, *S) whose pool runs over C, not
    centered, with a fixed α (the caller checks; `layout.applies_to(x)`): the element work on x's own (B·C, P)
    planes (not centered, ψ is elementwise; the output's parameters one per channel), the pool on the (B, C, P)
    planes (`pool`: a κ structure's `channel_pool`, one batched GEMM). The rows route transposes x, the output's
    gradient and the input's gradient ((B, C, P) ⇄ (B·P, C)) around the same work: three passes over the
    activations more a step, ~18 % of a full κ's step at (64, 64, 28, 28). Equal to it to rounding (another
    product, and the parameters' sums added in another order); the output is contiguous channels-first."""
    b, c = x.shape[:2]
    planes = x.reshape(b * c, -1)
    ext = cpu_kernel.extension()
    box = planes.new_empty(0)  # as in matrix_pooled_rows: the output node hands ψ's its share of gx
    psi, stats, kept = ext.psi_rows_node(planes, box, False, cfg.rect, cfg.alpha, cfg.p)
    w = pool(psi.view(b, c, -1)).reshape(planes.shape)
    out = ext.given_pool_planes_node(
        planes, stats, w, nonneg_value(*beta), gamma, bias, box, kept, c, cfg.rect, cfg.alpha, cfg.p, cfg.r
    )
    return out.view(x.shape)


def _learned_alpha_matrix_rows(y, rows, pool, beta, gamma, bias, cfg, alpha_raw, alpha_bound, tied):  # noqa: ANN001, ANN202
    """`matrix_pooled_rows` with a learned α: the two element nodes at α's current value (read once a call), which
    take α as a tensor too (ψ's node gives its gradient, both nodes' terms in one pass; see the C++ nodes). Under
    its floor α is floored by its own node (`lower_bound`), whose gradient rule then sees the sum of every share
    of α's gradient (a double backward's come from both nodes); above it the rule passes each share whole, and
    α goes in as it is (the same bits, one node fewer)."""
    if cpu_kernel.matrix_learned_alpha() != "kernel":
        return None
    ext = cpu_kernel.extension_for(rows)
    if ext is None or not _kernel_types(alpha_raw, beta[0], gamma, bias) or alpha_raw.numel() != 1:
        return None
    rows = rows.contiguous()
    alpha, raw = _alpha_now(alpha_raw, alpha_bound)
    if alpha.dtype != rows.dtype:
        alpha = alpha.to(rows.dtype)
    a = raw if alpha is alpha_raw else float(alpha.detach())
    element = (cfg.center, cfg.rect, a, a * cfg.r if tied else cfg.p)
    box, terms = rows.new_empty(0), [rows.new_empty(0) for _ in range(3)]  # see matrix_pooled_rows; C++ nodes
    psi, stats, kept = ext.psi_rows_alpha_node(rows, box, alpha, terms, *element)
    w = pool(psi)
    beta_value = nonneg_value(*beta)
    out = ext.given_pool_alpha_node(
        rows, stats, w, beta_value, gamma, bias, alpha, box, kept, terms, *element, cfg.r, tied
    )
    return _unrows(out, y.shape)


def _alpha_now(alpha_raw: torch.Tensor, alpha_bound: float) -> tuple[torch.Tensor, float]:
    """A learned α for the element nodes at its current value: (α as the nodes take it — under its floor floored by
    its own node, whose rule then sees every share of α's gradient; above it the raw parameter itself: the same bits,
    one node fewer —, the raw value)."""
    raw = float(alpha_raw.detach())
    return (alpha_raw if raw >= alpha_bound else lower_bound(alpha_raw, alpha_bound)), raw


def _of_rows_type(rows: torch.Tensor, *tensors: torch.Tensor | None) -> bool:
    """Whether every given tensor is a CPU tensor of the rows' type: what a layer node takes as it is (the routes
    before it cast a parameter of another type)."""
    for t in tensors:  # noqa: SIM110 - a loop, not all(): on every call's path (see _kernel_types)
        if t is not None and (t.dtype != rows.dtype or t.device.type != "cpu"):
            return False
    return True


def lowrank_formula(psi: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(ψ V) Uᵀ as torch's two linear maps: the low-rank κ's pool (`LowRankKappa.pool`) and the reference of the
    kernel's products."""
    return F.linear(F.linear(psi, v.T), u)


def _lowrank_formula_backward(g, psi, u, v, need):  # noqa: ANN001, ANN202
    """The double backward of the kernel's low-rank node (`lowrank_node`): the formula's gradients as a graph."""
    return tuple(partial_grads(lowrank_formula, (psi, u, v), need, g))


# The kernel's products win up to this rank (measured in float32 on AVX-512, 1 thread: 0.50–0.95× torch's time a
# layer step at K = 8 and 16, widths 32–512; even at 32–48; 1.16× at 64, where MKL's packing is spread over enough
# arithmetic; not measured on AVX2 or in float64): above, torch's.
KERNEL_MAX_RANK = 16


def lowrank_product(psi: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(ψ V) Uᵀ for ψ (..., N) and U, V (N, K): the compiled kernel's K-thin products
    (`csrc/lowrank_product.cpp`: the same products in another summation order, so equal to the formula to
    rounding, not to the bit) where it runs them (CPU float32/float64, one dtype, K <= KERNEL_MAX_RANK, the
    kernel built, eager, LATERALNORM_LOWRANK_PRODUCTS not `torch`), else torch's two linear maps (the formula)."""
    if (
        1 <= u.shape[-1] <= KERNEL_MAX_RANK
        and psi.shape[-1] >= 1
        and cpu_kernel.lowrank_products() == "kernel"
        and cpu_kernel.applies_to(psi)
        and u.dtype == psi.dtype == v.dtype
        and u.device.type == "cpu" == v.device.type
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
    ):
        rows = _rows_of(psi).contiguous()
        return _unrows(cpu_kernel.extension().lowrank_node(rows, u, v), psi.shape)
    return lowrank_formula(psi, u, v)


def lowrank_rows(
    y: torch.Tensor,
    beta: tuple[torch.Tensor, float | None],
    u: tuple[torch.Tensor, float | None],
    v: tuple[torch.Tensor, float | None],
    gamma: torch.Tensor | None,
    bias: torch.Tensor | None,
    cfg: DnConfig,
    alpha_raw: torch.Tensor | None = None,
    alpha_bound: float = 0.0,
    tied: bool = False,
) -> torch.Tensor | None:
    """A low-rank κ's layer (κ = U Vᵀ) through one C++ autograd node (`lowrank_rows_node`): ψ, the kernel's K-thin
    products and the output, the same calls as `matrix_pooled_rows`' three nodes and the NonNeg nodes of β, U and V
    (so the same bits), without their six boundaries (~170 µs a step, most of a layer step at B = N = 100). β, U, V:
    (source, bound) as the layer holds them. Where it runs: eager CPU with every tensor of the rows' float type,
    rank <= KERNEL_MAX_RANK, the kernel's products (LATERALNORM_LOWRANK_PRODUCTS), and a learned α on the kernel
    (LATERALNORM_MATRIX_LEARNED_ALPHA); else None, and the caller takes `matrix_pooled_rows`."""
    (u_src, u_bound), (v_src, v_bound) = u, v
    if torch.jit.is_tracing() or not 1 <= u_src.shape[-1] <= KERNEL_MAX_RANK:  # (a shape read traced warns)
        return None
    if cpu_kernel.lowrank_products() != "kernel":
        return None
    ready = _matrix_node_inputs(y, beta[0], (u_src, v_src, gamma, bias), alpha_raw, alpha_bound, cfg, tied)
    if ready is None:
        return None
    ext, rows, alpha, numbers = ready
    numbers += [_bound(beta[1]), PEDESTAL, _bound(u_bound), _bound(v_bound)]
    out = ext.lowrank_rows_node(rows, beta[0], u_src, v_src, gamma, bias, alpha, numbers)
    return _unrows(out, y.shape)


def _matrix_node_inputs(y, beta_src, others, alpha_raw, alpha_bound, cfg, tied):  # noqa: ANN001, ANN202
    """(extension, contiguous rows, α as the node takes it, [center, rect, α, p, r, tied]) for a matrix layer node,
    or None where it does not run: not eager CPU, a tensor (β's source, `others`, α) not of the rows' float type
    (the nodes' older route casts them), or a learned α off the kernel (LATERALNORM_MATRIX_LEARNED_ALPHA=formula).
    A learned α at its current value, floored by its own node under its floor (as `_learned_alpha_matrix_rows`)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    rows = _rows_of(y)
    ext = cpu_kernel.extension_for(rows)
    if ext is None or not _of_rows_type(rows, beta_src, *others, alpha_raw):
        return None
    alpha, a, p = None, cfg.alpha, cfg.p
    if alpha_raw is not None:
        if cpu_kernel.matrix_learned_alpha() != "kernel" or alpha_raw.numel() != 1:
            return None
        alpha, raw = _alpha_now(alpha_raw, alpha_bound)
        a = raw if alpha is alpha_raw else float(alpha.detach())
        p = a * cfg.r if tied else cfg.p
    return ext, rows.contiguous(), alpha, [float(cfg.center), float(cfg.rect), a, p, cfg.r, float(tied)]


def matrix_rows(
    y: torch.Tensor,
    beta: tuple[torch.Tensor, float | None],
    matrix: Callable[[], torch.Tensor],
    gamma: torch.Tensor | None,
    bias: torch.Tensor | None,
    cfg: DnConfig,
    alpha_raw: torch.Tensor | None = None,
    alpha_bound: float = 0.0,
    tied: bool = False,
) -> torch.Tensor | None:
    """A layer whose pool is torch's linear map by an (N, N) κ (full, gaussian; GDN) through one C++ autograd node
    (`matrix_rows_node`): ψ, W = F.linear(ψ, κ) and the output, the gradients as autograd takes them (the same mm
    calls), so the same bits as `matrix_pooled_rows`' nodes without their boundaries. `matrix()`: κ's value (the
    structure's own differentiable ops, which take κ's gradient from the node). Where it runs as `lowrank_rows`
    does; else None, and the caller takes `matrix_pooled_rows`."""
    if torch.is_autocast_enabled("cpu"):  # the linear map runs in autocast's type there; its mm backward too
        return None
    ready = _matrix_node_inputs(y, beta[0], (gamma, bias), alpha_raw, alpha_bound, cfg, tied)
    if ready is None:
        return None
    ext, rows, alpha, numbers = ready
    kappa = matrix()
    if not _of_rows_type(rows, kappa):
        return None
    numbers += [_bound(beta[1]), PEDESTAL]
    out = ext.matrix_rows_node(rows, beta[0], kappa, gamma, bias, alpha, numbers)
    return _unrows(out, y.shape)


def _source_value(src: torch.Tensor, bound: float) -> torch.Tensor:
    """A node's source valued as the layer values it: a raw NonNegative parameter (bound ≥ 0) or a fixed buffer."""
    return nonneg_value(src, None if bound < 0 else bound)


def _matrix_layer_formula_backward(g, y, beta_src, pool_inputs, pool, gamma, bias, alpha, numbers, need):  # noqa: ANN001, ANN202
    """A matrix layer node's double backward (create_graph=True): the gradients of (y, β, *pool_inputs, γ, b, α)
    as a graph of PyTorch ops through the plain formula, W = pool(ψ, *pool_inputs), the sources valued as the layer
    values them; None where `need` says no. numbers: the node's (center, rect, α, p, r, tied, β's bound, …)."""
    center, rect, a, p, r, tied, beta_bound = numbers[:7]
    cfg = DnConfig("uniform", bool(center), bool(rect), a, p, r)  # the kind is not read
    k = len(pool_inputs)

    def formula(y, beta_src, *rest):  # noqa: ANN001, ANN202
        gamma, bias, alpha = rest[k:]
        w = pool(_psi_formula(y, cfg, alpha), *rest[:k])
        learned_p = alpha * cfg.r if alpha is not None and tied else None
        return _given_pool_formula(y, w, _source_value(beta_src, beta_bound), gamma, bias, cfg, learned_p)

    return partial_grads(formula, (y, beta_src, *pool_inputs, gamma, bias, alpha), tuple(need), g)


def _lowrank_rows_formula_backward(g, y, beta_src, u_src, v_src, gamma, bias, alpha, numbers, need):  # noqa: ANN001, ANN202
    """`lowrank_rows_node`'s double backward: numbers as the node's (…, β's bound, pedestal, U's bound, V's bound)."""
    u_bound, v_bound = numbers[8:10]

    def pool(psi: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return lowrank_formula(psi, _source_value(u, u_bound), _source_value(v, v_bound))

    return _matrix_layer_formula_backward(
        g, y, beta_src, (u_src, v_src), pool, gamma, bias, alpha, numbers, need
    )


def _matrix_rows_formula_backward(g, y, beta_src, kappa, gamma, bias, alpha, numbers, need):  # noqa: ANN001, ANN202
    """`matrix_rows_node`'s double backward: κ given as its value (its own nodes take its gradient further)."""
    return _matrix_layer_formula_backward(
        g, y, beta_src, (kappa,), F.linear, gamma, bias, alpha, numbers, need
    )


class _GradShare:
    """The Triton output node's share of the input gradient, handed to ψ's node (which runs after it) to add in its
    kernel, instead of autograd adding the two (M, N) tensors (the C++ nodes' `box`)."""

    gy: torch.Tensor | None = None


class TritonPsi(torch.autograd.Function):
    """ψ(t) of a matrix pool's rows on CUDA (Triton; `psi_rows_node`'s formula): saves the input alone."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, cfg: DnConfig, share: _GradShare) -> torch.Tensor:
        from lateralnorm.norms import triton_kernel as tk

        ctx.save_for_backward(y)
        ctx.cfg, ctx.share = cfg, share
        return tk.psi_forward(y, cfg.center, cfg.rect, cfg.alpha)

    @staticmethod
    def backward(ctx: Any, g_psi: torch.Tensor):  # noqa: ANN205
        from lateralnorm.norms import triton_kernel as tk

        (y,) = ctx.saved_tensors
        cfg = ctx.cfg
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain formula instead
            return _psi_formula_backward(g_psi, y, (cfg.center, cfg.rect, cfg.alpha, cfg.p))[0], None, None
        add, ctx.share.gy = ctx.share.gy, None
        return tk.psi_backward(g_psi.contiguous(), y, cfg.center, cfg.rect, cfg.alpha, add), None, None


class TritonGivenPool(torch.autograd.Function):
    """γ φ(t) (β + W)^(−r) + b on CUDA from rows and their pool W (Triton; `given_pool_node`'s formula), with
    β as the layer holds it (`beta_bound`: a raw `NonNegative` parameter reparametrized in the kernels, and its
    gradient from a third kernel; None: a buffer) and γ, b in their own type. Saves the input and W; its
    backward hands its share of the input gradient to ψ's node through `share`."""

    @staticmethod
    def forward(ctx: Any, y, w, beta_src, beta_bound, gamma, bias, cfg, share):  # noqa: ANN001
        from lateralnorm.norms import triton_kernel as tk

        beta_src = beta_src.contiguous()
        gamma = None if gamma is None else gamma.contiguous()
        bias = None if bias is None else bias.contiguous()
        out_dtype = torch.promote_types(torch.promote_types(y.dtype, w.dtype), beta_src.dtype)
        numbers = (cfg.center, cfg.rect, cfg.alpha, cfg.p, cfg.r)
        out = tk.given_forward(y, w, beta_src, beta_bound, gamma, bias, *numbers, out_dtype)
        ctx.save_for_backward(y, w, beta_src, gamma, bias)
        ctx.cfg, ctx.beta_bound, ctx.share = cfg, beta_bound, share
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        from lateralnorm.norms import triton_kernel as tk

        y, w, beta_src, gamma, bias = ctx.saved_tensors
        cfg, need, bound = ctx.cfg, ctx.needs_input_grad, ctx.beta_bound
        numbers = (cfg.center, cfg.rect, cfg.alpha, cfg.p, cfg.r)
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain formula instead
            wanted = (need[0], need[1], need[2], need[4], need[5])
            gy, gw, g_beta, g_gamma, g_bias, _ = _given_pool_formula_backward(
                g, y, w, beta_src, gamma, bias, numbers, wanted, bound
            )
            return gy, gw, g_beta, None, g_gamma, g_bias, None, None
        gy, gw, g_beta, g_gamma, g_bias = tk.given_backward(
            g.contiguous(), y, w, beta_src, bound, gamma, bias, (need[2], need[4], need[5]), *numbers
        )
        if need[0] and need[1]:  # ψ's node runs next (W depends on y through it) and adds this share
            ctx.share.gy, gy = gy, None
        return gy if need[0] else None, gw if need[1] else None, g_beta, None, g_gamma, g_bias, None, None


class PooledDivisive(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, y, beta_src, c_src, gamma, bias, cfg):  # noqa: ANN001
        # y: (M, N); beta_src, c_src: (N,) per unit or (1,) shared (raw parameters or fixed buffers)
        kind, center, rect, alpha, p, r, before, after = cfg.formula()
        # β and c valued in the layer's type, then cast to y's (which the layer promoted its input to), as the
        # compiled kernel and the formula take them
        beta, c = _value(beta_src, cfg.beta_bound).to(y.dtype), _value(c_src, cfg.c_bound).to(y.dtype)
        t = center_rows(y) if center else y
        a = torch.relu(t) if rect else (t if alpha == 2.0 and p == 1.0 else t.abs())  # signed α=2: ψ = t·t
        if kind == "uniform" and alpha == 2.0 and not (rect and p == alpha):
            psi, w = None, torch.linalg.vecdot(a, a).unsqueeze(-1)  # Σ ψ without materializing ψ, (M, 1)
        else:
            psi = power(a, alpha)
            w = pool_rows(kind, psi, before, after)  # (M, N), or (M, 1) for uniform
        d = torch.addcmul(beta, w, c)  # β + c ⊙ W: (M, N), or (M, 1) when β and c are shared
        if p == 1.0:
            phi = a if rect else t
        elif p == alpha and rect:
            phi = psi
        else:
            phi = power(a, p) if rect else power(a, p) * t.sign()
        dr = None if r == 1.0 else (d.rsqrt() if r == 0.5 else d.pow(-r))  # D^{−r}
        z = phi / d if dr is None else phi * dr
        out = z if gamma is None else (z * gamma if bias is None else torch.addcmul(bias, z, gamma))
        ctx.save_for_backward(a if rect else t, d, dr, z, w, c, gamma, beta_src, c_src, y, bias)
        ctx.cfg = cfg
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        t_or_a, d, dr, z, w, c, gamma, beta_src, c_src, y, bias = ctx.saved_tensors
        cfg = ctx.cfg
        kind, center, rect, alpha, p, r, before, after = cfg.formula()
        beta_bound, c_bound = cfg.beta_bound, cfg.c_bound
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain formula instead
            return _differentiable_backward(g, (y, beta_src, c_src, gamma, bias), need, ctx.cfg) + (None,)
        g_gamma = (g * z).sum(0) if gamma is not None and need[3] else None
        g_bias = g.sum(0) if ctx.has_bias and need[4] else None
        gz = g * gamma if gamma is not None else g
        row = d.shape[-1] == 1  # D is one number per row (shared β and c with a uniform pool)
        # u = ∂out/∂φ = gz·D^{−r};  q = u·z/D·D^{r}... written so that ∂out/∂D = −r·q with q = gz ⊙ z / D
        u = gz / d if dr is None else gz * dr
        if row:
            q_row = torch.linalg.vecdot(gz, z).unsqueeze(-1).div_(d)  # Σ_i q_i, (M, 1)
            q = None
        else:
            q = u * z if dr is None else (gz * z).div_(d)
        g_beta = g_c = None
        if need[1]:
            g_beta = (q_row.sum() if row else q.sum(0)).mul(-r).reshape(beta_src.shape)
            g_beta = _raw_grad(g_beta, beta_src, beta_bound)
        if need[2]:
            if row:
                g_c = (q_row * w).sum().mul(-r)
            elif kind == "uniform":
                g_c = (q.T @ w).squeeze(-1).mul_(-r)  # (N,)
            else:
                g_c = (q * w).sum(0).mul_(-r)  # self: W = ψ
            g_c = g_c.reshape(c_src.shape) if c_src.numel() > 1 else g_c.sum().reshape(c_src.shape)
            g_c = _raw_grad(g_c, c_src, c_bound)
        if not need[0]:
            return None, g_beta, g_c, g_gamma, g_bias, None
        # ∂/∂ψ: the transpose of the pool applied to ∂/∂W = −r·q ⊙ c
        if row:
            gpsi = q_row * c * (-r)  # (M, 1)
        elif kind == "uniform":
            gpsi = (q @ c.reshape(-1, 1)).mul_(-r) if c.numel() > 1 else q.sum(-1, keepdim=True) * (c * -r)
        else:
            gpsi = _pool_t(kind, q.mul_(c), before, after).mul_(-r)  # (M, N)
        if rect:
            a = t_or_a
            if p == alpha:  # φ = ψ: one shared derivative, α·a^(α−1)·(u + gψ)
                v = u.add_(gpsi)
                gt = (
                    torch.addcmul(v.new_zeros(()), v, a, value=2.0)
                    if alpha == 2.0
                    else v.mul_(_dpow(a, alpha))
                )
            else:
                dphi = (a > 0).to(a.dtype) if p == 1.0 else _dpow(a, p)
                gt = torch.addcmul(u.mul_(dphi), gpsi, _dpow(a, alpha))
        else:
            t = t_or_a
            if alpha == 2.0 and p == 1.0:  # LayerNorm / RMSNorm: φ' = 1, ψ' = 2t
                gt = torch.addcmul(u, gpsi, t, value=2.0)
            else:
                a = t.abs()
                dphi = 1.0 if p == 1.0 else _dpow(a, p)
                gt = torch.addcmul(u * dphi, gpsi, _dpow(a, alpha) * t.sign())
        g_y = gt - gt.mean(-1, keepdim=True) if center else gt
        return g_y, g_beta, g_c, g_gamma, g_bias, None


def pooled_divisive(
    y: torch.Tensor,
    beta: tuple[torch.Tensor, float | None],
    c: tuple[torch.Tensor, float | None],
    gamma: torch.Tensor | None,
    bias: torch.Tensor | None,
    *,
    kind: str,
    center: bool,
    rect: bool,
    alpha: float,
    p: float,
    r: float,
    before: int = 0,
    after: int = 0,
) -> torch.Tensor:
    """Divisive normalization over the last axis of y (any leading shape) with the fused backward.
    `beta` and `c` are (source, bound): a raw `NonNegative` parameter and its bound, or a buffer and None."""
    cfg = DnConfig(kind, center, rect, alpha, p, r, before, after, beta[1], c[1])
    return divisive_rows(y, beta[0], c[0], gamma, bias, cfg)


_KERNEL_DTYPES = (torch.float32, torch.float64)


def _kernel_types(*tensors: torch.Tensor | None) -> bool:
    """Whether the compiled CPU kernel takes the layer's tensors: float32 or float64 (a 16-bit layer given a wider
    input, promoted to it, takes the PyTorch route). A plain loop: on every call's path, where all() over a
    generator cost 1.2 µs and this 0.3 µs."""
    for t in tensors:  # noqa: SIM110 - a loop, not all(): see above
        if t is not None and t.dtype not in _KERNEL_DTYPES:
            return False
    return True


def divisive_rows(
    y: torch.Tensor,
    beta_src: torch.Tensor,
    c_src: torch.Tensor,
    gamma: torch.Tensor | None,
    bias: torch.Tensor | None,
    cfg: DnConfig,
) -> torch.Tensor:
    """`pooled_divisive` with its configuration built once by the caller (a layer keeps its DnConfig: the
    per-call Python work is a visible share of a small layer's time, e.g. in a recurrent cell's steps)."""
    rows = _rows_of(y)
    # graph capture sees `applies_to` as a constant (`available` is marked), never the loader itself; an eager
    # call reads the mode once (`extension_for`)
    capture = torch.compiler.is_compiling() or torch.jit.is_tracing()
    ext = None if capture else cpu_kernel.extension_for(rows)
    if capture and cpu_kernel.applies_to(rows) and _kernel_types(beta_src, c_src, gamma, bias):
        out = CompiledRows.apply(rows, beta_src, c_src, gamma, bias, cfg)  # the kernel as operators
    elif ext is not None and _kernel_types(beta_src, c_src, gamma, bias):
        out = _node(ext, rows, beta_src, c_src, gamma, bias, None, cfg, False)
    elif _triton_applies(rows, cfg.kind):  # contiguous before the node, which saves its input itself
        out = TritonRows.apply(rows.contiguous(), beta_src, c_src, gamma, bias, cfg)
    else:
        # γ and b in the rows' type, which the layer promoted its input to (a float64 input to a float32 layer),
        # cast before the node, so that it saves its own inputs (second derivatives need them)
        gamma, bias = (None if v is None else v.to(rows.dtype) for v in (gamma, bias))
        out = PooledDivisive.apply(rows, beta_src, c_src, gamma, bias, cfg)
    return _unrows(out, y.shape)
