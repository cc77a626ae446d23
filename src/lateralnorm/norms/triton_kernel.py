"""Divisive normalization on CUDA in Triton: an O(N) pool (κ self, uniform or band) in one program per row, and
a matrix pool's (κ gaussian, low-rank, full, GDN) element work in two kernels each way around its matmuls.

The formula and the backward are those of `dn_kernel.py` / `csrc/dn_rows.cpp` (see there):

    t = y − m,  ψ = ψ(t),  W = pool(ψ),  D = β + c ⊙ W,  z = φ(t) D^{−r},  out = γ z + b
    gz = g γ;  v = gz D^{−r} φ'(t);  q = gz z / D;  gψ = poolᵀ(−r c q);  gy = v + gψ ψ'(t) (− mean when centered)

One forward and one backward kernel per call instead of one kernel per element-wise op. The band pool reads
its taps from global memory (they are in L1/L2); its transpose recomputes q at the mirrored taps from the
saved window sums. The backward runs a fixed number of programs per device, each over every P-th row, keeping
its share of the column sums for γ, b, β and c in registers; PyTorch adds the P partials (deterministic).
Rows up to 16384 units; float32, float16 and bfloat16 inputs (computed in float32). Imported lazily: Triton
is only needed on a CUDA machine. Opt-in (LATERALNORM_CUDA_KERNEL=triton) until measured on a GPU; the tests
run these kernels on the CPU under Triton's interpreter (TRITON_INTERPRET=1) against the float64 PyTorch
kernel, and `benchmarks/gpu_check.py` (section a.triton) checks them on a GPU.
"""

from __future__ import annotations

import functools
import math
import struct

import torch
import triton
import triton.language as tl

from lateralnorm.norms.base import PEDESTAL
from lateralnorm.norms.dn_kernel import KIND_CODE  # the O(N) pools' codes, as the CPU kernel's

MAX_N = 16384


@triton.jit
def _mag(t, RECT: tl.constexpr):
    if RECT:
        return tl.maximum(t, 0.0)
    return tl.abs(t)


@triton.jit
def _psi(t, RECT: tl.constexpr, A2: tl.constexpr, alpha):
    a = _mag(t, RECT)
    if A2:
        return a * a
    return tl.where(a > 0, tl.exp(alpha * tl.log(tl.maximum(a, 1e-30))), 0.0)


@triton.jit
def _dpsi(t, RECT: tl.constexpr, A2: tl.constexpr, alpha):
    """dψ/dt (with ψ's sign for signed ψ); 0 at t = 0 for α ≠ 2."""
    a = _mag(t, RECT)
    if A2:
        d = 2.0 * a
    else:
        d = tl.where(a > 0, alpha * tl.exp((alpha - 1.0) * tl.log(tl.maximum(a, 1e-30))), 0.0)
    if RECT:
        return d
    return tl.where(t < 0, -d, d)


@triton.jit
def _phi(t, psi, RECT: tl.constexpr, PMODE: tl.constexpr, p):
    """φ(t): PMODE 0: p = 1; 1: p = α (reuse ψ); 2: any p."""
    a = _mag(t, RECT)
    if PMODE == 0:
        v = a
    elif PMODE == 1:
        v = psi
    else:
        v = tl.where(a > 0, tl.exp(p * tl.log(tl.maximum(a, 1e-30))), 0.0)
    if RECT:
        return v
    return tl.where(t < 0, -v, v)


@triton.jit
def _dphi(t, RECT: tl.constexpr, PMODE: tl.constexpr, A2: tl.constexpr, alpha, p):
    """dφ/dt = p·a^(p−1) (signed: for t ≠ 0 and t = 0 alike when p = 1; rect: only where t > 0)."""
    a = _mag(t, RECT)
    if PMODE == 0:
        if RECT:
            d = tl.where(a > 0, 1.0, 0.0)
        else:
            d = t * 0.0 + 1.0
    elif PMODE == 1:
        if A2:
            d = 2.0 * a
        else:
            d = tl.where(a > 0, alpha * tl.exp((alpha - 1.0) * tl.log(tl.maximum(a, 1e-30))), 0.0)
    else:
        d = tl.where(a > 0, p * tl.exp((p - 1.0) * tl.log(tl.maximum(a, 1e-30))), 0.0)
    return d


@triton.jit
def _dr(d, RMODE: tl.constexpr, r):
    """D^{−r}: RMODE 0: r = 1/2; 1: r = 1; 2: any r."""
    if RMODE == 0:
        return 1.0 / tl.sqrt(d)
    if RMODE == 1:
        return 1.0 / d
    return tl.exp(-r * tl.log(d))


@triton.jit
def _value(SRC, offs, mask, bound, pedestal, other, VEC: tl.constexpr, RAW: tl.constexpr):
    """A parameter's value in each lane, float32: its own unit's (VEC 1) or the one shared number (VEC 0: every
    lane reads the same address), through the non-negative reparametrization v = max(p, bound)² − pedestal where
    the source is a raw `NonNegative` parameter (RAW), as `dn_kernel._value`. Masked lanes read `other`."""
    v = tl.load(SRC + offs * VEC, mask=mask, other=other).to(tl.float32)
    if RAW:
        v = tl.maximum(v, bound)
        v = v * v - pedestal
    return v


