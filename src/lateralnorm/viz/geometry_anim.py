"""Animations of LayerNorm's geometry: each primitive morphs its input into its output (GIF + key-frame PNG).

Every picture is built on the decomposition in `lateralnorm.geometry`:

    LN(x) = √N · u_{Nε}(P x) ⊙ γ + β,     u_ε(v) = v / √(‖v‖² + ε),     P = I − 11ᵀ/N

Scenes (each a function of an animation time t ∈ [0, 1]):
- stretch   LN([s·x, 0])₀ = s·x / √(s²x² + 4ε): a sigmoid of x that sharpens toward a step as s grows.
- shift     LN([s·x + c, 0])₀: a bias c moves the switch point to x = −c/s.
- fold      N = 3, v(x) = x·w + d·e with e ⊥ 1 and e ⊥ w: the unit along e becomes a bump, high for normal x
            and low for extreme x (the "extreme versus normal temperature" feature one threshold can't make).
- project2  N = 2: points (a, b) are projected onto the line a + b = 0, then normalized; the output is a
            sigmoid of the difference a − b.
- project3  N = 3: a 3-D cloud is projected onto the plane x + y + z = 0, then scaled onto its circle of
            radius √3.
- affine    N = 3: γ stretches the circle into an ellipse and β moves it off the plane.
- stack     a 2-D data set (two moons) with a grid and the decision boundary, pushed layer by layer through
            small trained stacks (Linear→norm)×k for several norms (PCA views of the hidden layers).

Frames are deterministic (fixed seeds, no timestamps): the same call writes the same bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lateralnorm.atomic import atomic_path
from lateralnorm.errors import UsageError, did_you_mean
from lateralnorm.geometry import ln_decompose

# colours shared by every scene
C_OUT, C_IN, C_REF = "#2a6fdb", "#9aa5b8", "#e4572e"
UNIT_COLORS = ("#2a6fdb", "#e4572e", "#2e9d5b")
CLASS_COLORS = ("#2a6fdb", "#e4572e")


@dataclass(frozen=True)
class Scene:
    """One animation: `draw(fig, t)` fills an empty (sub)figure for time t ∈ [0, 1]."""

    name: str
    title: str
    caption: str
    draw: Callable[..., None]
    figsize: tuple[float, float] = (6.4, 4.2)
    key_times: tuple[float, ...] = (0.0, 0.5, 1.0)
    key_layout: str = "row"  # key frames side by side ("row") or stacked ("column")
    extra: dict = field(default_factory=dict)


def _ln(x: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm without affine over the last axis, through the decomposition (float64)."""
    return ln_decompose(torch.as_tensor(x, dtype=torch.float64), eps=eps)["output"].numpy()


