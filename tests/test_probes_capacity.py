"""Capacity probe: random-label memorization."""

import pytest

from lateralnorm.errors import UsageError
from lateralnorm.probes.capacity import build_net, capacity, memorize


def test_same_size_nets_and_names():
    ln = build_net("ln", 4, 8, 2, 3)
    relu = build_net("relu", 4, 8, 2, 3)
    assert [n for n, _ in ln.named_children()] == ["linear0", "norm0", "linear1", "norm1", "head"]
    n_ln, n_relu = (sum(p.numel() for p in m.parameters()) for m in (ln, relu))
    assert n_ln - n_relu == 2 * 2 * 8  # only LN's γ, β


def test_nonlinear_net_memorizes_more_than_linear():
    kw = dict(samples=96, in_dim=6, classes=2, steps=300, lr=2e-2)
    linear = memorize("none", 32, 1, **kw)
    relu = memorize("relu", 32, 1, **kw)
    ln_only = memorize("ln", 32, 1, **kw)
    assert relu["train_acc"] >= 0.95
    assert linear["train_acc"] < 0.85
    assert ln_only["train_acc"] > linear["train_acc"]  # LayerNorm alone is a nonlinearity


def test_capacity_grid_and_errors():
    recs = capacity(["relu"], [4], [1, 2], samples=16, steps=5)
    assert [(r["width"], r["depth"], r["seed"]) for r in recs] == [(4, 1, 0), (4, 2, 0)]
    with pytest.raises(UsageError, match="depth"):
        memorize("relu", 4, 0)
    with pytest.raises(UsageError, match="unknown norm"):
        memorize("lnn", 4, 1)
