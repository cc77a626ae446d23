"""The exponential family of `dn` (fn=exp, a fixed α) as two autograd nodes around the κ structure's own pool.

Per row (features last), t = y (or y − mean y), s = max_j t_j (a shift the output does not depend on):

    ψ = e^{α(t − s)},  W = pool(ψ),  D = β e^{−α s} + W,  z = e^{p(t − s)} D^{−r} e^{(p − α r) s}

which is e^{p t} / (β + Σ_j κ_ij e^{α t_j})^r without overflow. The composite formula (`DivisiveNorm._formula`)
runs about fifteen element ops forward, and autograd as many back with their saved intermediates; here the
element work before the pool is one node (ψ; gt = α gψ ψ) and after it another (gt = p g z, gW = −r g z / D,
gβ = Σ_rows gW e^{−α s}), with s treated as a constant as the composite does (its detached row maximum: the
output's true derivative through s is zero). A double backward (create_graph) differentiates the plain formula
of each node instead (`partial_grads`). On CPU with the compiled kernel (`csrc/exp_rows.cpp`): the two nodes'
element work in its loops (`ExpPsiRows`, `ExpGivenRows`: one sweep a row each way, the affine inside); with an
O(N) pool (self, uniform, band) the whole layer one C++ node (`exp_rows_node`: a few sweeps of a row each way; the
backward starts from the forward's ψ and each row's shift and pool sum, one kept plane). Tested equal to the
composite to rounding, to second order (tests/test_norms_exact.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lateralnorm.norms import cpu_kernel
from lateralnorm.norms.base import PEDESTAL, lower_bound
from lateralnorm.norms.dn_kernel import (
    KERNEL_MAX_RANK,
    _bound,
    _kernel_types,
    _of_rows_type,
    _source_value,
    center_rows,
    lowrank_formula,
    pool_rows,
)
from lateralnorm.norms.partials import partial_grads

# e^{−α s} is capped at e^80 (a row whose maximum is far below 0); the composite caps β e^{−α s} instead: the same
# wherever neither cap is reached (−α s ≤ 80 and ln β − α s ≤ 80), which rows of ordinary scale always are
EXP_CAP = 80.0


def _psi_formula(t: torch.Tensor, s: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.sub(t, s).mul_(alpha).exp_()  # (one buffer, three passes in place)


def _scale_of(s: torch.Tensor, alpha: float) -> torch.Tensor:
    """e^{−α s} per row, capped (`EXP_CAP`)."""
    return torch.exp((s * -alpha).clamp_max(EXP_CAP))


def _denominator_power(d: torch.Tensor, r: float) -> torch.Tensor:
    if r == 1.0:
        return d.reciprocal()
    if r == 0.5:
        return d.rsqrt()
    return d.pow(-r)


def _out_formula(t, s, w, beta, alpha: float, p: float, r: float) -> torch.Tensor:  # noqa: ANN001
    z = torch.exp((t - s) * p) * _denominator_power(w + _scale_of(s, alpha) * beta, r)
    return z if p == alpha * r else z * torch.exp(s * (p - alpha * r))


class ExpPsi(torch.autograd.Function):
    """ψ = e^{α(t − s)} for rows t and their (constant) shift s."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, s: torch.Tensor, alpha: float) -> torch.Tensor:
        psi = _psi_formula(t, s, alpha)
        ctx.save_for_backward(t, s, psi)
        ctx.alpha = alpha
        return psi

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        t, s, psi = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the formula's gradient as a graph
            (gt,) = partial_grads(lambda u: _psi_formula(u, s, ctx.alpha), (t,), (True,), g)
            return gt, None, None
        return torch.mul(g, psi).mul_(ctx.alpha), None, None