def _ease(t: float) -> float:
    """Smooth start and stop: 3t² − 2t³."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#e7ebf1", linewidth=0.8)
    ax.set_axisbelow(True)


# --------------------------------------------------------------------------------------- 1-D primitives
X1 = np.linspace(-3.0, 3.0, 401)
XDOTS = np.linspace(-2.7, 2.7, 19)


def _stretch_scale(t: float) -> float:
    return 0.5 * (24.0**t)  # 0.5 → 12, geometric


def _draw_stretch(fig, t: float, eps: float = 1.0) -> None:
    s = _stretch_scale(t)
    ax = fig.subplots()

    def z(x: np.ndarray, scale: float) -> np.ndarray:
        return _ln(np.stack([scale * x, np.zeros_like(x)], -1), eps)[..., 0]

    ax.plot(X1, np.sign(X1), ":", color=C_IN, lw=1.2, label="step sign(x): the limit s → ∞")
    ax.plot(X1, z(X1, _stretch_scale(0.0)), "--", color=C_IN, lw=1.2, label="start, s = 0.5")
    ax.plot(X1, z(X1, s), color=C_OUT, lw=2.2, label=f"LN([s·x, 0])₀, s = {s:.1f}")
    ax.scatter(XDOTS, z(XDOTS, s), s=16, color=C_REF, zorder=3, label="sample inputs")
    ax.set_ylim(-1.15, 1.15)
    ax.legend(loc="lower right", fontsize=8)
    _style(ax, f"stretch: scale s = {s:.1f}", "input x", "output unit 0")


def _draw_shift(fig, t: float, eps: float = 1.0) -> None:
    s, c = 2.0, -3.0 + 6.0 * _ease(t)
    ax = fig.subplots()
    z = _ln(np.stack([s * X1 + c, np.zeros_like(X1)], -1), eps)[:, 0]
    z0 = _ln(np.stack([s * X1, np.zeros_like(X1)], -1), eps)[:, 0]
    ax.plot(X1, z0, "--", color=C_IN, lw=1.2, label="no bias, c = 0")
    ax.plot(X1, z, color=C_OUT, lw=2.2, label=f"LN([s·x + c, 0])₀, s = 2, c = {c:+.1f}")
    ax.axvline(-c / s, color=C_REF, lw=1.2, ls="-.", label=f"switch point x = −c/s = {-c / s:+.2f}")
    ax.set_ylim(-1.15, 1.15)
    ax.legend(loc="lower right", fontsize=8)
    _style(ax, f"shift: bias c = {c:+.1f}", "input x", "output unit 0")


FOLD_W = np.array([1.0, -1.0, 0.0])  # already ⊥ 1
FOLD_E = np.array([-1.0, -1.0, 2.0]) / math.sqrt(6.0)  # ⊥ 1 and ⊥ w: the "orthogonal offset"


def _draw_fold(fig, t: float, eps: float = 0.01) -> None:
    d = 2.0 * _ease(t)
    x = X1[:, None]
    z = _ln(x * FOLD_W + d * FOLD_E, eps)  # (401, 3)
    ax = fig.subplots()
    names = ("unit 0 (rises with x)", "unit 1 (falls with x)", "unit 2 (the fold: a bump)")
    for i in range(3):
        ax.plot(X1, z[:, i], color=UNIT_COLORS[i], lw=2.4 if i == 2 else 1.4, label=names[i])
    if d > 0.05:
        half = z[:, 2].max() / 2
        normal = z[:, 2] > half
        lo, hi = X1[normal].min(), X1[normal].max()
        ax.axvspan(lo, hi, color="#2e9d5b", alpha=0.08)
        ax.axhline(half, color="#2e9d5b", lw=0.8, ls=":")
        ax.text((lo + hi) / 2, -1.55, "normal", ha="center", fontsize=9, color="#2e9d5b")
        ax.text(-2.4, -1.55, "extreme", ha="center", fontsize=9, color=C_IN)
        ax.text(2.4, -1.55, "extreme", ha="center", fontsize=9, color=C_IN)
    ax.set_ylim(-1.75, 1.9)
    ax.legend(loc="upper left", fontsize=8, ncol=1)
    _style(ax, f"fold: orthogonal offset d = {d:.2f}  (v = x·w + d·e, e ⊥ 1, e ⊥ w)",
           "input x (e.g. temperature minus its typical value)", "LayerNorm output")  # fmt: skip


# --------------------------------------------------------------------------------------- project (N = 2)
def _grid_points(lo: float, hi: float, n: int) -> np.ndarray:
    g = np.linspace(lo, hi, n)
    a, b = np.meshgrid(g, g)
    return np.stack([a.ravel(), b.ravel()], -1)  # (n², 2)


P2 = _grid_points(-2.0, 2.0, 13)


def _draw_project2(fig, t: float, eps: float = 0.25) -> None:
    stages = ln_decompose(torch.as_tensor(P2), eps=eps)
    proj, out = stages["projected"].numpy(), stages["output"].numpy()
    # t in [0, .5]: project onto the line a + b = 0; t in [.5, 1]: normalize along it
    if t <= 0.5:
        pts, stage = P2 + _ease(2 * t) * (proj - P2), "1. project onto the line a + b = 0 (subtract the mean)"
    else:
        pts, stage = proj + _ease(2 * t - 1) * (out - proj), "2. normalize: squash along the line (u_ε)"
    diff = P2[:, 0] - P2[:, 1]
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    ax.plot([-2.6, 2.6], [2.6, -2.6], color=C_IN, lw=1, ls="--")
    ax.text(-2.45, 2.1, "a + b = 0", color=C_IN, fontsize=8)
    ax.scatter(pts[:, 0], pts[:, 1], c=diff, cmap="coolwarm", s=14, vmin=-4, vmax=4)
    ax.set_xlim(-2.6, 2.6)
    ax.set_ylim(-2.6, 2.6)
    ax.set_aspect("equal")
    _style(ax, stage, "unit a", "unit b")
    d = np.linspace(-4, 4, 300)
    bx.plot(d, d / np.sqrt(d * d + 4 * eps), color=C_OUT, lw=2, label="(a−b)/√((a−b)² + 4ε)")
    shown = pts[:, 0] if t > 0.5 else np.full_like(diff, np.nan)
    bx.scatter(diff, shown, c=diff, cmap="coolwarm", s=14, vmin=-4, vmax=4, label="the points' output a")
    bx.set_ylim(-1.2, 1.2)
    bx.legend(loc="lower right", fontsize=8)
    _style(bx, "output unit a is a sigmoid of the difference", "difference a − b", "output unit a")


# --------------------------------------------------------------------------------------- project (N = 3)
def _cloud3(n: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * np.array([1.0, 0.8, 0.6]) + np.array([0.8, 0.4, -0.3])


def _plane_basis() -> np.ndarray:
    """Two orthonormal vectors spanning x + y + z = 0, (2, 3)."""
    return np.array([[1.0, -1.0, 0.0] / np.sqrt(2.0), [1.0, 1.0, -2.0] / np.sqrt(6.0)])


def _circle3(radius: float, gamma=None, beta=None) -> np.ndarray:
    th = np.linspace(0, 2 * np.pi, 200)
    c = radius * (np.cos(th)[:, None] * _plane_basis()[0] + np.sin(th)[:, None] * _plane_basis()[1])
    if gamma is not None:
        c = c * gamma
    if beta is not None:
        c = c + beta
    return c


def _axes3d(fig, t: float, title: str):
    ax = fig.add_subplot(projection="3d")
    ax.view_init(elev=28, azim=-5 + 45 * t)  # ends nearly face-on to the plane ⊥ (1, 1, 1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("unit 0")
    ax.set_ylabel("unit 1")
    ax.set_zlabel("unit 2")
    lim = 2.6
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_zlim(-lim, lim)
    ax.set_box_aspect((1, 1, 1))
    # the plane x + y + z = 0, as a translucent patch
    b = _plane_basis()
    u, v = np.meshgrid(np.linspace(-2.4, 2.4, 2), np.linspace(-2.4, 2.4, 2))
    plane = u[..., None] * b[0] + v[..., None] * b[1]
    ax.plot_surface(plane[..., 0], plane[..., 1], plane[..., 2], color="#c9d8f2", alpha=0.25, linewidth=0)
    return ax


def _draw_project3(fig, t: float, eps: float = 1e-5) -> None:
    x = _cloud3()
    stages = ln_decompose(torch.as_tensor(x), eps=eps)
    proj, out = stages["projected"].numpy(), stages["output"].numpy()
    if t <= 0.5:
        pts, stage = x + _ease(2 * t) * (proj - x), "1. project onto the plane x + y + z = 0"
    else:
        pts, stage = proj + _ease(2 * t - 1) * (out - proj), "2. scale onto the circle of radius √3"
    angle = np.arctan2(proj @ _plane_basis()[1], proj @ _plane_basis()[0])
    ax = _axes3d(fig, t, stage)
    circ = _circle3(math.sqrt(3.0))
    ax.plot(circ[:, 0], circ[:, 1], circ[:, 2], color=C_REF, lw=1.6, label="circle of radius √3 in the plane")
    ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=angle, cmap="twilight", s=10, depthshade=False)
    ax.legend(loc="upper left", fontsize=8)


# --------------------------------------------------------------------------------------- affine γ, β
GAMMA = np.array([1.8, 0.6, 1.0])
BETA = np.array([0.6, -0.5, 0.9])


def _draw_affine(fig, t: float) -> None:
    s = _ease(t)
    g = 1.0 + s * (GAMMA - 1.0)
    b = s * BETA
    th = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    pts = math.sqrt(3.0) * (np.cos(th)[:, None] * _plane_basis()[0] + np.sin(th)[:, None] * _plane_basis()[1])
    ax = _axes3d(
        fig, t, f"affine: γ = ({g[0]:.2f}, {g[1]:.2f}, {g[2]:.2f}),  β = ({b[0]:.2f}, {b[1]:.2f}, {b[2]:.2f})"
    )
    c0, c1 = _circle3(math.sqrt(3.0)), _circle3(math.sqrt(3.0), g, b)
    ax.plot(c0[:, 0], c0[:, 1], c0[:, 2], "--", color=C_IN, lw=1.2, label="LN output: circle of radius √3")
    ax.plot(c1[:, 0], c1[:, 1], c1[:, 2], color=C_OUT, lw=2, label="γ ⊙ z + β: an ellipse, moved by β")
    q = pts * g + b
    ax.scatter(q[:, 0], q[:, 1], q[:, 2], c=th, cmap="twilight", s=14, depthshade=False)
    ax.quiver(0, 0, 0, *b, color=C_REF, lw=1.5, arrow_length_ratio=0.15)
    ax.legend(loc="upper left", fontsize=8)


# --------------------------------------------------------------------------------------- trained stacks
def two_moons(n: int = 400, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles, standardized: x (n, 2) float64, y (n,) in {0, 1}."""
    rng = np.random.default_rng(seed)
    n0 = n // 2
    a = rng.uniform(0, np.pi, n0)
    b = rng.uniform(0, np.pi, n - n0)
    x = np.concatenate([np.stack([np.cos(a), np.sin(a)], -1), np.stack([1 - np.cos(b), 0.5 - np.sin(b)], -1)])
    x = x + rng.normal(scale=noise, size=x.shape)
    x = (x - x.mean(0)) / x.std(0)
    return x, np.concatenate([np.zeros(n0, dtype=np.int64), np.ones(n - n0, dtype=np.int64)])


