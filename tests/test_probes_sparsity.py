"""Sparsity statistics against known answers."""

import math

import pytest
import torch

from lateralnorm.norms import create_norm
from lateralnorm.probes.sparsity import (
    excess_kurtosis,
    hoyer,
    near_zero_fraction,
    sparsity_bare,
    sparsity_stats,
    wta_index,
)


def test_hoyer_one_hot_constant_and_between():
    n = 10
    one_hot = torch.zeros(n, dtype=torch.float64)
    one_hot[3] = -2.5
    assert hoyer(one_hot).item() == pytest.approx(1.0, abs=1e-12)
    assert hoyer(torch.full((n,), 0.7, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    two_hot = torch.zeros(n, dtype=torch.float64)
    two_hot[:2] = 1.0
    assert hoyer(two_hot).item() == pytest.approx((math.sqrt(n) - math.sqrt(2)) / (math.sqrt(n) - 1))
    assert math.isnan(hoyer(torch.zeros(n)).item())


def test_wta_and_near_zero():
    z = torch.tensor([[0.0, 0.0, 5.0, 0.0], [1.0, 1.0, 1.0, 1.0], [4.0, 0.01, -0.05, 2.0]])
    torch.testing.assert_close(wta_index(z), torch.tensor([1.0, 0.25, 4 / 6.06]))
    torch.testing.assert_close(near_zero_fraction(z), torch.tensor([0.75, 0.0, 0.25]))


def test_kurtosis_of_known_distributions():
    gen = torch.Generator().manual_seed(0)
    n = 400_000
    signs = torch.tensor([1.0, -1.0] * 50, dtype=torch.float64)
    assert excess_kurtosis(signs).item() == pytest.approx(-2.0, abs=1e-12)
    grid = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    assert excess_kurtosis(grid).item() == pytest.approx(-1.2, abs=1e-4)
    gauss = torch.randn(n, generator=gen, dtype=torch.float64)
    assert excess_kurtosis(gauss).item() == pytest.approx(0.0, abs=0.05)
    laplace = torch.distributions.Laplace(0.0, 1.0).sample((n,)).double()
    assert excess_kurtosis(laplace).item() == pytest.approx(3.0, abs=0.2)
    assert math.isnan(excess_kurtosis(torch.ones(5)).item())


def test_population_versus_lifetime_axes():
    # rows = samples, columns = units: each row is ±1 (population −2); each unit is constant down its
    # column except one spike, so lifetime kurtosis is large
    rows = torch.tensor([[1.0, -1.0, 1.0, -1.0]] * 50, dtype=torch.float64)
    rows[0] = torch.tensor([9.0, -9.0, 9.0, -9.0])
    s = sparsity_stats(rows)
    assert s["population_kurtosis"] == pytest.approx(-2.0)
    assert s["lifetime_kurtosis"] == pytest.approx(excess_kurtosis(rows[:, 0]).item())
    assert s["lifetime_kurtosis"] > 40
    assert s["rows"] == 50 and s["width"] == 4


def test_bare_softmax_is_sparser_than_ln():
    ln = sparsity_bare(create_norm("ln", 32), 32)["output"]
    sm = sparsity_bare(create_norm("softmax", 32), 32)["output"]
    assert sm["hoyer"] > ln["hoyer"] and sm["wta"] > ln["wta"]
