"""Models: every model with several norms, norm slots by name, placement order, cells against torch's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lateralnorm.errors import UsageError
from lateralnorm.models import MODELS, build_model, norm_modules
from lateralnorm.models.rnn import NormRecurrentCell
from lateralnorm.runconfig import RunConfig
from lateralnorm.train import default_config

SHAPES = {
    "linear": (40,),
    "mlp": (40,),
    "cnn": (1, 8, 8),
    "cnn1d": (40,),
    "rnn": (12, 3),
    "gru": (12, 3),
    "lstm": (12, 3),
    "transformer": (1, 8, 8),
    "gpt": (12,),  # token windows
}
NORMS = ["ln", "relu>ln", "rms", "dn", "none"]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_with_norms(model, norm):
    torch.manual_seed(0)
    cfg = RunConfig(model=model, norm=norm, width=8, depth=2)
    net = build_model(cfg, SHAPES[model], 5)
    x = torch.randint(0, 5, (4, *SHAPES[model])) if model == "gpt" else torch.randn(4, *SHAPES[model])
    out = net(x)
    assert out.shape == ((4, 12, 5) if model == "gpt" else (4, 5)) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    slots = norm_modules(net)
    if model != "linear":
        assert len(slots) >= 2 and all("norm" in name for name in slots)


@pytest.mark.parametrize("model", ["cnn", "cnn1d"])
@pytest.mark.parametrize("norm", ["bn", "gn:groups=4", "ln_chw", "lrn"])
def test_conv_models_channel_norms(model, norm):
    """Each conv block's norm slot sees (B, C, ...) feature maps and computes the named norm over the channel
    axis: its output equals torch's own function of its input (so an identity or a wrong axis fails)."""
    import torch.nn.functional as F

    net = build_model(RunConfig(model=model, norm=norm, width=8, depth=2), SHAPES[model], 3)
    seen = []
    for slot in norm_modules(net).values():
        slot.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach(), o.detach())))
    assert net(torch.randn(4, *SHAPES[model])).shape == (4, 3)
    assert len(seen) == 2
    for m, x, out in seen:
        assert x.shape[1] == 8 and x.ndim == (4 if model == "cnn" else 3)  # channels first
        w, b = getattr(m, "weight", None), getattr(m, "bias", None)
        if norm == "bn":
            want = F.batch_norm(x, None, None, w, b, True, 0.0, m.eps)
        elif norm == "lrn":
            want = F.local_response_norm(x, 5, 1e-4, 0.75, 1.0)
        else:  # gn with 4 groups, ln_chw = one group
            want = F.group_norm(x, 4 if norm.startswith("gn") else 1, w, b, m.eps)
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
        assert not torch.equal(out, x)  # it did something (LRN with torch's defaults changes little)


def test_images_in_recurrent_models_read_rows():
    net = build_model(RunConfig(model="gru", norm="ln", width=8, depth=1), (1, 28, 28), 10)
    assert net.steps == 28 and net.features == 28
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_transformer_patches_and_signals():
    net = build_model(RunConfig(model="transformer", norm="rms", width=32, depth=1), (1, 28, 28), 10)
    assert net.pos.shape == (49, 32)  # 7×7 patches of 4×4
    net = build_model(RunConfig(model="transformer", norm="dyt", width=16, depth=1), (40,), 10)
    assert net.pos.shape == (40, 16) and net(torch.randn(2, 40)).shape == (2, 10)


def test_mlp_placement_order_known_answers():
    torch.manual_seed(0)
    x = torch.randn(16, 10)
    post = build_model(RunConfig(model="mlp", norm="ln", placement="post", depth=1, width=6), (10,), 2)
    h = post.blocks[0](x)
    assert (h >= 0).all()  # relu last
    pre = build_model(RunConfig(model="mlp", norm="ln", placement="pre", depth=1, width=6), (10,), 2)
    h = pre.blocks[0](x)
    assert torch.allclose(h.mean(1), torch.zeros(16), atol=1e-5)  # LayerNorm last: rows centred
    assert (h < 0).any()
    # the activation is inside the norm slot ("relu>ln"), so probes that drive the slot see the whole unit
    expected = nn.functional.layer_norm(torch.relu(pre.blocks[0].layer(x)), (6,))
    assert torch.allclose(pre.blocks[0].norm(pre.blocks[0].layer(x)), expected, atol=1e-5)
    only = build_model(RunConfig(model="mlp", norm="ln", placement="only", depth=1, width=6), (10,), 2)
    lin = only.blocks[0].layer
    expected = nn.functional.layer_norm(lin(x), (6,))
    assert torch.allclose(only.blocks[0](x), expected, atol=1e-5)


def test_only_with_no_norm_is_affine():
    torch.manual_seed(0)
    net = build_model(RunConfig(model="mlp", norm="none", placement="only", depth=3, width=7), (5,), 3)
    a, b, z = torch.randn(2, 5), torch.randn(2, 5), torch.zeros(1, 5)
    f0 = net(z)
    assert torch.allclose(net(2 * a - 3 * b) - f0, 2 * (net(a) - f0) - 3 * (net(b) - f0), atol=1e-5)