class NormStack(torch.nn.Module):
    """(Linear → norm) × depth, then a Linear head to 2 classes. `forward` returns (logits, hidden list)."""

    def __init__(self, norm: str, width: int = 8, depth: int = 3) -> None:
        from lateralnorm import create_norm

        super().__init__()
        dims = [2] + [width] * depth
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = torch.nn.ModuleList(create_norm(norm, width) for _ in range(depth))
        self.head = torch.nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = []
        for lin, norm in zip(self.linears, self.norms):
            x = norm(lin(x))  # (B, width)
            hidden.append(x)
        return self.head(x), hidden


def train_stack(norm: str, x: np.ndarray, y: np.ndarray, steps: int = 400, width: int = 8, depth: int = 3,
                seed: int = 0, lr: float = 0.02) -> tuple[NormStack, float]:  # fmt: skip
    """Full-batch Adam on (x, y); returns (model, training accuracy)."""
    torch.manual_seed(seed)
    model = NormStack(norm, width, depth).double()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt)[0], yt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(xt)[0].argmax(1) == yt).double().mean())
    return model, acc


def _grid_lines(lo: float, hi: float, lines: int = 9, points: int = 60) -> list[np.ndarray]:
    ticks, s = np.linspace(lo, hi, lines), np.linspace(lo, hi, points)
    return [np.stack([np.full_like(s, v), s], -1) for v in ticks] + [
        np.stack([s, np.full_like(s, v)], -1) for v in ticks
    ]