@triton.jit
def _beta_c(BETA, C, offs, mask, beta_bound, c_bound, pedestal, BETA_VEC: tl.constexpr, C_VEC: tl.constexpr,
            BETA_RAW: tl.constexpr, C_RAW: tl.constexpr):  # fmt: skip
    """β and c in each lane (masked lanes: β from 1, c from 0, so D stays positive)."""
    beta = _value(BETA, offs, mask, beta_bound, pedestal, 1.0, BETA_VEC, BETA_RAW)
    c = _value(C, offs, mask, c_bound, pedestal, 0.0, C_VEC, C_RAW)
    return beta, c


@triton.jit
def _unit(SRC, offs, mask, HAS: tl.constexpr, default):
    """γ or b in each lane, float32, from its own type; `default` (1 for γ, 0 for b) where the layer has none
    (HAS false: nothing is read); 0 in masked lanes."""
    if HAS:
        v = tl.load(SRC + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        v = tl.where(mask, default, 0.0)
    return v


@triton.jit
def _means(y, mask, N, CENTER: tl.constexpr):
    """The row's mean in two steps (the second removes the rounding error of the first), or zeros."""
    if CENTER:
        m = tl.sum(y, axis=0) / N
        m2 = tl.sum(tl.where(mask, y - m, 0.0), axis=0) / N
    else:
        m = tl.sum(y * 0.0, axis=0)
        m2 = m
    return m, m2


@triton.jit
def _fwd(Y, OUT, MEAN, WSAVE, BETA, C, GAMMA, BIAS, N, alpha, p, r, beta_bound, c_bound, pedestal,
         KIND: tl.constexpr, CENTER: tl.constexpr, RECT: tl.constexpr, A2: tl.constexpr,
         PMODE: tl.constexpr, RMODE: tl.constexpr, BETA_VEC: tl.constexpr, C_VEC: tl.constexpr,
         BETA_RAW: tl.constexpr, C_RAW: tl.constexpr, BEFORE: tl.constexpr,
         AFTER: tl.constexpr, SAVE_W: tl.constexpr, HAS_GAMMA: tl.constexpr, HAS_BIAS: tl.constexpr,
         BLOCK: tl.constexpr):  # fmt: skip
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    base = row.to(tl.int64) * N
    y = tl.load(Y + base + offs, mask=mask, other=0.0).to(tl.float32)
    m, m2 = _means(y, mask, N, CENTER)
    t = tl.where(mask, (y - m) - m2, 0.0)
    psi = tl.where(mask, _psi(t, RECT, A2, alpha), 0.0)
    if KIND == 1:
        w = tl.sum(psi, axis=0)
    elif KIND == 0:
        w = psi
    else:
        w = tl.zeros([BLOCK], dtype=tl.float32)
        for k in tl.static_range(BEFORE + 1 + AFTER):
            o2 = offs - BEFORE + k
            inside = (o2 >= 0) & (o2 < N)
            y2 = tl.load(Y + base + o2, mask=inside, other=0.0).to(tl.float32)
            w += tl.where(inside, _psi((y2 - m) - m2, RECT, A2, alpha), 0.0)
        if SAVE_W:
            tl.store(WSAVE + base + offs, w, mask=mask)
    beta, c = _beta_c(BETA, C, offs, mask, beta_bound, c_bound, pedestal, BETA_VEC, C_VEC, BETA_RAW, C_RAW)
    d = beta + c * w
    z = _phi(t, psi, RECT, PMODE, p) * _dr(d, RMODE, r)
    gamma = _unit(GAMMA, offs, mask, HAS_GAMMA, 1.0)
    bias = _unit(BIAS, offs, mask, HAS_BIAS, 0.0)
    tl.store(OUT + base + offs, (z * gamma + bias).to(OUT.dtype.element_ty), mask=mask)
    tl.store(MEAN + 2 * row, m)
    tl.store(MEAN + 2 * row + 1, m2)


@triton.jit
def _q_at(Y, G, WSAVE, BETA, C, GAMMA, base, o2, inside, m, mb, N, alpha, p, r, beta_bound, c_bound, pedestal,
          RECT: tl.constexpr, A2: tl.constexpr, PMODE: tl.constexpr, RMODE: tl.constexpr,
          BETA_VEC: tl.constexpr, C_VEC: tl.constexpr, BETA_RAW: tl.constexpr, C_RAW: tl.constexpr,
          HAS_GAMMA: tl.constexpr):  # fmt: skip
    """−r·c·q at the units o2 of a band-pooled row (for the transpose of the window)."""
    y2 = tl.load(Y + base + o2, mask=inside, other=0.0).to(tl.float32)
    t2 = (y2 - m) - mb
    w2 = tl.load(WSAVE + base + o2, mask=inside, other=0.0)
    beta2, c2 = _beta_c(BETA, C, o2, inside, beta_bound, c_bound, pedestal, BETA_VEC, C_VEC, BETA_RAW, C_RAW)
    d2 = beta2 + c2 * w2
    psi2 = _psi(t2, RECT, A2, alpha)
    z2 = _phi(t2, psi2, RECT, PMODE, p) * _dr(d2, RMODE, r)
    gz2 = tl.load(G + base + o2, mask=inside, other=0.0).to(tl.float32)
    if HAS_GAMMA:  # (no γ: no multiply at all; a where(…, 1, 0) here cost the band backward registers)
        gz2 = gz2 * tl.load(GAMMA + o2, mask=inside, other=0.0).to(tl.float32)
    return tl.where(inside, -r * c2 * gz2 * z2 / d2, 0.0)


@triton.jit
def _bwd(Y, G, GY, MEAN, WSAVE, BETA, C, GAMMA, PART, M, N, alpha, p, r, beta_bound, c_bound, pedestal,
         KIND: tl.constexpr, CENTER: tl.constexpr, RECT: tl.constexpr, A2: tl.constexpr,
         PMODE: tl.constexpr, RMODE: tl.constexpr, BETA_VEC: tl.constexpr, C_VEC: tl.constexpr,
         BETA_RAW: tl.constexpr, C_RAW: tl.constexpr, BEFORE: tl.constexpr,
         AFTER: tl.constexpr, HAS_GAMMA: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """Program k takes the rows k, k + P, k + 2P, … (P programs) and keeps its share of the four column sums in
    registers: one (4, N) partial per program, not per row, so the sums cost no extra pass over the rows."""
    pid = tl.program_id(0).to(tl.int64)
    programs = tl.num_programs(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    beta, c = _beta_c(BETA, C, offs, mask, beta_bound, c_bound, pedestal, BETA_VEC, C_VEC, BETA_RAW, C_RAW)
    if HAS_GAMMA:
        gamma = tl.load(GAMMA + offs, mask=mask, other=0.0).to(tl.float32)
    s_gz = tl.zeros([BLOCK], dtype=tl.float32)
    s_g = tl.zeros([BLOCK], dtype=tl.float32)
    s_q = tl.zeros([BLOCK], dtype=tl.float32)
    s_qw = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, tl.cdiv(M - pid, programs)):
        row = pid + i * programs
        base = row * N
        m = tl.load(MEAN + 2 * row)
        mb = tl.load(MEAN + 2 * row + 1)
        y = tl.load(Y + base + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(G + base + offs, mask=mask, other=0.0).to(tl.float32)
        t = tl.where(mask, (y - m) - mb, 0.0)
        psi = tl.where(mask, _psi(t, RECT, A2, alpha), 0.0)
        if KIND == 1:
            w = tl.sum(psi, axis=0) + tl.zeros([BLOCK], dtype=tl.float32)
        elif KIND == 0:
            w = psi
        else:
            w = tl.load(WSAVE + base + offs, mask=mask, other=0.0)
        d = beta + c * w
        k = _dr(d, RMODE, r)
        z = _phi(t, psi, RECT, PMODE, p) * k
        gz = g
        if HAS_GAMMA:
            gz = g * gamma
        q = tl.where(mask, gz * z / d, 0.0)
        v = tl.where(mask, gz * k * _dphi(t, RECT, PMODE, A2, alpha, p), 0.0)
        s_gz += tl.where(mask, g * z, 0.0)
        s_g += g
        s_q += q
        s_qw += q * w
        dpsi = _dpsi(t, RECT, A2, alpha)
        if KIND == 1:
            gpsi = -r * tl.sum(c * q, axis=0)
        elif KIND == 0:
            gpsi = -r * c * q
        else:
            gpsi = tl.zeros([BLOCK], dtype=tl.float32)
            for kk in tl.static_range(
                BEFORE + 1 + AFTER
            ):  # unit j feeds the windows of i ∈ [j − AFTER, j + BEFORE]
                o2 = offs - AFTER + kk
                inside = (o2 >= 0) & (o2 < N)
                gpsi += _q_at(Y, G, WSAVE, BETA, C, GAMMA, base, o2, inside, m, mb, N, alpha, p, r, beta_bound,
                              c_bound, pedestal, RECT, A2, PMODE, RMODE, BETA_VEC, C_VEC, BETA_RAW,
                              C_RAW, HAS_GAMMA)  # fmt: skip
        gt = tl.where(mask, v + gpsi * dpsi, 0.0)
        if CENTER:
            gt = tl.where(mask, gt - tl.sum(gt, axis=0) / N, 0.0)
        tl.store(GY + base + offs, gt.to(GY.dtype.element_ty), mask=mask)
    pbase = pid * 4 * N
    tl.store(PART + pbase + offs, s_gz, mask=mask)
    tl.store(PART + pbase + N + offs, s_g, mask=mask)
    tl.store(PART + pbase + 2 * N + offs, s_q, mask=mask)
    tl.store(PART + pbase + 3 * N + offs, s_qw, mask=mask)


@triton.jit
def _param_grads(SUMS, BETA, C, GB, GC, GG, GBIAS, N, r, beta_bound, c_bound, BETA_VEC: tl.constexpr,
                 C_VEC: tl.constexpr, BETA_RAW: tl.constexpr, C_RAW: tl.constexpr, NEED_BETA: tl.constexpr,
                 NEED_C: tl.constexpr, NEED_GAMMA: tl.constexpr, NEED_BIAS: tl.constexpr,
                 BLOCK: tl.constexpr):  # fmt: skip
    """∂L/∂β = −r Σ q and ∂L/∂c = −r Σ q W from the column sums SUMS (rows Σ g z, Σ g, Σ q, Σ q W; a matrix
    pool's has no fourth and asks for β alone), per unit or summed over the units for a shared one, and back
    through the reparametrization to the raw parameter (as `dn_kernel._raw_grad`: 2·max(p, bound), passed where
    p ≥ bound or the gradient pushes p up).
    One program: the backward's last step in one launch instead of a dozen small PyTorch ops."""
    if NEED_BETA:
        _param_grad(SUMS + 2 * N, BETA, GB, N, r, beta_bound, BETA_VEC, BETA_RAW, BLOCK)
    if NEED_C:
        _param_grad(SUMS + 3 * N, C, GC, N, r, c_bound, C_VEC, C_RAW, BLOCK)
    for start in range(0, N, BLOCK):  # γ's and b's (Σ g z, Σ g) in their own type where it is not float32
        offs = start + tl.arange(0, BLOCK)
        mask = offs < N
        if NEED_GAMMA:
            tl.store(GG + offs, tl.load(SUMS + offs, mask=mask).to(GG.dtype.element_ty), mask=mask)
        if NEED_BIAS:
            tl.store(GBIAS + offs, tl.load(SUMS + N + offs, mask=mask).to(GBIAS.dtype.element_ty), mask=mask)


@triton.jit
def _param_grad(S, SRC, OUT, N, r, bound, VEC: tl.constexpr, RAW: tl.constexpr, BLOCK: tl.constexpr):
    """One parameter's raw gradient from its column sums S (N,): per unit (VEC), or their total at OUT[0]."""
    offs0 = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, N, BLOCK):
        offs = start + offs0
        mask = offs < N
        g = -r * tl.load(S + offs, mask=mask, other=0.0)
        if VEC:
            tl.store(
                OUT + offs, _raw_grad(g, SRC, offs, mask, bound, RAW).to(OUT.dtype.element_ty), mask=mask
            )
        else:
            acc += g
    if VEC == 0:
        one = offs0 < 1
        g = _raw_grad(tl.sum(acc, axis=0) + acc * 0.0, SRC, offs0 * 0, one, bound, RAW)
        tl.store(OUT + offs0, g.to(OUT.dtype.element_ty), mask=one)


@triton.jit
def _raw_grad(g, SRC, offs, mask, bound, RAW: tl.constexpr):
    """g (the gradient of a parameter's value) back to its raw source where RAW (see `_param_grads`)."""
    if RAW:
        raw = tl.load(SRC + offs, mask=mask, other=0.0).to(tl.float32)
        g = g * 2.0 * tl.maximum(raw, bound)
        g = tl.where((raw >= bound) | (g < 0), g, 0.0)
    return g


# ------------------------------------------------------------------ a matrix pool's element work (κ gaussian,
# low-rank, full, GDN): ψ rows before the pool's matmuls (PyTorch's), the output from the pool W after them;
# D = β + W (κ carries the scale), the same formula as the compiled CPU nodes psi_rows_node / given_pool_node.
@triton.jit
def _centered(Y, base, offs, mask, N, CENTER: tl.constexpr):
    """t = y − mean (as `_fwd`) or y, float32, 0 in the masked lanes."""
    y = tl.load(Y + base + offs, mask=mask, other=0.0).to(tl.float32)
    m, m2 = _means(y, mask, N, CENTER)
    return tl.where(mask, (y - m) - m2, 0.0)


@triton.jit
def _phi_of(t, RECT: tl.constexpr, A2: tl.constexpr, PMODE: tl.constexpr, alpha, p):
    """φ(t), taking ψ(t) first where φ is ψ (p = α, PMODE 1)."""
    if PMODE == 1:
        psi = _psi(t, RECT, A2, alpha)
    else:
        psi = t  # not read
    return _phi(t, psi, RECT, PMODE, p)


@triton.jit
def _psi_fwd(
    Y, PSI, N, alpha, CENTER: tl.constexpr, RECT: tl.constexpr, A2: tl.constexpr, BLOCK: tl.constexpr
):
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    base = tl.program_id(0).to(tl.int64) * N
    t = _centered(Y, base, offs, mask, N, CENTER)
    psi = tl.where(mask, _psi(t, RECT, A2, alpha), 0.0)
    tl.store(PSI + base + offs, psi.to(PSI.dtype.element_ty), mask=mask)


@triton.jit
def _psi_bwd(Y, GPSI, GY, ADD, N, alpha, CENTER: tl.constexpr, RECT: tl.constexpr, A2: tl.constexpr,
             HAS_ADD: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """The input's gradient through ψ, plus (HAS_ADD) the output kernel's share ADD: one tensor, no extra add."""
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    base = tl.program_id(0).to(tl.int64) * N
    t = _centered(Y, base, offs, mask, N, CENTER)
    gpsi = tl.load(GPSI + base + offs, mask=mask, other=0.0).to(tl.float32)
    gt = tl.where(mask, gpsi * _dpsi(t, RECT, A2, alpha), 0.0)
    if CENTER:
        gt = tl.where(mask, gt - tl.sum(gt, axis=0) / N, 0.0)
    if HAS_ADD:
        gt += tl.load(ADD + base + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(GY + base + offs, gt.to(GY.dtype.element_ty), mask=mask)


@triton.jit
def _given_fwd(Y, W, BETA, GAMMA, BIAS, OUT, N, alpha, p, r, beta_bound, pedestal, CENTER: tl.constexpr,
               RECT: tl.constexpr, A2: tl.constexpr, PMODE: tl.constexpr, RMODE: tl.constexpr,
               BETA_VEC: tl.constexpr, BETA_RAW: tl.constexpr, HAS_GAMMA: tl.constexpr, HAS_BIAS: tl.constexpr,
               BLOCK: tl.constexpr):  # fmt: skip
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    base = tl.program_id(0).to(tl.int64) * N
    t = _centered(Y, base, offs, mask, N, CENTER)
    w = tl.load(W + base + offs, mask=mask, other=0.0).to(tl.float32)
    d = _value(BETA, offs, mask, beta_bound, pedestal, 1.0, BETA_VEC, BETA_RAW) + w
    z = _phi_of(t, RECT, A2, PMODE, alpha, p) * _dr(d, RMODE, r)
    gamma = _unit(GAMMA, offs, mask, HAS_GAMMA, 1.0)
    bias = _unit(BIAS, offs, mask, HAS_BIAS, 0.0)
    tl.store(OUT + base + offs, (z * gamma + bias).to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _given_bwd(Y, W, G, BETA, GAMMA, GY, GW, PART, M, N, alpha, p, r, beta_bound, pedestal, CENTER: tl.constexpr,
               RECT: tl.constexpr, A2: tl.constexpr, PMODE: tl.constexpr, RMODE: tl.constexpr,
               BETA_VEC: tl.constexpr, BETA_RAW: tl.constexpr, HAS_GAMMA: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """Every P-th row, as `_bwd`: ∂/∂W = −r·q, the input's share v, and the column sums Σ g z, Σ g, Σ q."""
    pid = tl.program_id(0).to(tl.int64)
    programs = tl.num_programs(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    beta = _value(BETA, offs, mask, beta_bound, pedestal, 1.0, BETA_VEC, BETA_RAW)
    if HAS_GAMMA:
        gamma = tl.load(GAMMA + offs, mask=mask, other=0.0).to(tl.float32)
    s_gz = tl.zeros([BLOCK], dtype=tl.float32)
    s_g = tl.zeros([BLOCK], dtype=tl.float32)
    s_q = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, tl.cdiv(M - pid, programs)):
        base = (pid + i * programs) * N
        t = _centered(Y, base, offs, mask, N, CENTER)
        w = tl.load(W + base + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(G + base + offs, mask=mask, other=0.0).to(tl.float32)
        d = beta + w
        k = _dr(d, RMODE, r)
        z = _phi_of(t, RECT, A2, PMODE, alpha, p) * k
        gz = g
        if HAS_GAMMA:
            gz = g * gamma
        q = tl.where(mask, gz * z / d, 0.0)
        gt = tl.where(mask, gz * k * _dphi(t, RECT, PMODE, A2, alpha, p), 0.0)
        if CENTER:
            gt = tl.where(mask, gt - tl.sum(gt, axis=0) / N, 0.0)
        tl.store(GY + base + offs, gt.to(GY.dtype.element_ty), mask=mask)
        tl.store(GW + base + offs, (-r * q).to(GW.dtype.element_ty), mask=mask)
        s_gz += tl.where(mask, g * z, 0.0)
        s_g += g
        s_q += q
    pbase = pid * 3 * N
    tl.store(PART + pbase + offs, s_gz, mask=mask)
    tl.store(PART + pbase + N + offs, s_g, mask=mask)
    tl.store(PART + pbase + 2 * N + offs, s_q, mask=mask)


# ------------------------------------------------------------------ a NonNegative parameter's value (κ, β of the
# matrix pools, GDN's, ...): v = max(p, bound)² − pedestal and its raw gradient, one kernel each way
@triton.jit
def _nonneg_fwd(RAW, OUT, NUMEL, bound, pedestal, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NUMEL
    v = _value(RAW, offs, mask, bound, pedestal, 0.0, 1, True)
    tl.store(OUT + offs, v.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _nonneg_bwd(G, RAW, GRAW, NUMEL, bound, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NUMEL
    g = _raw_grad(tl.load(G + offs, mask=mask, other=0.0).to(tl.float32), RAW, offs, mask, bound, True)
    tl.store(GRAW + offs, g.to(GRAW.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------ host side
def _pow2(n: int) -> int:
    """The least power of two ≥ n (n ≥ 1): `triton.next_power_of_2` is a jit function, about 5 µs a host call."""
    return 1 << (n - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=256)
def _modes(rect: bool, alpha: float, p: float, r: float) -> dict:
    a2 = alpha == 2.0
    pmode = 0 if p == 1.0 else (1 if p == alpha else 2)
    rmode = 0 if r == 0.5 else (1 if r == 1.0 else 2)
    return dict(RECT=rect, A2=a2, PMODE=pmode, RMODE=rmode)


def applies(y, kind: str) -> bool:  # noqa: ANN001
    """Whether these rows fit the kernels (the caller, `base.triton_kernels_for`, checks the device and type)."""
    return 0 < y.shape[-1] <= MAX_N and kind in KIND_CODE


@functools.lru_cache(maxsize=64)
def _bound_in(dtype, bound: float | None) -> float:  # noqa: ANN001
    """A raw parameter's bound as the PyTorch route compares it: rounded to the parameter's type (through float32,
    as torch converts a Python number), which differs from the float32 value for bfloat16 and float16 (a parameter
    initialized at its floor sits on it); 0 for none. No tensor op (a CPU scalar would count as device work)."""
    if bound is None:
        return 0.0
    if dtype not in (torch.float16, torch.bfloat16):
        return float(bound)
    try:
        f32 = struct.unpack("<f", struct.pack("<f", bound))[0]
        if dtype == torch.float16:
            return struct.unpack("<e", struct.pack("<e", f32))[0]
    except OverflowError:  # beyond the type's range: torch gives infinity
        return math.copysign(math.inf, bound)
    u = struct.unpack("<I", struct.pack("<f", f32))[0]  # bfloat16: float32's upper 16 bits, to nearest even
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return struct.unpack("<f", struct.pack("<I", u))[0]


def _on_its_device(fn):  # noqa: ANN001, ANN202
    """Launch on the CUDA device of the host function's first tensor (Triton launches on the current device)."""

    @functools.wraps(fn)
    def on_device(t, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if t.is_cuda and t.device.index != torch.cuda.current_device():
            with torch.cuda.device(t.device):
                return fn(t, *args, **kwargs)
        return fn(t, *args, **kwargs)

    return on_device


def _param_args(beta, c, bounds) -> tuple[tuple, dict]:  # noqa: ANN001
    """The kernels' arguments for β and c: their sources as the layer holds them ((N,) or (1,), raw
    `NonNegative` parameters or fixed buffers) and `bounds` (each the raw parameter's bound, or None for a
    buffer): (bound, bound, pedestal) and the modes."""
    beta_bound, c_bound = bounds
    scalars = (_bound_in(beta.dtype, beta_bound), _bound_in(c.dtype, c_bound), PEDESTAL)
    modes = dict(BETA_VEC=int(beta.numel() > 1), C_VEC=int(c.numel() > 1), BETA_RAW=beta_bound is not None,
                 C_RAW=c_bound is not None)  # fmt: skip
    return scalars, modes


def _affine_args(y, gamma, bias) -> tuple:  # noqa: ANN001
    """(γ pointer, b pointer, modes): the layer's own tensors in their own type, or y where it has none (not
    read: HAS_GAMMA / HAS_BIAS false)."""
    return (y if gamma is None else gamma, y if bias is None else bias,
            dict(HAS_GAMMA=gamma is not None, HAS_BIAS=bias is not None))  # fmt: skip


def _finish(sums, beta, c, scalars, pmodes, need: tuple, gamma, bias, r: float) -> tuple:  # noqa: ANN001
    """(∂L/∂β, ∂L/∂c, ∂L/∂γ, ∂L/∂b) from the column sums (rows Σ g z, Σ g, Σ q[, Σ q W]), None where `need`
    (β, c, γ, b) says no: the raw parameters' through `_param_grads`, γ's and b's the sums themselves where they
    are float32, else written in their type by the same launch (one launch or none)."""
    n = sums.shape[-1]
    need_beta, need_c = need[0], need[1]
    need_gamma, need_bias = need[2] and gamma is not None, need[3] and bias is not None
    cast_gamma = need_gamma and gamma.dtype != torch.float32
    cast_bias = need_bias and bias.dtype != torch.float32
    g_beta = torch.empty_like(beta) if need_beta else None
    g_c = torch.empty_like(c) if need_c else None
    g_gamma = torch.empty_like(gamma) if cast_gamma else (sums[0] if need_gamma else None)
    g_bias = torch.empty_like(bias) if cast_bias else (sums[1] if need_bias else None)
    if need_beta or need_c or cast_gamma or cast_bias:
        _param_grads[(1,)](
            sums, beta, c, *(t if t is not None else sums for t in (g_beta, g_c, g_gamma, g_bias)), n, float(r),
            *scalars[:2], NEED_BETA=need_beta, NEED_C=need_c, NEED_GAMMA=cast_gamma, NEED_BIAS=cast_bias,
            BLOCK=min(_pow2(n), 1024), **pmodes,
        )  # fmt: skip
    return g_beta, g_c, g_gamma, g_bias


@_on_its_device
def rows_forward(y, beta, c, bounds, gamma, bias, kind: str, center: bool, rect: bool, alpha: float, p: float,
                 r: float, before: int, after: int, save_w: bool, out_dtype):  # noqa: ANN001, ANN201  # fmt: skip
    """(out, mean (M, 2) float32, w) for rows y (M, N); β, c, γ and b as the layer holds them (see `_param_args`;
    γ, b (N,) in their own type, or None)."""
    m_rows, n = y.shape
    out = torch.empty_like(y, dtype=out_dtype)
    mean = torch.empty((m_rows, 2), device=y.device, dtype=torch.float32)
    w = (
        torch.empty((m_rows, n), device=y.device, dtype=torch.float32)
        if (save_w and kind == "band")
        else mean
    )
    if m_rows:
        scalars, pmodes = _param_args(beta, c, bounds)
        gam, bia, amodes = _affine_args(y, gamma, bias)
        _fwd[(m_rows,)](
            y, out, mean, w, beta, c, gam, bia, n, float(alpha), float(p), float(r), *scalars,
            KIND=KIND_CODE[kind], CENTER=center, BEFORE=before, AFTER=after,
            SAVE_W=save_w and kind == "band", BLOCK=_pow2(n),
            num_warps=warps(_pow2(n)), **_modes(rect, alpha, p, r), **pmodes, **amodes,
        )  # fmt: skip
    return out, mean, (w if (save_w and kind == "band") else None)


@_on_its_device
def rows_backward(g, y, mean, w, beta, c, bounds, gamma, bias, need: tuple, kind: str, center: bool, rect: bool,
                  alpha: float, p: float, r: float, before: int, after: int):  # noqa: ANN001, ANN201  # fmt: skip
    """(gy, ∂L/∂β, ∂L/∂c, ∂L/∂γ, ∂L/∂b): the parameters' gradients (None where `need` (β, c, γ, b) says no) in
    their sources' shape and type."""
    m_rows, n = y.shape
    gy = torch.empty_like(y)
    programs = row_programs(m_rows, y.device)
    scalars, pmodes = _param_args(beta, c, bounds)
    if m_rows:  # every program writes its partial
        part = torch.empty((programs, 4, n), device=y.device, dtype=torch.float32)
        block = _pow2(n)
        # the band backward reads γ at 2w + 1 taps: a 16-bit γ there doubled its spills, so it gets float32
        band16 = kind == "band" and gamma is not None and gamma.dtype != torch.float32
        gam, _, amodes = _affine_args(y, gamma.float() if band16 else gamma, None)
        _bwd[(programs,)](
            y, g, gy, mean, w if w is not None else mean, beta, c, gam, part, m_rows, n, float(alpha), float(p),
            float(r), *scalars, KIND=KIND_CODE[kind], CENTER=center, BEFORE=before,
            AFTER=after, BLOCK=block, num_warps=warps(block), HAS_GAMMA=amodes["HAS_GAMMA"],
            **_modes(rect, alpha, p, r), **pmodes,
        )  # fmt: skip
        sums = part.sum(0)  # (4, N)
    else:
        sums = torch.zeros((4, n), device=y.device, dtype=torch.float32)
    return (gy, *_finish(sums, beta, c, scalars, pmodes, need, gamma, bias, r))


# Programs of the backward on the CPU (Triton's interpreter, the tests): few, so that each takes several rows.
INTERPRETER_PROGRAMS = 3


def row_programs(m_rows: int, device) -> int:  # noqa: ANN001
    """How many programs the backward runs (each takes every P-th row and writes one partial of the column
    sums): four per streaming multiprocessor on CUDA, a fixed number per device, so its sums are repeatable."""
    if device.type == "cuda":
        per_device = 4 * _multiprocessors(
            torch.cuda.current_device() if device.index is None else device.index
        )
    else:
        per_device = INTERPRETER_PROGRAMS
    return max(1, min(m_rows, per_device))


@functools.cache
def _multiprocessors(index: int) -> int:
    """A CUDA device's multiprocessor count, read once (the backward asks at every call)."""
    return torch.cuda.get_device_properties(index).multi_processor_count


def warps(block: int) -> int:
    """Warps per program: enough threads that a row's lanes fit in registers (the backward holds three or
    four column-sum accumulators and about ten temporaries per lane; with 8 warps at 4096 lanes ptxas spilled
    296 bytes per thread of the matrix pool's backward, sm_90a)."""
    return 4 if block <= 1024 else (8 if block <= 2048 else (16 if block <= 4096 else 32))


@_on_its_device
def psi_forward(y, center: bool, rect: bool, alpha: float):  # noqa: ANN001, ANN201
    """ψ(t) of rows y (M, N), in y's type (a matrix pool's input)."""
    m_rows, n = y.shape
    psi = torch.empty_like(y)
    if m_rows:
        block = _pow2(n)
        _psi_fwd[(m_rows,)](y, psi, n, float(alpha), CENTER=center, RECT=rect, A2=alpha == 2.0, BLOCK=block,
                            num_warps=warps(block))  # fmt: skip
    return psi


@_on_its_device
def psi_backward(g_psi, y, center: bool, rect: bool, alpha: float, add=None):  # noqa: ANN001, ANN201
    """The input's gradient through ψ (centered when the rows were), plus `add` (M, N) where given."""
    m_rows, n = y.shape
    gy = torch.empty_like(y)
    if m_rows:
        block = _pow2(n)
        _psi_bwd[(m_rows,)](y, g_psi, gy, gy if add is None else add, n, float(alpha), CENTER=center, RECT=rect,
                            A2=alpha == 2.0, HAS_ADD=add is not None, BLOCK=block, num_warps=warps(block))  # fmt: skip
    return gy


@_on_its_device
def given_forward(y, w, beta, beta_bound, gamma, bias, center: bool, rect: bool, alpha: float, p: float,
                  r: float, out_dtype):  # noqa: ANN001, ANN201  # fmt: skip
    """γ φ(t) (β + W)^(−r) + b for rows y and their pool W (M, N); β as the layer holds it ((N,) or (1,); a raw
    `NonNegative` parameter with its bound, or a buffer and None), γ, b (N,) in their own type or None."""
    m_rows, n = y.shape
    out = torch.empty_like(y, dtype=out_dtype)
    if m_rows:
        block = _pow2(n)
        modes = _modes(rect, alpha, p, r)
        (bound, _, pedestal), pmodes = _param_args(beta, beta, (beta_bound, None))
        gam, bia, amodes = _affine_args(y, gamma, bias)
        _given_fwd[(m_rows,)](y, w, beta, gam, bia, out, n, float(alpha), float(p), float(r), bound, pedestal,
                              CENTER=center, BLOCK=block, num_warps=warps(block), BETA_VEC=pmodes["BETA_VEC"],
                              BETA_RAW=pmodes["BETA_RAW"], **modes, **amodes)  # fmt: skip
    return out


@_on_its_device
def given_backward(g, y, w, beta, beta_bound, gamma, bias, need: tuple, center: bool, rect: bool, alpha: float,
                   p: float, r: float):  # noqa: ANN001, ANN201  # fmt: skip
    """(the input's share of its gradient, ∂/∂W, ∂L/∂β, ∂L/∂γ, ∂L/∂b), None where `need` (β, γ, b) says no:
    ∂/∂β = −r Σ q (back to the raw parameter), ∂/∂γ = Σ g z, ∂/∂b = Σ g, in their sources' shape and type."""
    m_rows, n = y.shape
    gy, gw = torch.empty_like(y), torch.empty_like(w)
    programs = row_programs(m_rows, y.device)
    scalars, pmodes = _param_args(beta, beta, (beta_bound, None))
    pmodes = dict(pmodes, C_VEC=0, C_RAW=False)
    if m_rows:  # every program writes its partial
        part = torch.empty((programs, 3, n), device=y.device, dtype=torch.float32)
        block = _pow2(n)
        gam, _, amodes = _affine_args(y, gamma, None)
        _given_bwd[(programs,)](y, w, g, beta, gam, gy, gw, part, m_rows, n, float(alpha), float(p), float(r),
                                scalars[0], scalars[2], CENTER=center, BLOCK=block, num_warps=warps(block),
                                BETA_VEC=pmodes["BETA_VEC"], BETA_RAW=pmodes["BETA_RAW"],
                                HAS_GAMMA=amodes["HAS_GAMMA"], **_modes(rect, alpha, p, r))  # fmt: skip
        sums = part.sum(0)  # (3, N): Σ g z, Σ g, Σ q
    else:
        sums = torch.zeros((3, n), device=y.device, dtype=torch.float32)
    g_beta, _, g_gamma, g_bias = _finish(sums, beta, beta, scalars, pmodes, (need[0], False, need[1], need[2]),
                                         gamma, bias, r)  # fmt: skip
    return gy, gw, g_beta, g_gamma, g_bias


ELEMENTS = 1024  # elements per program of the element-wise kernels


@_on_its_device
def nonneg_forward(raw, bound: float, pedestal: float):  # noqa: ANN001, ANN201
    """max(raw, bound)² − pedestal of a contiguous raw parameter, computed in float32, in raw's type."""
    out = torch.empty_like(raw)
    if raw.numel():
        _nonneg_fwd[(_cdiv(raw.numel(), ELEMENTS),)](
            raw, out, raw.numel(), _bound_in(raw.dtype, bound), float(pedestal), BLOCK=ELEMENTS
        )
    return out


@_on_its_device
def nonneg_backward(g, raw, bound: float):  # noqa: ANN001, ANN201
    """The raw parameter's gradient from its value's (`dn_kernel._raw_grad`'s rule)."""
    g = g.contiguous()
    graw = torch.empty_like(raw)
    if raw.numel():
        _nonneg_bwd[(_cdiv(raw.numel(), ELEMENTS),)](
            g, raw, graw, raw.numel(), _bound_in(raw.dtype, bound), BLOCK=ELEMENTS
        )
    return graw
