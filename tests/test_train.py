"""The trainer: determinism, the run folder, divergence, schedules, load_run, nothing written on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lateralnorm.errors import UsageError
from lateralnorm.train import (
    RECIPES,
    RunConfig,
    RunResult,
    default_config,
    evaluate,
    load_run,
    resolve_device,
    run,
)

FAST = dict(dataset="moons", samples=200, model="mlp", width=8, depth=1, epochs=3, batch_size=32, lr=1e-2)


def _cfg(**kw) -> RunConfig:
    return RunConfig(**{**FAST, **kw})


def _numbers(result: RunResult) -> list[tuple]:
    return [(h.train_loss, h.train_acc, h.test_loss, h.test_acc, h.lr) for h in result.history]


def test_same_config_same_metrics(tmp_cwd):
    a = run(_cfg(norm="gelu>ln", out_dir="a"))
    b = run(_cfg(norm="gelu>ln", out_dir="b"))
    assert a.status == "done" and _numbers(a) == _numbers(b)
    sa, sb = (
        torch.load("a/checkpoint.pt", weights_only=True),
        torch.load("b/checkpoint.pt", weights_only=True),
    )
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = run(_cfg(norm="gelu>ln", seed=1, out_dir="c"))
    assert _numbers(c) != _numbers(a)


def test_deterministic_recurrent_and_conv(tmp_cwd):
    for model, dataset in (("gru", "digits"), ("cnn", "digits")):
        cfg = dict(dataset=dataset, model=model, subset=64, width=4, depth=1, epochs=1, batch_size=16)
        assert _numbers(run(RunConfig(**cfg, out_dir="x"))) == _numbers(run(RunConfig(**cfg, out_dir="y")))


def test_run_folder_contents(tmp_cwd):
    cfg = _cfg()
    res = run(cfg)
    out = Path("runs") / cfg.run_id()
    assert res.out_dir == str(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
        "result.json",
    ]
    header = json.loads((out / "config.json").read_text())
    assert RunConfig(**header["config"]) == cfg
    assert header["versions"]["lateralnorm"] and header["versions"]["torch"] == torch.__version__
    assert header["dataset"]["input_shape"] == [2] and header["num_params"] == res.num_params
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    saved = RunResult.model_validate_json((out / "result.json").read_text())
    assert saved.test_acc == res.test_acc == res.history[-1].test_acc
    assert not list(out.glob(".*tmp*"))  # no temp file left behind


def test_learns_a_toy(tmp_cwd):
    res = run(default_config("moons", "mlp", norm="ln", samples=400, epochs=30, out_dir="r"))
    assert res.test_acc > 0.95 and res.history[-1].train_loss < res.history[0].train_loss


def test_load_run_gives_the_trained_model(tmp_cwd):
    res = run(_cfg(norm="bn", out_dir="r"))
    loaded = load_run("r")
    assert not loaded.model.training and loaded.result.test_acc == res.test_acc
    loss, acc = evaluate(loaded.model, loaded.data.x_test, loaded.data.y_test)
    assert acc == res.test_acc and math.isclose(loss, res.test_loss, rel_tol=1e-6)
    with pytest.raises(UsageError, match="not a run folder"):
        load_run("nowhere")


def test_divergence_is_a_status_not_an_exception(tmp_cwd):
    res = run(_cfg(norm="none", optimizer="sgd", lr=1e6, momentum=0.0, epochs=4, out_dir="d"))
    assert res.status == "diverged" and res.diverged_step is not None and res.diverged_step >= 1
    assert res.test_acc is None
    assert json.loads(Path("d/result.json").read_text())["status"] == "diverged"
    steps_per_epoch = math.ceil(160 / 32)
    assert len(res.history) == (res.diverged_step - 1) // steps_per_epoch


def test_a_finite_blow_up_is_diverged_by_the_documented_rule(tmp_cwd, monkeypatch):
    """AdamW at lr 1e4 keeps the loss finite (≈1e6 nats and more) while the net learns nothing: by the rule
    (an epoch's mean training loss above EXPLODE_FACTOR × ln(classes)) the run is diverged, not done, at the
    first step above the limit; the same run judged with the limit lifted counts as done (so the rule, not a
    NaN, decided)."""
    import lateralnorm.train as train_mod

    cfg = _cfg(norm="none", lr=1e4, epochs=2, out_dir="x")
    res = run(cfg)
    assert res.status == "diverged" and res.test_acc is None and res.diverged_step is not None
    assert res.history == []  # it exploded in epoch 1
    monkeypatch.setattr(train_mod, "EXPLODE_FACTOR", math.inf)
    lifted = run(cfg.model_copy(update={"out_dir": "y"}))
    assert lifted.status == "done" and all(math.isfinite(h.train_loss) for h in lifted.history)
    assert lifted.history[0].train_loss > 10 * math.log(10)


def test_schedules_and_sgd(tmp_cwd):
    cos = run(_cfg(schedule="cosine", epochs=4, out_dir="c"))
    assert cos.history[0].lr < 1e-2 and cos.history[-1].lr < 1e-6  # cosine decays to zero
    one = run(_cfg(schedule="onecycle", epochs=4, out_dir="o"))
    assert max(h.lr for h in one.history) <= 1e-2 and one.history[-1].lr < 1e-4
    sgd = run(_cfg(optimizer="sgd", weight_decay=1e-4, out_dir="s"))
    assert sgd.status == "done" and sgd.history[-1].lr == 1e-2


def test_threads_set_and_restored(tmp_cwd, monkeypatch):
    """The run trains with config.threads (seen from inside the training loop) and restores the count."""
    import lateralnorm.train as train_mod

    torch.set_num_threads(1)
    seen = []
    real = train_mod.evaluate
    monkeypatch.setattr(
        train_mod, "evaluate", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k)
    )
    run(_cfg(threads=2, epochs=1, out_dir="t"))
    assert seen == [2]  # set while training
    assert torch.get_num_threads() == 1  # and restored


def test_zero_epochs_and_no_checkpoint(tmp_cwd):
    res = run(_cfg(epochs=0, checkpoint=False, out_dir="z"))
    assert res.status == "done" and res.history == [] and res.test_acc is None
    assert not Path("z/checkpoint.pt").exists()


def test_random_labels_memorised_not_generalised(tmp_cwd):
    cfg = dict(dataset="digits", model="mlp", subset=100, width=256, depth=1, epochs=60, lr=3e-3)
    res = run(RunConfig(**cfg, random_labels=True, batch_size=50, out_dir="r"))
    assert res.train_acc > 0.9 and res.test_acc < 0.3


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(dataset="moonz"), "did you mean 'moons'"),
        (dict(model="cnn"), "needs images"),
        (dict(optimizer="adamm"), "did you mean 'adamw'"),
        (dict(schedule="linear"), "unknown schedule"),
        (dict(device="tpu"), "unknown device"),
        (dict(norm="gn:groups=3"), "must divide"),
        (dict(subset=10_000), "subset 10000 is outside"),
    ],
)
def test_bad_config_writes_nothing(tmp_cwd, kw, words):
    """Names with a fixed choice list (optimizer, schedule, device) are refused by RunConfig itself, the rest
    by the trainer's checks; either way with the words below and before anything is written."""
    from pydantic import ValidationError

    with pytest.raises((UsageError, ValidationError), match=words):
        run(_cfg(**kw))
    assert list(tmp_cwd.iterdir()) == []


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_recipes_build_valid_configs():
    for model, dataset in RECIPES:
        cfg = default_config("fashion-mnist" if dataset == "*" else dataset, model, seed=3)
        assert cfg.model == model and cfg.seed == 3
    assert default_config("mnist1d", "mlp", lr=0.5).lr == 0.5  # the user's value wins


@pytest.mark.slow
@pytest.mark.parametrize("model", ["linear", "mlp", "cnn1d", "gru", "lstm", "rnn", "transformer"])
def test_mnist1d_recipes_learn(tmp_cwd, model):
    res = run(default_config("mnist1d", model, norm="ln", epochs=10, out_dir="r"))
    assert res.status == "done" and res.history[-1].train_loss < res.history[0].train_loss
    assert res.test_acc > (0.12 if model == "rnn" else 0.25)  # vanilla RNNs barely learn MNIST-1D


@pytest.mark.parametrize(
    "kw",
    [
        dict(norm="ln", optimizer="adamw", weight_decay=0.01),
        dict(norm="dn:kappa=full,learn_alpha=true,alpha=1.5", optimizer="adamw", kappa_decay=0.1),
        dict(norm="rms", optimizer="sgd", weight_decay=0.01),
        dict(dataset="digits", model="gru", norm="ln", subset=128, width=6),
    ],
)
def test_the_batched_optimizer_trains_bitwise_like_the_per_tensor_loop(tmp_cwd, monkeypatch, kw):
    """The trainer's optimizers update all tensors in one call per op (foreach): committed results were
    made with torch's per-tensor loop, so the parameters after training must be bitwise the same."""
    import lateralnorm.train as train_mod

    made = train_mod._optimizer
    run(_cfg(**kw, out_dir="batched"))
    with monkeypatch.context() as m:  # the same optimizer with torch's per-tensor loop

        def per_tensor(config, model):  # noqa: ANN001, ANN202
            opt = made(config, model)
            assert all(g["foreach"] for g in opt.param_groups)
            for g in opt.param_groups:
                g["foreach"] = False
            return opt

        m.setattr(train_mod, "_optimizer", per_tensor)
        run(_cfg(**kw, out_dir="loop"))
    a, b = (torch.load(f"{d}/checkpoint.pt", weights_only=True) for d in ("batched", "loop"))
    assert len(a) >= 4 and all(torch.equal(a[k], b[k]) for k in a)