def _boundary(model: NormStack, lo: float, hi: float, res: int = 200) -> tuple[list[np.ndarray], np.ndarray]:
    """The decision boundary p(class 1) = 0.5 in input space as polylines, and p on a res × res grid."""
    import contourpy

    g = np.linspace(lo, hi, res)
    gx, gy = np.meshgrid(g, g)
    with torch.no_grad():
        logits = model(torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], -1)))[0]
    p = torch.softmax(logits, 1)[:, 1].numpy().reshape(res, res)
    lines = contourpy.contour_generator(gx, gy, p).lines(0.5)
    return [_onto_boundary(model, np.asarray(line)) for line in lines if len(line) > 1], p


def _onto_boundary(model: NormStack, pts: np.ndarray, iters: int = 4) -> np.ndarray:
    """Newton steps x ← x − f(x)·∇f/‖∇f‖² on f = logit₁ − logit₀, so the contour's points lie on the boundary
    itself (grid interpolation errors would otherwise be magnified into zigzags by the hidden layers)."""
    x = torch.as_tensor(pts).clone()
    for _ in range(iters):
        x.requires_grad_(True)
        logits = model(x)[0]
        f = logits[:, 1] - logits[:, 0]
        (g,) = torch.autograd.grad(f.sum(), x)
        with torch.no_grad():
            step = (f / g.square().sum(1).clamp_min(1e-12))[:, None] * g
            x = x - step.clamp(-0.05, 0.05)
    return x.detach().numpy()


