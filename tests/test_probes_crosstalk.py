"""Cross-talk probe: the known answers of the issue (rectifier before the pool, LayerNorm's 1/t squash,
softmax's exact ratios) and the per-layer distribution on a model's captured norm layers."""

import math

import pytest
import torch
from torch import nn

from lateralnorm.norms import create_norm
from lateralnorm.probes.crosstalk import (
    crosstalk_curve,
    crosstalk_layer,
    default_input,
    drive_curves,
    layernorm_reference,
)
from lateralnorm.probes.layers import capture_norm_layers

N = 12
LONG = torch.tensor([0.0, 0.5, 1.0, 3.0, 10.0, 100.0, 1e3, 1e4], dtype=torch.float64)


def curves(spec: str, ts=LONG, **kw):
    layer = create_norm(spec, N, **kw).double().eval()
    y, pos, j = default_input(N)
    return drive_curves(layer, y.double(), j, pos, ts), y.double(), pos, j


@pytest.mark.parametrize("spec", ["relu>ln", "dn", "dn:kappa=band:5,alpha=2", "relu>rms"])
def test_rectifier_before_pool_gives_no_crosstalk(spec):
    c, *_ = curves(spec)
    assert torch.equal(c["D"], torch.zeros_like(c["D"]))
    assert torch.allclose(c["C"], torch.ones_like(c["C"]), atol=1e-12)
    assert torch.equal(c["J"], torch.zeros_like(c["J"]))


def test_layernorm_matches_closed_form_and_decays_like_one_over_t():
    layer = create_norm("ln", N).double().eval()
    c, y, pos, j = curves("ln")
    ref = layernorm_reference(y, j, LONG, eps=layer.eps)
    torch.testing.assert_close(c["D"], ref["D"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(c["C"], ref["C"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(c["z_P"], ref["z_P"], rtol=1e-9, atol=1e-12)
    # C(t)·t → √(σ²+ε)·N/√(N−1): the positive units lose their contrast like 1/t
    limit = math.sqrt(y.var(unbiased=False) + layer.eps) * N / math.sqrt(N - 1)
    assert c["C"][-1] * LONG[-1] == pytest.approx(limit, rel=1e-3)
    assert c["C"][-2] * LONG[-2] == pytest.approx(limit, rel=1e-2)
    # ... and are squashed onto one value, 1/√(N−1)
    torch.testing.assert_close(
        c["z_P"][-1], torch.full((len(pos),), 1 / math.sqrt(N - 1), dtype=y.dtype), rtol=5e-3, atol=0
    )
    assert (c["D"][1:] > 0.02).all() and (c["D"][4:] > 0.4).all() and (c["J"][1:4] > 0).all()


def test_jacobian_block_matches_finite_differences():
    layer = create_norm("elu>ln", N).double().eval()
    y, pos, j = default_input(N)
    y = y.double()
    ts = torch.tensor([0.3, 2.0], dtype=torch.float64)
    c = drive_curves(layer, y, j, pos, ts)
    for k, t in enumerate(ts.tolist()):
        h = 1e-6
        lo, hi = y.clone(), y.clone()
        lo[j], hi[j] = y[j] - t - h, y[j] - t + h
        with torch.no_grad():
            fd = (layer(hi.unsqueeze(0)) - layer(lo.unsqueeze(0)))[0, pos] / (2 * h)
        assert c["J"][k] == pytest.approx(float(fd.norm()), rel=1e-6)


def test_softmax_keeps_ratios_and_saturates():
    c, y, pos, j = curves("softmax")
    ratios = c["z_P"] / c["z_P"][:, :1]  # (T, |P|)
    torch.testing.assert_close(ratios, ratios[:1].expand_as(ratios), rtol=1e-12, atol=0)
    z0 = torch.exp(y).sum()
    saturation = float(torch.exp(y[j]) / (z0 - torch.exp(y[j])))
    assert c["D"][-1] == pytest.approx(saturation, rel=1e-9)
    assert (c["D"][1:] - c["D"][:-1] >= -1e-15).all()  # rises monotonically to it


@pytest.mark.parametrize("spec", ["gelu>ln", "elu>ln"])
def test_smooth_activation_before_ln_stays_bounded(spec):
    ts = torch.tensor([0.0, 0.5, 1.0, 2.0, 10.0, 1e3, 1e6], dtype=torch.float64)
    c, *_ = curves(spec, ts)
    ln, *_ = curves("ln", ts)
    assert c["D"].max() < 0.1 < ln["D"][-1]
    assert c["D"][-1] == pytest.approx(float(c["D"][-2]), abs=1e-9)  # saturated
    assert c["C"].min() > 0.9 > ln["C"][-1]


def test_crosstalk_curve_is_jsonable_and_defaults_work():
    r = crosstalk_curve(create_norm("ln", 8))
    assert len(r["t"]) == len(r["D"]) == len(r["C"]) == len(r["J"])
    assert r["j"] == 7 and r["positive"] == [0, 1, 2, 3]
    assert r["C_at_T"] < 0.1


class Tiny(nn.Module):
    def __init__(self, spec: str, layout: str = "last") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(2, 6, 3) if layout == "channels_first" else nn.Linear(5, 6)
        self.norm = create_norm(spec, 6, layout=layout)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.norm(self.conv(x))
        return self.head(h.mean(-1) if h.ndim == 3 else h)


@pytest.mark.parametrize("layout", ["last", "channels_first"])
def test_captured_layers_relu_ln_vs_ln(layout):
    x = torch.randn(40, 2, 9) if layout == "channels_first" else torch.randn(40, 5)
    got = {}
    for spec in ("relu>ln", "ln"):
        (layer,) = capture_norm_layers(Tiny(spec, layout), x)
        assert layer.name == "norm" and layer.inputs.shape == layer.outputs.shape
        got[spec] = crosstalk_layer(layer, max_samples=16)
        assert got[spec]["n_samples"] + got[spec]["skipped"] <= 40
        assert got[spec]["n_samples"] > 5
    assert got["relu>ln"]["D_max"] == 0.0 and got["relu>ln"]["C_at_T"] == 1.0
    assert got["ln"]["D_at_T"] > 0.1 and got["ln"]["C_at_T"] < 0.2
