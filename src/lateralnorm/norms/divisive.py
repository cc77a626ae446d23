"""General divisive normalization — one formula for LN, RMSNorm, GDN, LRN, Softmax and neural DN.

    z_i = γ_i · φ(y_i − m) / (β_i + Σ_j κ_ij ψ(y_j − m))^r + b_i,      m = mean_j y_j if centered else 0

Pool: the feature axis (N units). φ and ψ come from one family `fn` with exponents p (numerator) and α:

    fn=signed  φ(t) = sign(t)|t|^p    ψ(t) = |t|^α
    fn=rect    φ(t) = relu(t)^p       ψ(t) = relu(t)^α          (Heeger 1992; Carandini & Heeger 2012)
    fn=exp     φ(t) = e^{p t}         ψ(t) = e^{α t}            (Softmax when p = α = r = 1, κ ≡ 1, β = 0)

p defaults to α·r, which makes z scale-invariant when β → 0 (contrast invariance). κ's structure:
self (diagonal), uniform (κ_ij = c_i, O(N)), band:w (shared taps on |i − j| ≤ w, a 1-D convolution along
the channel axis; `size` gives LRN's asymmetric window), gaussian (κ_ij = a·exp(−(i−j)²/2σ²), learnable
width σ; Miller et al. 2022), lowrank:k (U Vᵀ, U, V ≥ 0), full (N×N ≥ 0; GDN, Ballé et al. 2016).
κ, β ≥ 0 through `NonNegative`; a learned α stays above `alpha_min`.

Presets (`dn:preset=ln` etc.) fill the options that reproduce each classic layer; explicit options win.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn

from lateralnorm.errors import UsageError
from lateralnorm.norms import cpu_kernel, layout
from lateralnorm.norms.base import COMMON, NonNegative, Norm, lower_bound
from lateralnorm.norms.dn_kernel import (
    PLANES_FROM,
    DnConfig,
    center_rows,
    divisive_rows,
    learned_alpha_rows,
    lowrank_rows,
    matrix_pooled_planes,
    matrix_pooled_rows,
    matrix_rows,
    power,
)
from lateralnorm.norms.exp_rows import POOLS, exp_matrix_rows, exp_rows, exp_rows_compiled
from lateralnorm.norms.kappa import STRUCTURES
from lateralnorm.norms.options import Opt

KAPPAS = tuple(STRUCTURES)  # the κ structures (norms/kappa.py)

PRESETS: dict[str, dict[str, Any]] = {
    # LayerNorm: centered, t / sqrt(ε + mean t²)
    "ln": dict(center=True, fn="signed", alpha=2.0, r=0.5, p=1.0, kappa="uniform", learn_kappa=False,
               beta=1e-5, learn_beta=False, affine=True),
    # RMSNorm: the same without centering
    "rms": dict(center=False, fn="signed", alpha=2.0, r=0.5, p=1.0, kappa="uniform", learn_kappa=False,
                beta=1e-6, learn_beta=False, affine=True, bias=False),
    # GDN (Ballé 2016): y_i / sqrt(β_i + Σ_j κ_ij y_j²), learned κ ≥ 0 and β ≥ 0; starts at β = 1, κ = 0.1·I
    "gdn": dict(center=False, fn="signed", alpha=2.0, r=0.5, p=1.0, kappa="full", kappa_eye=True,
                kappa_init=0.1, learn_kappa=True, beta=1.0, learn_beta=True, eps=1e-6, affine=False),
    # LocalResponseNorm with torch's defaults: y_c / (k + α/n Σ_{window} y²)^β, n = 5, α = 1e-4, β = 0.75, k = 1
    "lrn": dict(center=False, fn="signed", alpha=2.0, r=0.75, p=1.0, kappa="band", size=5, kappa_init=1e-4 / 5,
                learn_kappa=False, beta=1.0, learn_beta=False, affine=False),
    # Softmax: e^{y_i} / Σ_j e^{y_j}
    "softmax": dict(center=False, fn="exp", alpha=1.0, r=1.0, p=1.0, kappa="uniform", kappa_init=1.0,
                    learn_kappa=False, beta=0.0, learn_beta=False, affine=False),
}  # fmt: skip


def _abs_pow(t: torch.Tensor, e: torch.Tensor | float) -> torch.Tensor:
    """|t|^e through the one `power` function; e = 2 as t² (no |t| to save for the backward)."""
    if isinstance(e, float) and e == 2.0:
        return t.square()
    return power(t.abs(), e)


def _own_tensor(mod: nn.Module, name: str) -> torch.Tensor | None:
    """mod.<name> for a parameter or buffer, read from the module's tables when it is there (a dict lookup, where
    nn.Module's attribute lookup costs ~0.5 µs a call), else by attribute: a parametrized tensor
    (`torch.nn.utils.parametrize`, weight_norm) leaves the table and is computed on access."""
    params = mod._parameters
    if name in params:
        return params[name]
    buffers = mod._buffers
    if name in buffers:
        return buffers[name]
    return getattr(mod, name, None)


class DivisiveNorm(Norm):
    """General divisive normalization (see the module docstring for the equation and the options)."""

    name = "dn"
    summary = (
        "divisive norm: γ·φ(y_i−m)/(β_i + Σ_j κ_ij ψ(y_j−m))^r + b; κ self|uniform|band|gaussian|lowrank|full"
    )
    OPTIONS = {
        **COMMON,
        "eps": Opt(float, 1e-5, "floor of a learned β (keeps the denominator away from 0)", lo=0.0),
        "preset": Opt(str, None, "fill options to reproduce a classic layer", choices=tuple(PRESETS), nullable=True),
        "bias": Opt(bool, True, "with affine: also learn the bias b (RMSNorm has none)"),
        "center": Opt(bool, False, "subtract the pool mean first (as LayerNorm does)"),
        "fn": Opt(str, "rect", "φ/ψ family", choices=("signed", "rect", "exp")),
        "alpha": Opt(float, 2.0, "exponent α of ψ (the 'power' of divisive normalization)", lo=0.0, open_lo=True,
                     hi=16.0),
        "learn_alpha": Opt(bool, False, "learn α (kept above alpha_min)"),
        "alpha_min": Opt(float, 0.5, "floor of a learned α", lo=0.0, open_lo=True, hi=16.0),
        "p": Opt(float, None, "numerator exponent; default α·r (scale invariant)", lo=0.0, open_lo=True,
                 hi=16.0, nullable=True),
        "r": Opt(float, 1.0, "outer exponent of the denominator", lo=0.0, open_lo=True, hi=4.0),
        "kappa": Opt(str, "uniform", "κ structure: self, uniform, band:w, gaussian, lowrank:k, full",
                     choices=STRUCTURES),
        "kappa_init": Opt(float, None, "initial κ value (default: rows sum to 1)", lo=0.0, nullable=True),
        "kappa_eye": Opt(bool, False, "full κ starts as kappa_init·I (GDN) instead of kappa_init everywhere"),
        "learn_kappa": Opt(bool, True, "learn κ (non-negative)"),
        "size": Opt(int, None, "band window size (LRN's window: n//2 before, (n−1)//2 after)", lo=1,
                    nullable=True),
        "fused": Opt(bool, True, "compiled element work with hand-written backwards (every κ; else autograd)"),
        "sigma": Opt(float, 2.0, "initial width of the gaussian κ (in units)", lo=0.0, open_lo=True),
        "beta": Opt(float, 1.0, "additive constant β of the denominator (σ^α in neural DN)", lo=0.0),
        "learn_beta": Opt(bool, True, "learn β per unit (kept above eps)"),
        "halfsat": Opt(float, None, "half-saturation σ of neural DN: sets β = σ^α (instead of beta)", lo=0.0,
                       nullable=True),
    }  # fmt: skip

    def __init__(self, num_features: int, eps: float | None = None, affine: bool | None = None,
                 layout: str = "last", **options: Any) -> None:  # fmt: skip
        preset = options.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise UsageError(
                    f"norm 'dn': option 'preset'={preset!r} is not allowed; it must be one of {', '.join(PRESETS)}"
                )
            given = {**PRESETS[preset], **options}
            if eps is not None:
                given["eps"] = eps
                if preset in ("ln", "rms") and "beta" not in options:  # there, ε is the β of the formula
                    given["beta"] = eps
            if affine is not None:
                given["affine"] = affine
            eps, affine = given.pop("eps", None), given.pop("affine", None)
            options = given
        self._beta_given = "beta" in options
        super().__init__(num_features, eps, affine, layout, **options)

    def build(self) -> None:
        o, n = self.opts, self.num_features
        if o["halfsat"] is not None:
            if self._beta_given:
                raise UsageError(
                    "norm 'dn': give either beta (the additive term) or halfsat (σ, β = σ^α), not both"
                )
            o["beta"] = o["halfsat"] ** o["alpha"]
        self.center, self.fn, self.r = o["center"], o["fn"], o["r"]
        kind, _, arg = o["kappa"].partition(":")
        self.kappa_kind = kind
        self.structure = STRUCTURES[kind]
        self._init_alpha(o)
        self.structure.check_arg(arg)
        self.structure.init(self, arg, o, n)
        self._init_beta(o, n)
        self._init_affine()
        fused_form = o["fused"] and self.structure.fused and self.fn != "exp"
        self._fusable = fused_form and not o["learn_alpha"]
        self._fused_alpha = fused_form and o["learn_alpha"]  # the CPU kernel at α's current value
        self._row_constant = (
            self.kappa_kind == "uniform"
            and self._fixed_and_constant("kappa")
            and self._fixed_and_constant("beta")
        )
        self._p = o["p"] if o["p"] is not None else o["alpha"] * self.r
        self._decide_exp_routes()
        # a matrix κ (gaussian, low-rank, full): the element work in the CPU kernel around the pool's matmuls
        # (a learned α there: at its current value, `matrix_pooled_rows`)
        self._matrix = o["fused"] and not self.structure.fused and self.fn != "exp"
        if self._matrix:
            self._mcfg = DnConfig(
                "uniform", self.center, self.fn == "rect", float(o["alpha"]), self._p, self.r
            )
        if self._fusable or self._fused_alpha:  # the fused kernels' configuration (α, p: a learned α's start)
            before, after = getattr(self, "pad", (0, 0))
            (_, beta_bound), (_, kappa_bound) = self._source("beta"), self._source("kappa")
            if self._row_constant:  # LN/RMS presets: D is one number per row, from fixed buffers
                beta_bound = kappa_bound = None
            self._cfg = DnConfig(self.kappa_kind, self.center, self.fn == "rect", float(o["alpha"]), self._p,
                                 self.r, before, after, beta_bound, kappa_bound)  # fmt: skip
        if self.weight is not None and not o["bias"]:
            self.register_parameter("bias", None)

    # ------------------------------------------------------------------ the type a pass computes in
    # Every route (the compiled CPU kernel, the Triton kernels, the PyTorch formula) computes in the type that
    # the input and the layer's tensors promote to (torch's type promotion) and returns that type: a float32
    # input to a float64 layer gives float64, a bfloat16 input to a float32 layer gives float32 (as autocast
    # runs nn.LayerNorm in float32). The input is cast once, at `_forward` (every caller's way in, the recurrent
    # cells' direct calls included), so no route meets mixed types (they used to disagree: the CPU kernel cast
    # the layer to the input's type, the formula promoted, and some forms raised "expected m1 and m2 to have
    # the same dtype"). The layer's tensors are read from its own and its children's (NonNegative) tables at each
    # call, so a replaced or added tensor, a swapped .data, .to() or load_state_dict(assign=True) cannot leave a
    # stale type (~1–1.7 µs a call).
    def _in_common_type(self, x: torch.Tensor) -> torch.Tensor:
        want = x.dtype
        for mod in (self, *self._modules.values()):
            if mod is None:
                continue
            for table in (mod._parameters, mod._buffers):
                for t in table.values():
                    if t is not None and t.dtype != want and t.is_floating_point():
                        want = torch.promote_types(want, t.dtype)
        return x if want == x.dtype else x.to(want)

    # ------------------------------------------------------------------ parameters
    def _init_alpha(self, o: dict[str, Any]) -> None:
        self.alpha_min = o["alpha_min"]
        if o["learn_alpha"]:
            if o["alpha"] < self.alpha_min:
                raise UsageError(f"norm 'dn': alpha={o['alpha']} is below alpha_min={self.alpha_min}")
            self.alpha_raw = nn.Parameter(torch.tensor(float(o["alpha"]), **self.factory))
            self.alpha_const: float | None = None
        else:
            self.register_parameter("alpha_raw", None)
            self.alpha_const = float(o["alpha"])

    def nonneg(self, init: torch.Tensor, learn: bool, name: str) -> nn.Module | torch.Tensor:
        if learn:
            return NonNegative(init, minimum=0.0)
        self.register_buffer(name + "_fixed", init)
        return None  # type: ignore[return-value]

    def _init_beta(self, o: dict[str, Any], n: int) -> None:
        if o["learn_beta"]:
            floor = o["eps"]
            self.beta = NonNegative(torch.full((n,), max(o["beta"], floor), **self.factory), minimum=floor)
        else:
            self.beta = None
            self.register_buffer("beta_fixed", torch.full((n,), float(o["beta"]), **self.factory))

    def _source(self, name: str) -> tuple[torch.Tensor, float | None]:
        """(raw parameter, its bound) for a learned non-negative parameter, (buffer, None) for a fixed one."""
        mod = getattr(self, name, None)
        if isinstance(mod, NonNegative):
            return mod.raw, mod.bound()
        return getattr(self, name + "_fixed"), None

    def _raw_source(self, name: str) -> torch.Tensor:
        """`_source(name)`'s tensor, read from the module's own tables (on every call's path, where each
        nn.Module attribute lookup costs ~0.5 µs: 3.2 µs for β and κ by `_source`, 0.5 µs this way)."""
        mod = self._modules.get(name)
        if isinstance(mod, NonNegative):
            return _own_tensor(mod, "raw")
        return _own_tensor(self, name + "_fixed")

    def _softmax_form(self, o: dict[str, Any]) -> float | None:
        """c where this layer computes softmax(α·y)/c (the softmax preset, c = 1): ψ = e^{α t} with a fixed α,
        p = α, r = 1, a fixed uniform κ of one value c > 0 and a fixed β of 0 (then the row's shift, and so a
        centering, cancels). Such a layer takes torch's softmax (about 10x faster than the composite here, equal to
        it to rounding: tests) unless fused=false asks for the composite; else None. Read once, from the fixed
        buffers as built (as `_row_constant`)."""
        if not (
            o["fused"]
            and self.fn == "exp"
            and not o["learn_alpha"]
            and self.kappa_kind == "uniform"
            and self.r == 1.0
            and self._p == o["alpha"]
            and self._fixed_and_constant("kappa")
            and self._fixed_and_constant("beta")
        ):
            return None
        beta, kappa = self.beta_fixed, self.kappa_fixed
        if beta.device.type == "meta" or float(beta.flatten()[0]) != 0.0:
            return None
        c = float(kappa.flatten()[0])
        return c if c > 0.0 else None

    def _decide_exp_routes(self) -> None:
        """The softmax form (torch's softmax) or, for the other exp forms with a fixed α, the exp nodes
        (`exp_rows`) instead of the composite; from the fixed buffers as they are now."""
        o = self.opts
        self._softmax_scale = self._softmax_form(o)
        self._exp_nodes = (
            o["fused"] and self.fn == "exp" and not o["learn_alpha"] and self._softmax_scale is None
        )

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        """Loading new fixed buffers (β, κ) decides the exp routes again (`_softmax_form` reads the values)."""
        super()._load_from_state_dict(*args, **kwargs)
        self._decide_exp_routes()

    def _softmax(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """The softmax form's output (`_softmax_form`), over `dim`, with the layer's affine."""
        alpha = self.alpha_const
        z = torch.softmax(x if alpha == 1.0 else x * alpha, dim=dim)
        if self._softmax_scale != 1.0:
            z = z / self._softmax_scale
        if self.weight is None or dim == -1:
            return self._apply_affine(z)
        shape = (1, -1) + (1,) * (x.ndim - 2)  # channels first: γ and b over axis 1
        z = z * self.weight.view(shape)
        return z if self.bias is None else z + self.bias.view(shape)

    def _fixed_and_constant(self, name: str) -> bool:
        fixed = getattr(self, name + "_fixed", None)
        if fixed is not None and fixed.device.type == "meta":  # no values: fixed buffers are built constant
            return True
        return fixed is not None and bool((fixed == fixed.flatten()[0]).all())

    # ------------------------------------------------------------------ effective values
    def value(self, name: str) -> torch.Tensor:
        """The effective value of a non-negative parameter or fixed buffer (κ, β) by name."""
        mod = getattr(self, name, None)
        return mod() if isinstance(mod, NonNegative) else getattr(self, name + "_fixed")

    def alpha(self) -> torch.Tensor | float:
        if self.alpha_raw is None:
            return self.alpha_const  # type: ignore[return-value]
        return lower_bound(self.alpha_raw, self.alpha_min)

    def beta_value(self) -> torch.Tensor:
        return self.value("beta")

    def kappa_matrix(self) -> torch.Tensor:
        """The effective N×N κ (for inspection, tests and probes; the forward pass never builds it for O(N) κ)."""
        beta = self.beta_value()  # any parameter-side tensor gives the device and dtype
        eye = torch.eye(self.num_features, device=beta.device, dtype=beta.dtype)
        return self.structure.matrix(self, eye)

    def _matrix_on_kernel(self) -> bool:
        """Whether a matrix κ's element work takes the compiled kernel: always with a fixed α; with a learned α
        unless LATERALNORM_MATRIX_LEARNED_ALPHA=formula, whose composite formula must also take the generic
        channels-first route (movedim), as the runs stored before it did, for their bits."""
        if not self._matrix:
            return False
        return _own_tensor(self, "alpha_raw") is None or cpu_kernel.matrix_learned_alpha() == "kernel"

    def _planes_on_kernel(self, x: torch.Tensor) -> bool:
        """Whether a channels-first input's element work runs on its own planes (`matrix_pooled_planes`): a matrix κ
        with a pool over channels (full, gaussian), not centered, a fixed α, planes of `PLANES_FROM` positions or
        more, LATERALNORM_CHANNEL_POOL=planes."""
        return (
            self._matrix
            and math.prod(x.shape[2:]) >= PLANES_FROM
            and self.structure.channel_pooled
            and not self.center
            and _own_tensor(self, "alpha_raw") is None
            and cpu_kernel.channel_pool() == "planes"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._softmax_scale is not None and self.layout != self.native_layout and x.ndim > 2:
            self._check(x)  # the softmax form over the channels as they lie (no moved copies)
            return self._softmax(self._in_common_type(x), 1)
        if self.layout != self.native_layout and layout.applies_to(
            x
        ):  # channels_first on a features-last layer
            if self._planes_on_kernel(
                x
            ):  # a contiguous (B, C, ...) input's own planes to the compiled kernel
                self._check(x)
                x = self._in_common_type(x)
                pool = functools.partial(self.structure.channel_pool, self)
                weight, bias = _own_tensor(self, "weight"), _own_tensor(self, "bias")
                return matrix_pooled_planes(x, pool, self._source("beta"), weight, bias, self._mcfg)
            if self._fusable or self._fused_alpha or self._matrix_on_kernel():
                # a contiguous (B, C, ...) input to the compiled kernel: its rows by the kernel's tile transpose
                self._check(x)
                out = self._forward(layout.to_rows(x)).movedim(-1, 1)  # the same view as the generic route's
                if out.requires_grad:
                    out.register_hook(layout.rows_grad_hook)
                return out
        return super().forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (..., N)
        x = self._in_common_type(x)
        if self._softmax_scale is not None:
            return self._softmax(x, -1)
        if self._exp_nodes:
            weight, bias = _own_tensor(self, "weight"), _own_tensor(self, "bias")
            if self.kappa_kind in POOLS:  # an O(N) pool: the compiled kernel where it runs x
                before, after = getattr(self, "pad", (0, 0))
                numbers = (self.kappa_kind, self.center, self.alpha_const, self._p, self.r, before, after)
                (beta, beta_bound), (kappa, kappa_bound) = self._source("beta"), self._source("kappa")
                out = exp_rows_compiled(x, beta, beta_bound, kappa, kappa_bound, weight, bias, numbers)
                if out is not None:
                    return out
            matrix_pool = self._node_pool(x)  # ψ, the pool and the output in one C++ node where it runs
            if matrix_pool is not None:
                numbers = (self.center, self.alpha_const, self._p, self.r)
                out = exp_matrix_rows(x, *numbers, self._source("beta"), matrix_pool, weight, bias)
                if out is not None:
                    return out
            pool = functools.partial(self.structure.kernel_pool, self)
            return exp_rows(
                x, self.center, self.alpha_const, self._p, self.r, pool, self.beta_value(), weight, bias
            )
        if self._fusable or self._fused_alpha:
            beta, kappa = self._raw_source("beta"), self._raw_source("kappa")
            if self._row_constant:  # LN/RMS presets: D is one number per row
                beta, kappa = beta[:1], kappa[:1]
            weight, bias = _own_tensor(self, "weight"), _own_tensor(self, "bias")  # (see `_raw_source`)
            if self._fusable:
                return divisive_rows(x, beta, kappa, weight, bias, self._cfg)
            tied = self.opts["p"] is None  # p = α·r follows the learned α
            out = learned_alpha_rows(
                x, beta, kappa, weight, bias, _own_tensor(self, "alpha_raw"), self.alpha_min, self._cfg, tied
            )
            if out is not None:
                return out
        if self._matrix:
            weight, bias = _own_tensor(self, "weight"), _own_tensor(self, "bias")
            alpha_raw = _own_tensor(self, "alpha_raw")
            tied = self.opts["p"] is None  # p = α·r follows the learned α unless p is given
            beta, alpha_args = self._source("beta"), (alpha_raw, self.alpha_min, tied)
            node_pool = self._node_pool(x)  # ψ, the pool and the output in one C++ node where it runs
            if node_pool is not None:
                kind, *factors = node_pool
                node_rows = lowrank_rows if kind == "lowrank" else matrix_rows
                out = node_rows(x, beta, *factors, weight, bias, self._mcfg, *alpha_args)
                if out is not None:
                    return out
            pool = functools.partial(self.structure.kernel_pool, self)
            args = (x, pool, beta, weight, bias, self._mcfg)
            out = matrix_pooled_rows(*args) if alpha_raw is None else matrix_pooled_rows(*args, *alpha_args)
            if out is not None:
                return out
        return self._formula(x)

    def _node_pool(self, x: torch.Tensor) -> tuple | None:
        """A matrix κ's pool as its one-node layer takes it: ("lowrank", U's source, V's source) — the kernel's own
        products —, ("linear", κ's value as a callable) — torch's linear map by κ: full, gaussian —, or None."""
        if self.kappa_kind == "lowrank":
            return "lowrank", self._source("kappa_u"), self._source("kappa_v")
        if self.kappa_kind in ("full", "gaussian"):
            return "linear", functools.partial(self.structure.linear_matrix, self, x)
        return None

    def _formula(self, x: torch.Tensor) -> torch.Tensor:
        """The plain composite formula through autograd: the reference for the fused kernel."""
        t = center_rows(x) if self.center else x
        alpha = self.alpha()
        p = self.opts["p"]
        if p is None:
            p = alpha * self.r
        same = (p is alpha) or (isinstance(p, float) and isinstance(alpha, float) and p == alpha)
        beta = self.beta_value().to(x.dtype)
        if self.fn == "exp":
            s = t.detach().amax(-1, keepdim=True)  # shift: z is unchanged, e^{...} stays finite
            psi = torch.exp(alpha * (t - s))
            num = psi if same else torch.exp(p * (t - s))
            log_beta = torch.log(beta) if beta.requires_grad else torch.log(beta.clamp_min(0))
            beta = torch.exp((log_beta - alpha * s).clamp_max(80.0))
        else:
            t_pos = torch.relu(t) if self.fn == "rect" else t
            psi = _abs_pow(t_pos, alpha)
            if same:
                num = psi if self.fn == "rect" else psi * torch.sign(t)
            elif isinstance(p, float) and p == 1.0:
                num = t_pos
            else:
                num = _abs_pow(t_pos, p) * (torch.sign(t) if self.fn == "signed" else 1)
        den = beta + self.structure.pool(self, psi)
        if isinstance(self.r, float) and self.r == 0.5:
            z = num * torch.rsqrt(den)
        elif self.r == 1.0:
            z = num / den
        else:
            z = num * den.pow(-self.r)
        if self.fn == "exp" and not (
            isinstance(p, float) and isinstance(alpha, float) and p == alpha * self.r
        ):
            z = z * torch.exp((p - alpha * self.r) * s)
        return self._apply_affine(z)


class GDN(DivisiveNorm):
    """GDN (Ballé, Laparra & Simoncelli 2016): z_i = y_i / sqrt(β_i + Σ_j κ_ij y_j²) over the channel axis,
    learned C×C κ ≥ 0 and β ≥ 0; starts at β = 1, κ = 0.1·I, i.e. z = y / sqrt(1 + 0.1·y²)."""

    name = "gdn"
    OPTIONS = {k: v for k, v in DivisiveNorm.OPTIONS.items() if k != "preset"}
    OPTIONS["eps"] = Opt(float, 1e-6, "floor of β", lo=0.0)
    OPTIONS["affine"] = Opt(bool, False, "learned per-unit gain γ and bias b")

    def __init__(self, num_features: int, eps: float | None = None, affine: bool | None = None,
                 layout: str = "last", **options: Any) -> None:  # fmt: skip
        base = {k: v for k, v in PRESETS["gdn"].items() if k not in ("eps", "affine")}
        super().__init__(num_features, eps, affine, layout, **{**base, **options})

    summary = "GDN (Ballé 2016): y_i / sqrt(β_i + Σ_j κ_ij y_j²), learned C×C κ ≥ 0, β ≥ 0"