def _pca_views(layers: list[np.ndarray], n_data: int) -> tuple[list[np.ndarray], list[float]]:
    """2-D views: the input (M, 2) as it is, then each hidden layer (M, width) by PCA fitted on the data rows,
    scaled to the input's RMS radius and rotated/reflected to best match the previous view (orthogonal
    Procrustes) so the animation doesn't spin. Returns (views, share of variance the 2 PCs keep)."""
    views, explained, prev = [layers[0]], [1.0], layers[0]
    radius = np.sqrt((layers[0][:n_data] ** 2).sum(1).mean())
    for h in layers[1:]:
        mu = h[:n_data].mean(0)
        u, s, vt = np.linalg.svd(h[:n_data] - mu, full_matrices=False)
        v = (h - mu) @ vt[:2].T  # (M, 2)
        explained.append(float((s[:2] ** 2).sum() / max((s**2).sum(), 1e-300)))
        v = v * radius / max(np.sqrt((v[:n_data] ** 2).sum(1).mean()), 1e-12)
        a, _, bt = np.linalg.svd(v[:n_data].T @ prev[:n_data])
        v = v @ (a @ bt)
        views.append(v)
        prev = v
    return views, explained


def _stack_scene(norms: Sequence[str], steps: int, depth: int = 3, width: int = 8) -> Scene:
    x, y = two_moons()
    lo, hi = -2.4, 2.4
    grid = _grid_lines(lo, hi)
    panels = []
    for norm in norms:
        model, acc = train_stack(norm, x, y, steps=steps, width=width, depth=depth)
        bounds, prob = _boundary(model, lo, hi)
        pieces = [x] + grid + bounds
        sizes = [len(p) for p in pieces]
        with torch.no_grad():
            hidden = model(torch.as_tensor(np.concatenate(pieces)))[1]
        views, explained = _pca_views([np.concatenate(pieces)] + [h.numpy() for h in hidden], len(x))
        panels.append(dict(norm=norm, acc=acc, views=views, explained=explained, sizes=sizes, prob=prob,
                           n_grid=len(grid), n_bounds=len(bounds)))  # fmt: skip

    def draw(fig, t: float) -> None:
        pos = t * depth  # 0 = input, k = after layer k
        k0 = min(int(math.floor(pos)), depth - 1)
        frac = _ease(pos - k0)
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        for ax, pan in zip(axes, panels):
            v = pan["views"][k0] + frac * (pan["views"][k0 + 1] - pan["views"][k0])
            parts = np.split(v, np.cumsum(pan["sizes"])[:-1])
            data, grid_parts = parts[0], parts[1 : 1 + pan["n_grid"]]
            bound_parts = parts[1 + pan["n_grid"] :]
            if pos == 0:
                ext = (lo, hi, lo, hi)
                ax.imshow(
                    pan["prob"], origin="lower", extent=ext, cmap="coolwarm", vmin=0, vmax=1, alpha=0.25
                )
            for line in grid_parts:
                ax.plot(line[:, 0], line[:, 1], color="#b9c2d0", lw=0.6)
            for line in bound_parts:
                ax.plot(line[:, 0], line[:, 1], color="black", lw=1.3)
            for c in (0, 1):
                sel = y == c
                ax.scatter(data[sel, 0], data[sel, 1], s=7, color=CLASS_COLORS[c], label=f"class {c}")
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xticks([])
            ax.set_yticks([])
            where = "input" if pos == 0 else f"layer {pos:.1f} of {depth}" if frac not in (0, 1) else ""
            if not where:
                layer = k0 + (1 if frac == 1 else 0)
                where = f"after layer {layer} (PCA, {100 * pan['explained'][layer]:.0f}% var)"
            ax.set_title(f"{pan['norm']}  (train acc {100 * pan['acc']:.0f}%)\n{where}", fontsize=9)
        axes[0].legend(loc="lower left", fontsize=7, handlelength=1)

    return Scene(
        name="stack",
        title=f"two moons through trained (Linear→norm)×{depth}, width {width}",
        caption="grey: the input grid; black: the decision boundary; both pushed through the layers\n"
        f"hidden layers are seen by PCA (2 of {width} dimensions; the titles give the share of variance kept)",
        draw=draw,
        figsize=(3.0 * len(panels), 3.5),
        key_times=tuple(k / depth for k in range(depth + 1)),
        key_layout="column",
    )


