"""Geometry: LN decomposition identity, the output ellipsoid of a known γ, fold counting along lines and
linear-region counting on a grid, all against known answers."""

import math

import pytest
import torch
from torch import nn

from lateralnorm.geometry import (
    count_regions_2d,
    decision_changes,
    direction_changes,
    ellipsoid_axes,
    grid_2d,
    line_points,
    ln_decompose,
)
from lateralnorm.norms import create_norm
from lateralnorm.probes.folds import folds_bare, folds_model, linear_regions_2d


def test_ln_decomposition_identity():
    torch.manual_seed(0)
    x = torch.randn(50, 7, dtype=torch.float64) * 3 + 1
    g, b = torch.rand(7, dtype=torch.float64) + 0.5, torch.randn(7, dtype=torch.float64)
    parts = ln_decompose(x, g, b, eps=1e-3)
    torch.testing.assert_close(parts["output"], nn.functional.layer_norm(x, (7,), g, b, 1e-3))
    torch.testing.assert_close(parts["projected"].sum(-1), torch.zeros(50, dtype=torch.float64))


def test_ellipsoid_of_constant_gamma_is_a_sphere():
    axes, semi = ellipsoid_axes(torch.full((6,), -2.0))
    torch.testing.assert_close(semi, torch.full((5,), 2.0 * math.sqrt(6), dtype=torch.float64))
    torch.testing.assert_close(axes @ axes.T, torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(axes.sum(1), torch.zeros(5, dtype=torch.float64))  # in the plane ⊥ 1


def test_ellipsoid_axes_of_known_gamma_bound_the_sampled_outputs():
    gamma = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    axes, semi = ellipsoid_axes(gamma)
    assert (semi[:-1] >= semi[1:]).all()
    torch.testing.assert_close(axes @ (1 / gamma), torch.zeros(3, dtype=torch.float64))  # plane ⊥ γ⁻¹
    torch.manual_seed(0)
    z = nn.functional.layer_norm(torch.randn(100_000, 4, dtype=torch.float64), (4,), gamma, None, eps=0.0)
    # every output satisfies Σ (z·a_k / s_k)² = 1, and the extremes of ‖z‖ are the longest/shortest axes
    torch.testing.assert_close(
        ((z @ axes.T) / semi).square().sum(1), torch.ones(100_000, dtype=torch.float64)
    )
    assert z.norm(dim=1).max() == pytest.approx(float(semi[0]), rel=1e-3)
    assert z.norm(dim=1).min() == pytest.approx(float(semi[-1]), rel=1e-3)


def test_direction_changes_of_known_functions():
    s = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    u = torch.linspace(0, 1, 2001, dtype=torch.float64)
    triangle = (2 * (4 * u - torch.floor(4 * u + 0.5))).abs()  # 4 teeth
    cols = torch.stack(
        [s.abs(), torch.relu(s), torch.zeros_like(s), s**3, (s - 0.3).abs() * (s + 0.2).abs()], 1
    )
    assert direction_changes(cols).tolist() == [1, 0, 0, 0, 3]
    for k in (1, 3, 5):
        assert int(direction_changes(torch.sin(2 * math.pi * k * u))) == 2 * k
    assert int(direction_changes(triangle)) == int(direction_changes(torch.cos(8 * math.pi * u)))
    assert int(direction_changes(triangle)) == 7  # peaks at 1/8, 3/8, 5/8, 7/8; troughs at 1/4, 1/2, 3/4


def test_line_points_and_decision_changes():
    a, b = torch.zeros(3), torch.ones(3)
    p = line_points(a, b, 5, (-1.0, 1.0))
    torch.testing.assert_close(p[:, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
    assert decision_changes(logits) == 2


def test_layernorm_folds_each_unit_at_most_once_per_line():
    r = folds_bare(create_norm("ln", 10), 10, lines=12, reach=50.0)
    assert r["max"] <= 1 and r["folds_per_unit"] > 0.8
    relu_ln = folds_bare(create_norm("relu>ln", 10), 10, lines=12, reach=50.0)
    assert relu_ln["folds_per_unit"] > r["folds_per_unit"]


def test_region_count_of_known_arrangements():
    res = 101
    pts = grid_2d((-1.0, -1.0), (1.0, 1.0), res)
    quadrants = torch.stack([pts[:, 0] > 0.013, pts[:, 1] > 0.013], 1)
    assert count_regions_2d(quadrants, res) == {"regions": 4, "patterns": 4}
    # 3 lines in general position crossing inside the box: 1 + 3 + 3 = 7 regions
    normals = torch.tensor([[1.0, 0.2], [-0.3, 1.0], [1.0, 1.1]], dtype=torch.float64)
    offsets = torch.tensor([0.1, -0.05, 0.2], dtype=torch.float64)
    lines = (pts @ normals.T + offsets) > 0
    assert count_regions_2d(lines, res)["regions"] == 7
    # one pattern split into two disconnected pieces: two regions, one pattern
    band = (pts[:, 0].abs() > 0.5).unsqueeze(1)
    assert count_regions_2d(band, res) == {"regions": 3, "patterns": 2}


def test_linear_regions_of_small_nets():
    torch.manual_seed(0)
    relu_net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    r = linear_regions_2d(relu_net, resolution=96)
    assert 1 <= r["regions"] <= 7  # 3 lines cut the plane into at most 7 pieces
    smooth = nn.Sequential(nn.Linear(2, 3), create_norm("ln", 3), nn.Linear(3, 2))
    assert linear_regions_2d(smooth, resolution=32)["regions"] == 1


def test_folds_model_reports_layers_and_decisions():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("lin", nn.Linear(2, 8))
    model.add_module("norm", create_norm("relu>ln", 8))
    model.add_module("head", nn.Linear(8, 3))
    r = folds_model(model, torch.randn(20, 2), lines=4, steps=128)
    assert set(r["layers"]) == {"norm"} and r["decision_changes"] >= 0
    assert r["linear_regions"]["regions"] >= 1
