"""Hugging Face interop: swap_norms, the probes, LN folding and scale freezing on a transformers GPT-2 built
from a tiny config with random weights (no download), each checked against the unchanged model."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from lateralnorm import swap_norms  # noqa: E402
from lateralnorm.norms import FrozenScaleNorm, fold_gpt2, fold_into, freeze_scale, norm_slots, unfreeze_scale  # noqa: E402
from lateralnorm.probes.crosstalk import crosstalk_layer  # noqa: E402
from lateralnorm.probes.layers import capture_norm_layers  # noqa: E402
from lateralnorm.probes.sparsity import sparsity_layer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpt2():
    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # trained-looking affine parameters, so folding has something to fold
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))


def logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


LN_NAMES = [
    "transformer.h.0.ln_1",
    "transformer.h.0.ln_2",
    "transformer.h.1.ln_1",
    "transformer.h.1.ln_2",
    "transformer.ln_f",
]


def test_norm_slots_find_gpt2_layernorms(gpt2):
    assert list(norm_slots(gpt2)) == LN_NAMES


@pytest.mark.parametrize("spec", ["rms", "relu>ln", "dn", "dn:kappa=band:2,alpha=1"])
def test_swapped_norms_keep_the_forward_running(gpt2, tokens, spec):
    model = copy.deepcopy(gpt2)
    assert swap_norms(model, spec) == LN_NAMES
    out = logits(model, tokens)
    assert out.shape == (4, 16, 64) and torch.isfinite(out).all()
    assert list(norm_slots(model)) == LN_NAMES  # a chain such as relu>ln is still one slot


def test_a_preset_equal_to_layernorm_leaves_the_logits_unchanged(gpt2, tokens):
    model = copy.deepcopy(gpt2)
    swap_norms(model, "dn:preset=ln")
    torch.testing.assert_close(logits(model, tokens), logits(gpt2, tokens), atol=1e-5, rtol=1e-5)
    other = copy.deepcopy(gpt2)
    swap_norms(other, "rms")
    assert (logits(other, tokens) - logits(gpt2, tokens)).abs().max() > 1e-3


def test_probes_capture_every_norm_input_and_output(gpt2, tokens):
    layers = capture_norm_layers(gpt2, tokens)
    assert [layer.name for layer in layers] == LN_NAMES
    for layer in layers:
        assert layer.inputs.shape == layer.outputs.shape == (4, 16, 32)
        torch.testing.assert_close(layer.module(layer.inputs), layer.outputs)  # what the norm really saw
    ct = crosstalk_layer(layers[0], max_samples=16)
    assert ct["n_samples"] > 0 and ct["D_at_T"] > 0.3  # LayerNorm: the positive units move
    relu_ln = copy.deepcopy(gpt2)
    swap_norms(relu_ln, "relu>ln")
    ct = crosstalk_layer(capture_norm_layers(relu_ln, tokens)[0], max_samples=16)
    assert ct["D_at_T"] == 0.0  # a unit already below 0 is cut by the ReLU before LN sees it
    assert 0 <= sparsity_layer(layers[0])["hoyer"] <= 1


def test_folding_gamma_beta_into_the_next_linear_layers_keeps_the_logits(gpt2, tokens):
    model = copy.deepcopy(gpt2)
    assert fold_gpt2(model) == ["h.0.ln_1", "h.0.ln_2", "h.1.ln_1", "h.1.ln_2", "ln_f"]
    torch.testing.assert_close(logits(model, tokens), logits(gpt2, tokens), atol=1e-5, rtol=1e-4)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    assert model.lm_head.weight is not model.transformer.wte.weight  # untied before folding


def test_fold_into_plain_linear_layers():
    torch.manual_seed(0)
    ln, a, b = nn.LayerNorm(8), nn.Linear(8, 5), nn.Linear(8, 3, bias=False)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 2)
        ln.bias.normal_()
    x = torch.randn(6, 8)
    before = (a(ln(x)), b(ln(x)))
    fold_into(ln, [a, b])
    torch.testing.assert_close((a(ln(x)), b(ln(x))), before, atol=1e-5, rtol=1e-5)
    with pytest.raises(Exception, match="takes 8 inputs|nn.Linear"):
        fold_into(nn.LayerNorm(8), [nn.Conv2d(8, 2, 1)])


def test_frozen_scale_makes_every_norm_affine_and_keeps_the_batch_outputs(gpt2, tokens):
    model = copy.deepcopy(gpt2)
    assert freeze_scale(model, tokens) == LN_NAMES
    torch.testing.assert_close(logits(model, tokens), logits(gpt2, tokens), atol=1e-5, rtol=1e-5)
    frozen = [m for m in model.modules() if isinstance(m, FrozenScaleNorm)]
    assert len(frozen) == 5
    x1, x2 = torch.randn(4, 16, 32), torch.randn(4, 16, 32)
    for m in frozen:  # affine: f(a·x1 + (1−a)·x2) = a·f(x1) + (1−a)·f(x2)
        torch.testing.assert_close(m(0.3 * x1 + 0.7 * x2), 0.3 * m(x1) + 0.7 * m(x2), atol=1e-5, rtol=1e-5)
        real = m.inner
        assert not torch.allclose(real(0.3 * x1 + 0.7 * x2), 0.3 * real(x1) + 0.7 * real(x2), atol=1e-3)
    with pytest.raises(Exception, match="freeze again"):
        model(tokens[:2])
    assert unfreeze_scale(model) == 5
    torch.testing.assert_close(logits(model, tokens), logits(gpt2, tokens))


def test_the_example_script_prints_the_crosstalk_table():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "hf_crosstalk.py"), "--layers", "1", "--width", "32"],
                         capture_output=True, text=True, timeout=300, check=True).stdout  # fmt: skip
    rows = [line.split() for line in out.splitlines()[1:]]
    assert len(rows) == 3 * 3  # (ln, relu>ln, dn) × (ln_1, ln_2, ln_f)
    d_at_t = {(r[0], r[1]): float(r[3]) for r in rows}
    assert d_at_t[("ln", "transformer.h.0.ln_1")] > 0.3
    assert d_at_t[("relu>ln", "transformer.h.0.ln_1")] == 0.0 and d_at_t[("dn", "transformer.ln_f")] == 0.0