class ExpOut(torch.autograd.Function):
    """z = e^{p(t − s)} (β e^{−α s} + W)^{−r} e^{(p − α r) s} from rows t, their shift s, the pool W and β."""

    @staticmethod
    def forward(ctx: Any, t, s, w, beta, alpha: float, p: float, r: float, psi):  # noqa: ANN001, ANN205
        # psi: ψ's values where p = α (then e^{p(t − s)} is ψ itself: no second exp), else None
        scale = _scale_of(s, alpha)
        d = torch.addcmul(w, scale, beta)  # β e^{−α s} + W
        num = psi.detach() if psi is not None else torch.sub(t, s).mul_(p).exp_()
        z = torch.div(num, d) if r == 1.0 else num.mul(_denominator_power(d, r))
        if p != alpha * r:
            z.mul_(torch.exp(s * (p - alpha * r)))
        ctx.save_for_backward(t, s, w, beta, z, d, scale)
        ctx.numbers = (alpha, p, r)
        return z

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        t, s, w, beta, z, d, scale = ctx.saved_tensors
        alpha, p, r = ctx.numbers
        need_t, _, need_w, need_beta = ctx.needs_input_grad[:4]
        if torch.is_grad_enabled():  # create_graph: the formula's gradients as a graph
            gt, _, gw, gbeta = partial_grads(
                lambda u, v, x, b: _out_formula(u, v, x, b, alpha, p, r),
                (t, s, w, beta),
                (need_t, False, need_w, need_beta),
                g,
            )
            return gt, None, gw, gbeta, None, None, None, None
        gz = g * z
        gt = gz * p if need_t else None
        gd = gz.div_(d).mul_(-r) if (need_w or need_beta) else None  # ∂L/∂D = −r g z / D (gz's buffer)
        gw = gd.sum_to_size(w.shape) if need_w else None
        gbeta = (gd * scale).sum_to_size(beta.shape) if need_beta else None
        return gt, None, gw, gbeta, None, None, None, None