# --------------------------------------------------------------------------------------- registry + output
def _primitive_scenes() -> dict[str, Scene]:
    return {
        "stretch": Scene("stretch", "stretch", "scaling the input sharpens LayerNorm's sigmoid toward a step (ε = 1)",
                         _draw_stretch),
        "shift": Scene("shift", "shift", "a bias moves the point where the sigmoid switches (ε = 1)", _draw_shift),
        "fold": Scene("fold", "fold", "an offset orthogonal to the input direction turns one unit into a bump "
                      "(ε = 0.01)", _draw_fold, figsize=(7.0, 4.4)),
        "project2": Scene("project2", "project (N = 2)", "LN([a, b]) depends only on a − b (ε = 0.25)",
                          _draw_project2, figsize=(9.5, 4.2), key_times=(0.0, 0.5, 1.0), key_layout="column"),
        "project3": Scene("project3", "project (N = 3)", "every point lands on the circle of radius √3 in the "
                          "plane x + y + z = 0", _draw_project3, figsize=(5.2, 5.2)),
        "affine": Scene("affine", "affine γ, β", "the gain γ makes an ellipse, the bias β moves it",
                        _draw_affine, figsize=(5.2, 5.2)),
    }  # fmt: skip


SCENE_NAMES = ("stretch", "shift", "fold", "project2", "project3", "affine", "stack")


def save_scene(scene: Scene, out_dir: str | os.PathLike[str], frames: int = 24, gif: bool = True,
               dpi: int = 90) -> list[Path]:  # fmt: skip
    """Write <name>_keyframes.png (and <name>.gif) for a scene; each file lands atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import PillowWriter

    out = Path(out_dir)
    written: list[Path] = []
    plt.rcParams.update({"font.size": 9, "axes.titleweight": "bold", "svg.hashsalt": "lateralnorm"})
    # key frames
    k = len(scene.key_times)
    w, h = scene.figsize
    size = (w * k, h + 0.7) if scene.key_layout == "row" else (w, h * k + 0.7)
    fig = plt.figure(figsize=size, layout="constrained")
    subs = fig.subfigures(1, k) if scene.key_layout == "row" else fig.subfigures(k, 1)
    for sub, t in zip(np.atleast_1d(subs), scene.key_times):
        scene.draw(sub, t)
    fig.suptitle(f"{scene.title}\n{scene.caption}", fontsize=12, fontweight="bold")
    png = out / f"{scene.name}_keyframes.png"
    try:
        with atomic_path(png) as tmp:
            fig.savefig(tmp, dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    written.append(png)
    if gif:
        fig = plt.figure(figsize=(w, h + 0.5), layout="constrained")
        target = out / f"{scene.name}.gif"
        writer = PillowWriter(fps=8)
        hold = max(2, frames // 6)  # pause on the last frame before the loop restarts
        times = [i / (frames - 1) for i in range(frames)] + [1.0] * hold
        try:
            with atomic_path(target) as tmp, writer.saving(fig, str(tmp), dpi):
                for t in times:
                    fig.clear()
                    scene.draw(fig, t)
                    fig.suptitle(f"{scene.title}\n{scene.caption}", fontsize=9, fontweight="bold")
                    writer.grab_frame()
        finally:
            plt.close(fig)
        written.append(target)
    return written


def render_scenes(names: Sequence[str], out_dir: str | os.PathLike[str], frames: int = 24, gif: bool = True,
                  steps: int = 400, norms: Sequence[str] = ("ln", "relu>ln", "gelu>ln", "dn"),
                  dpi: int = 90) -> list[Path]:  # fmt: skip
    """Render the named scenes ("all" for every one) into out_dir; returns the files written."""
    wanted: list[str] = []
    for name in names:
        if name == "all":
            wanted += [n for n in SCENE_NAMES if n not in wanted]
        elif name in SCENE_NAMES:
            wanted += [name] if name not in wanted else []
        else:
            raise UsageError(
                f"unknown scene '{name}'{did_you_mean(name, (*SCENE_NAMES, 'all'))} "
                f"(choose from {', '.join(SCENE_NAMES)}, or all)"
            )
    if frames < 2:
        raise UsageError(f"frames={frames} is too few; use at least 2")
    if "stack" in wanted and not norms:
        raise UsageError("the stack scene needs at least one norm, e.g. --norms ln,relu>ln")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output '{out}' is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    scenes = _primitive_scenes()
    written: list[Path] = []
    for name in wanted:
        scene = _stack_scene(norms, steps) if name == "stack" else scenes[name]
        written += save_scene(scene, out, frames=frames, gif=gif, dpi=dpi)
    return written


__all__ = ["Scene", "NormStack", "render_scenes", "save_scene", "train_stack", "two_moons", "SCENE_NAMES"]