def test_linear_is_logistic_regression():
    net = build_model(RunConfig(model="linear", norm="ln"), (1, 4, 4), 3)
    assert sum(p.numel() for p in net.parameters()) == 16 * 3 + 3 and not norm_modules(net)


def _copy_from_torch_cell(mine: NormRecurrentCell, ref: nn.Module) -> None:
    with torch.no_grad():
        mine.w_x.weight.copy_(ref.weight_ih)
        mine.w_h.weight.copy_(ref.weight_hh)
        mine.bias.copy_(ref.bias_ih + ref.bias_hh)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_cells_without_norm_match_torch(kind):
    """With norm "none" the cells are the textbook ones: compare with torch's RNNCell/GRUCell/LSTMCell."""
    torch.manual_seed(0)
    ref = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}[kind](3, 5)
    if kind == "gru":
        with torch.no_grad():  # our n-gate has one bias outside r ⊙ (U_n h): zero torch's inner one
            ref.bias_hh[10:].zero_()
    mine = NormRecurrentCell(kind, 3, 5, "none", activation="tanh")
    _copy_from_torch_cell(mine, ref)
    x = torch.randn(2, 6, 3)
    h = torch.zeros(2, 5)
    c = torch.zeros(2, 5)
    for t in range(6):
        if kind == "lstm":
            h, c = ref(x[:, t], (h, c))
        else:
            h = ref(x[:, t], h)
    assert torch.allclose(mine(x)[:, -1], h, atol=1e-5)
    assert torch.allclose(mine.step_loop(x)[:, -1], h, atol=1e-5)  # the step loop is the same cell


@pytest.mark.parametrize("kind, act", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")])
def test_fused_recurrence_equals_the_step_loop_in_values_and_gradients(kind, act):
    """Norm none runs in torch's fused recurrence; it must be the step loop's function exactly (float64, all
    hidden states and every parameter's gradient), and a hook on the norm slot must get the step loop."""
    torch.manual_seed(1)
    cell = NormRecurrentCell(kind, 3, 8, "none", activation=act).double()
    with torch.no_grad():
        cell.bias.normal_()
    assert cell._fused_applies()
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    out = cell(x)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in cell.parameters()]
    cell.zero_grad()
    ref = cell.step_loop(x)
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, [p.grad for p in cell.parameters()]):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    seen = []
    cell.norm.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    torch.testing.assert_close(cell(x), ref, rtol=1e-12, atol=1e-12)
    assert len(seen) == 9 * (2 if kind == "gru" else 1)  # hooked: the step loop (a GRU normalizes r,z then n)
    assert not NormRecurrentCell(kind, 3, 8, "ln", activation=act)._fused_applies()
    if kind == "rnn":
        assert not NormRecurrentCell(kind, 3, 8, "none", activation="gelu")._fused_applies()


def test_cell_norm_is_per_gate():
    """With LayerNorm and zero bias, each gate's pre-activation is centred over the H units."""
    cell = NormRecurrentCell("lstm", 3, 6, "ln")
    seen = []
    cell.norm.register_forward_hook(lambda m, i, o: seen.append(o))
    cell(torch.randn(2, 4, 3))
    assert len(seen) == 4 and seen[0].shape == (2, 4, 6)  # one call per step, (B, gates, H)
    assert torch.allclose(seen[0].mean(-1), torch.zeros(2, 4), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, shape, words",
    [
        (dict(model="cnn"), (40,), "use cnn1d"),
        (dict(model="cnn1d"), (1, 28, 28), "use cnn"),
        (dict(model="mlpp"), (40,), "did you mean 'mlp'"),
        (dict(model="gru", depth=0), (40,), "depth >= 1"),
        (dict(model="mlp", activation="rleu"), (40,), "unknown activation"),
        (dict(model="mlp", norm="lnn"), (40,), "unknown norm"),
        (dict(model="transformer"), (1, 18, 18), "do not tile"),
    ],
)
def test_bad_models(kwargs, shape, words):
    with pytest.raises(UsageError, match=words):
        build_model(RunConfig(**kwargs), shape, 10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_jit_trace_of_a_recurrent_model_computes_new_inputs(kind):
    """torch.jit.trace records the cells' torch-op gates (an extension call is invisible to it, and the
    compiled gates' in-place kernels fail under it): the trace gives the model's output on a new input."""
    import warnings

    torch.manual_seed(2)
    cfg = default_config("mnist1d", kind, norm="dn:fn=signed,r=0.5,kappa_init=0.1,beta=1", width=8, depth=1)
    m = build_model(cfg, (10, 1), 3).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit.trace is deprecated; it still runs
        traced = torch.jit.trace(m, torch.randn(4, 10, 1))
    x = torch.randn(4, 10, 1) * 3
    torch.testing.assert_close(traced(x), m(x), atol=1e-5, rtol=1e-4)
