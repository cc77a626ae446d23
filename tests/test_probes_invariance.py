"""Invariance probe: LayerNorm's exact scale and shift invariance, RMSNorm's scale-only invariance."""

import pytest
import torch
from torch import nn

from lateralnorm.norms import create_norm
from lateralnorm.probes.invariance import SCALES, SHIFTS, invariance, invariance_bare, invariance_fn
from lateralnorm.probes.layers import capture_norm_layers


def test_layernorm_without_eps_is_exactly_scale_and_shift_invariant():
    r = invariance_bare(create_norm("ln:eps=0", 16).double(), 16)
    assert r["scales"] == list(SCALES) and r["shifts"] == list(SHIFTS)
    assert r["scale_change_max"] < 1e-6
    assert r["shift_change_max"] < 1e-6


def test_rms_is_scale_invariant_only_and_identity_is_neither():
    rms = invariance_bare(create_norm("rms:eps=0", 16), 16)
    assert rms["scale_change_max"] < 1e-5 and rms["shift_change_max"] > 0.3
    none = invariance_bare(create_norm("none", 16), 16)
    # identity: ‖c·x − x‖/‖x‖ = |c − 1|
    assert none["scale_change"] == pytest.approx([abs(c - 1) for c in SCALES], rel=1e-5)


def test_accuracy_is_reported_with_labels():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    labels = torch.randint(3, (64,))
    lin = nn.Linear(5, 3, bias=False)  # logits scale with x: argmax, so accuracy, invariant to c > 0
    r = invariance_fn(lin, x, labels=labels)
    assert r["scale_acc"] == pytest.approx([r["acc"]] * len(SCALES))
    assert len(r["shift_acc"]) == len(SHIFTS)


def test_model_and_layers():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("lin", nn.Linear(4, 8))
    model.add_module("norm", create_norm("ln", 8))
    model.add_module("head", nn.Linear(8, 2))
    x = torch.randn(32, 4)
    out = invariance(
        capture_norm_layers(model, x), model=model, inputs=x, labels=torch.zeros(32, dtype=torch.long)
    )
    assert set(out["layers"]) == {"norm"}
    assert out["layers"]["norm"]["shift_change_max"] < 1e-5
    assert "acc" in out["model"] and len(out["model"]["scale_change"]) == len(SCALES)