def _affine(z: torch.Tensor, gamma: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    if gamma is None:
        return z
    return z * gamma if bias is None else torch.addcmul(bias, z, gamma)


def given_formula(t, s, w, beta, gamma, bias, numbers: tuple) -> torch.Tensor:  # noqa: ANN001
    """`ExpGivenRows`' function in torch ops (its double backward differentiates this)."""
    alpha, p, r = numbers
    return _affine(_out_formula(t, s, w, beta, alpha, p, r), gamma, bias)


class ExpPsiRows(torch.autograd.Function):
    """(ψ, s) for rows t by the compiled kernel (`exp_psi_rows`: the row maximum and ψ in one sweep). `box`: a list
    shared with the output node (`ExpGivenRows`), whose backward leaves its gradient of t there for this node's
    backward to add α g ψ into in place (one tensor and one sweep, not autograd's sum of two)."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, alpha: float, box: list):  # noqa: ANN205
        psi, s = cpu_kernel.extension().exp_psi_rows(t, alpha)
        ctx.save_for_backward(t, s, psi)
        ctx.alpha, ctx.box = alpha, box
        ctx.mark_non_differentiable(s)
        return psi, s

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor, _gs: torch.Tensor):  # noqa: ANN205
        t, s, psi = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the formula's gradient as a graph
            (gt,) = partial_grads(lambda u: _psi_formula(u, s, ctx.alpha), (t,), (True,), g)
            return gt, None, None
        into = ctx.box.pop() if ctx.box else psi.new_empty(0)
        return cpu_kernel.extension().exp_psi_rows_backward(g, psi, ctx.alpha, into), None, None


class ExpGivenRows(torch.autograd.Function):
    """out = γ z + b from rows t, ψ, their shifts s and the pool W by the compiled kernel (`exp_given_rows`: one
    sweep a row each way); z as `_out_formula`, ψ read as the numerator where p = α and its power where p = 2α…4α
    (no gradient through it there: t's gradient takes it, as `ExpOut`). β (N values), γ, b: the layer's, in t's type."""

    @staticmethod
    def forward(ctx: Any, t, psi, s, w, beta, gamma, bias, numbers: tuple, box: list):  # noqa: ANN001, ANN205
        empty = t.new_empty(0)
        g_, b_ = (empty if v is None else v for v in (gamma, bias))
        out = cpu_kernel.extension().exp_given_rows(t, psi, s, w, beta, g_, b_, *numbers)
        ctx.save_for_backward(t, psi, s, w, beta, gamma, bias)
        ctx.numbers, ctx.box = numbers, box
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # noqa: ANN205
        t, psi, s, w, beta, gamma, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph: the formula's gradients as a graph
            gt, gw, gbeta, ggamma, gbias = partial_grads(
                lambda u, x, b, gm, bi: given_formula(u, s, x, b, gm, bi, ctx.numbers),
                (t, w, beta, gamma, bias),
                (need[0], need[3], need[4], need[5], need[6]),
                g,
            )
            return gt, None, None, gw, gbeta, ggamma, gbias, None, None
        empty = t.new_empty(0)
        g_, b_ = (empty if v is None else v for v in (gamma, bias))
        gt, gw, gbeta, ggamma, gbias = cpu_kernel.extension().exp_given_rows_backward(
            g, t, psi, s, w, beta, g_, b_, *ctx.numbers
        )
        if need[0] and need[1]:  # ψ's node adds its share into gt (see ExpPsiRows)
            ctx.box.clear()  # (a retained graph's earlier backward that did not reach ψ's node left one there)
            ctx.box.append(gt)
            gt = None
        return (
            gt if need[0] else None,
            None,
            None,
            gw if need[3] else None,
            gbeta if need[4] else None,
            ggamma if need[5] else None,
            gbias if need[6] else None,
            None,
            None,
        )


def exp_rows(
    x: torch.Tensor,
    center: bool,
    alpha: float,
    p: float,
    r: float,
    pool: Any,
    beta: torch.Tensor,
    gamma: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """γ z + b for rows x (..., N) of the exp family (see the module docstring): `pool` maps ψ to W (the κ
    structure's differentiable pool), `beta` is β's value (N,) or (1,), γ and b the layer's affine or None. On CPU
    with the compiled kernel the element work runs there (`ExpPsiRows`, `ExpGivenRows`), else in torch ops."""
    t = center_rows(x) if center else x
    if (
        cpu_kernel.extension_for(t) is not None
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and t.numel() > 0
    ):
        n, dt = t.shape[-1], t.dtype
        rows = t.reshape(-1, n).contiguous()
        box: list = []
        psi, s = ExpPsiRows.apply(rows, alpha, box)
        w = pool(psi).expand_as(psi).to(dt).contiguous()  # (autocast may run the pool in another type)
        b = beta.reshape(-1).to(dt).expand(n).contiguous()
        gamma, bias = (None if v is None else v.to(dt).contiguous() for v in (gamma, bias))
        out = ExpGivenRows.apply(rows, psi, s, w, b, gamma, bias, (alpha, p, r), box)
        return out.view(x.shape)
    s = t.detach().amax(-1, keepdim=True)
    psi = ExpPsi.apply(t, s, alpha)
    z = ExpOut.apply(t, s, pool(psi), beta.to(t.dtype), alpha, p, r, psi if p == alpha else None)
    return _affine(z, gamma, bias)


def exp_matrix_rows(x, center, alpha, p, r, beta, pool, gamma, bias):  # noqa: ANN001, ANN201
    """`exp_rows` for a matrix κ through one C++ node (`exp_matrix_rows_node`): ψ, the pool and the output, the same
    calls as `exp_rows`' two element nodes, the pool's own nodes and the NonNeg nodes (the same bits), without their
    boundaries. `pool`: ("lowrank", (U's source, bound), (V's source, bound)) — the kernel's K-thin products — or
    ("linear", matrix) with `matrix()` κ's value (full, gaussian: torch's linear map by it). β: (source, bound) as the
    layer holds it. Where it runs: eager CPU, every tensor of x's float type, a low-rank κ of rank <=
    KERNEL_MAX_RANK on the kernel's products (LATERALNORM_LOWRANK_PRODUCTS); else None, and the caller takes
    `exp_rows`."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or x.numel() == 0:
        return None
    ext = cpu_kernel.extension_for(x)
    if ext is None:
        return None
    (beta_src, beta_bound), (kind, *factors) = beta, pool
    # `exp_rows` casts these; this node takes them as they are
    if not _of_rows_type(x, beta_src, gamma, bias):
        return None
    if kind == "lowrank":
        (u_src, u_bound), (v_src, v_bound) = factors
        if not 1 <= u_src.shape[-1] <= KERNEL_MAX_RANK or cpu_kernel.lowrank_products() != "kernel":
            return None
        inputs, bounds = (u_src, v_src), [_bound(u_bound), _bound(v_bound)]
    else:  # the linear map (under CPU autocast it runs in autocast's type there, its mm backward too: not here)
        if torch.is_autocast_enabled("cpu"):
            return None
        inputs, bounds = (factors[0](), None), []
    if not _of_rows_type(x, *inputs):
        return None
    t = center_rows(x) if center else x
    rows = t.reshape(-1, t.shape[-1]).contiguous()
    numbers = [alpha, p, r, _bound(beta_bound), PEDESTAL, *bounds]
    return ext.exp_matrix_rows_node(rows, beta_src, *inputs, gamma, bias, numbers).view(x.shape)


def _matrix_node_formula_backward(g, t, beta_src, k1, k2, gamma, bias, numbers, need):  # noqa: ANN001, ANN202
    """`exp_matrix_rows_node`'s double backward (create_graph=True): the gradients of (t, β, κ or U, V, γ, b) as a
    graph of PyTorch ops through the plain formula (the sources valued as the layer values them). numbers: the
    node's (α, p, r, β's bound, pedestal[, U's bound, V's bound]); a full or gaussian κ: k1 its value, k2 None."""
    alpha, p, r, beta_bound = numbers[:4]

    def formula(u, bs, a, b, gm, bi):  # noqa: ANN001, ANN202
        s = u.detach().amax(-1, keepdim=True)
        psi = _psi_formula(u, s, alpha)
        if b is None:  # torch's linear map by κ's value
            w = F.linear(psi, a)
        else:
            w = lowrank_formula(psi, _source_value(a, numbers[5]), _source_value(b, numbers[6]))
        return given_formula(u, s, w, _source_value(bs, beta_bound).reshape(-1), gm, bi, (alpha, p, r))

    return tuple(partial_grads(formula, (t, beta_src, k1, k2, gamma, bias), tuple(need), g))


# ------------------------------------------------------------------------------------------------------------
# An O(N) pool (self, uniform, band) in the compiled kernel (`csrc/exp_rows.cpp`): a few sweeps of a row each way,
# the backward from the forward's kept ψ and row numbers. Pools: the kernel's numbering.
POOLS = {"self": 0, "uniform": 1, "band": 2}


def kernel_formula(y, beta, c, gamma, bias, numbers: tuple) -> torch.Tensor:  # noqa: ANN001
    """The compiled node's function in torch ops (its double backward differentiates this)."""
    kind, center, alpha, p, r, before, after = numbers
    t = center_rows(y) if center else y
    s = t.detach().amax(-1, keepdim=True)
    psi = _psi_formula(t, s, alpha)
    return _affine(
        _out_formula(t, s, c * pool_rows(kind, psi, before, after), beta, alpha, p, r), gamma, bias
    )


def _node_formula_backward(g, y, beta_src, c_src, gamma, bias, numbers, need):  # noqa: ANN001, ANN202
    """The C++ layer node's double backward (create_graph=True): the gradients as a graph of PyTorch ops through
    `kernel_formula`, β and c valued from their sources as the node values them (`formula_rows`' arithmetic).
    numbers: the node's (kind code, center, α, p, r, before, after, β's bound, c's bound, pedestal, keep); a
    bound < 0: a fixed buffer."""
    kind, center, alpha, p, r, before, after, beta_bound, c_bound, pedestal = numbers[:10]
    layer = (KIND_OF[int(kind)], bool(center), alpha, p, r, int(before), int(after))

    def value(src: torch.Tensor, bound: float) -> torch.Tensor:
        # the floor with its gradient rule (lower_bound), as the node's own gradient applies it
        v = src if bound < 0 else lower_bound(src, bound).square() - pedestal
        return v.reshape(-1).to(y.dtype)

    def formula(u, bs, cs, gm, bi):  # noqa: ANN001, ANN202
        gm, bi = (None if t is None else t.to(u.dtype) for t in (gm, bi))
        return kernel_formula(u, value(bs, beta_bound), value(cs, c_bound), gm, bi, layer)

    return tuple(partial_grads(formula, (y, beta_src, c_src, gamma, bias), tuple(need), g))


KIND_OF = {code: name for name, code in POOLS.items()}


def exp_rows_compiled(y, beta_src, beta_bound, c_src, c_bound, gamma, bias, numbers: tuple):  # noqa: ANN001
    """The exp family with an O(N) pool through the compiled kernel's layer node where it runs y (CPU float32/
    float64, built, not under torch.compile or jit.trace), else None. β and c as the layer holds them: a
    non-negative parameter's raw values and its bound, or a fixed buffer and None. numbers: (kind, center, α, p, r,
    before, after)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    ext = cpu_kernel.extension_for(y)
    if ext is None or not _kernel_types(beta_src, c_src, gamma, bias):
        return None
    n = y.shape[-1]
    rows = y if y.ndim == 2 and y.is_contiguous() else y.reshape(-1, n).contiguous()
    if rows.shape[0] == 0:
        return None
    kind, center, alpha, p, r, before, after = numbers
    out = ext.exp_rows_node(
        rows, beta_src, c_src, gamma, bias,
        [float(POOLS[kind]), float(center), alpha, p, r, float(before), float(after),
         -1.0 if beta_bound is None else beta_bound, -1.0 if c_bound is None else c_bound, PEDESTAL],
    )  # fmt: skip
    return out if rows is y else out.view(y.shape)
