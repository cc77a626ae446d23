"""The trainer: `run(RunConfig) -> RunResult`, seeded, deterministic on CPU, NaN-aware.

One run:
  1. validate every name and shape (dataset, model, norm spec, optimizer, schedule, device), load the data
     and build the model — all before anything is written, so bad input leaves no folder behind;
  2. seed torch / NumPy / random with `config.seed`, build the model, the optimizer (AdamW or SGD with
     momentum, decoupled weight decay) and the per-step schedule (constant, cosine, one-cycle);
  3. each epoch: a seeded permutation of the training set in mini-batches (plain tensor indexing), then
     evaluation on the test split; one JSON line per epoch appended to metrics.jsonl;
  4. the divergence rule: a non-finite training loss at any step, or an epoch whose mean training loss
     exceeds EXPLODE_FACTOR × ln(classes) (ten times the loss of a uniform guess: a finite blow-up such as
     AdamW at loss 1e17), ends the run with status "diverged" and the (1-based) optimizer step where the
     loss first was non-finite or above that limit; a non-finite test loss does the same. The final metrics
     are then None (they stay out of the statistics) and the history holds the epochs before.

Run folder (`runs/<run_id>` under the working directory, or `config.out_dir`): config.json (the config,
run id, data set metadata, parameter count, versions), metrics.jsonl, checkpoint.pt (the state_dict,
written atomically), result.json (the RunResult). `load_run(folder)` gives back model, data and result.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lateralnorm import atomic
from lateralnorm.data import Dataset, check_dataset_name, load_dataset
from lateralnorm.errors import UsageError, did_you_mean
from lateralnorm.models import LM_MODELS, build_model, check_model, num_params
from lateralnorm.runconfig import EpochMetrics, RunConfig, RunResult, check_memory, choices

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "DEVICES", "RECIPES", "EpochMetrics", "LoadedRun", "RunConfig", "RunResult",
    "default_config", "load_run", "resolve_device", "run", "validate_config",
]  # fmt: skip

OPTIMIZERS, SCHEDULES, DEVICES = choices("optimizer"), choices("schedule"), choices("device")  # runconfig.py
EVAL_BATCH = 1000

# Default recipes per (model, dataset); "*" matches any dataset. Applied by `default_config` (and so by
# the CLI) under the user's own values; a RunConfig built by hand keeps RunConfig's defaults.
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    # MNIST-1D: the paper's setting is Adam, lr 1e-2, batch 100, 6000 steps (150 epochs of 4000)
    ("linear", "mnist1d"): dict(epochs=30, lr=1e-2, batch_size=100),
    ("mlp", "mnist1d"): dict(width=100, depth=2, epochs=150, lr=1e-2, batch_size=100),
    ("cnn1d", "mnist1d"): dict(width=64, depth=3, epochs=60, lr=1e-2, batch_size=100, schedule="cosine"),
    ("gru", "mnist1d"): dict(width=32, depth=1, epochs=30, lr=1e-2, batch_size=100, schedule="cosine"),
    ("lstm", "mnist1d"): dict(width=32, depth=1, epochs=30, lr=1e-2, batch_size=100, schedule="cosine"),
    # a vanilla tanh RNN over 40 steps of one value is weak here (about 44% without norm, 20% with ln)
    ("rnn", "mnist1d"): dict(width=32, depth=1, epochs=30, lr=1e-3, batch_size=100, activation="tanh"),
    ("transformer", "mnist1d"): dict(
        width=32, depth=2, epochs=30, lr=3e-3, batch_size=100, schedule="cosine"
    ),
    ("linear", "*"): dict(epochs=10, lr=1e-3),
    ("mlp", "*"): dict(width=256, depth=2, epochs=10, lr=1e-3, schedule="cosine"),
    ("cnn", "*"): dict(width=32, depth=2, epochs=8, lr=2e-3, schedule="cosine"),
    ("cnn1d", "*"): dict(width=32, depth=3, epochs=20, lr=2e-3),
    ("rnn", "*"): dict(width=64, depth=1, epochs=10, lr=1e-3, activation="tanh"),
    ("gru", "*"): dict(width=64, depth=1, epochs=10, lr=2e-3),
    ("lstm", "*"): dict(width=64, depth=1, epochs=10, lr=2e-3),
    ("transformer", "*"): dict(width=64, depth=2, epochs=10, lr=1e-3, schedule="cosine"),
}
TOY_RECIPE: dict[str, Any] = dict(width=32, depth=2, epochs=50, lr=1e-2, batch_size=64)


EXPLODE_FACTOR = 10.0  # divergence rule: an epoch's mean training loss above this × ln(classes) has exploded


def default_config(dataset: str = "mnist1d", model: str = "mlp", **overrides: Any) -> RunConfig:
    """RunConfig with the default recipe for (model, dataset) under `overrides` (overrides win).

    Toys (moons, circles, xor, spirals, temperature) share one small recipe for every model."""
    from lateralnorm.data.toys import TOYS

    recipe = RECIPES.get((model, dataset)) or (
        TOY_RECIPE if dataset in TOYS else RECIPES.get((model, "*"), {})
    )
    return RunConfig(**{**recipe, "dataset": dataset, "model": model, **overrides})


def resolve_device(name: str) -> torch.device:
    """auto → cuda when available, else cpu; cuda without a GPU is a UsageError."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}{did_you_mean(name, DEVICES)} (auto, cpu or cuda)")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for but no CUDA GPU is available; use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def dataset_for(config: RunConfig) -> Dataset:
    """The data a config trains on (its dataset, seed and views)."""
    return load_dataset(
        config.dataset,
        seed=config.seed,
        samples=config.samples,
        subset=config.subset,
        random_labels=config.random_labels,
        data_dir=config.data_dir,
        holdout=config.holdout,
    )


def validate_config(config: RunConfig) -> tuple[Dataset, torch.device]:
    """Check every name and shape in `config`, load its data; UsageError (nothing written) otherwise."""
    check_dataset_name(config.dataset)  # optimizer, schedule, device, placement: RunConfig checked them
    device = resolve_device(config.device)
    check_model(config)  # names first: fail fast before loading data
    check_memory(config, (40,) if config.dataset == "mnist1d" else (1, 28, 28))
    data = dataset_for(config)
    check_model(config, data.meta.input_shape, dataset=repr(config.dataset))
    lm_model, lm_data = config.model in LM_MODELS, data.meta.task == "lm"
    if lm_model != lm_data:
        raise UsageError(
            f"model {config.model!r} {'is a language model' if lm_model else 'classifies samples'} but dataset "
            f"{config.dataset!r} {'is a text corpus' if lm_data else 'has one label per sample'}: use "
            f"{'--dataset fortunes' if lm_model else '--model gpt'}"
        )
    return data, device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Package, git revision (when the source is a git checkout with commits) and library versions."""
    from lateralnorm import __version__

    out = {"lateralnorm": __version__, "python": platform.python_version()}
    for lib in ("torch", "numpy", "pydantic", "mnist1d", "scikit-learn"):
        with suppress(importlib.metadata.PackageNotFoundError):
            out[lib] = importlib.metadata.version(lib)
    out["platform"] = platform.platform()
    # the vector instruction set torch's CPU kernels dispatch to (AVX512, AVX2, ...): the same code rounds
    # differently on another one (BLAS, vectorized loops, glibc's vector exp/log), so exact repeats of a run's
    # numbers hold between machines with the same one
    out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    # torch's intra-op threads: a reduction split over more threads may add in another order
    out["torch_threads"] = str(torch.get_num_threads())
    from lateralnorm.norms import cpu_kernel

    out["dn_cpu_kernel"] = cpu_kernel.kernel_name()  # compiled row kernel or PyTorch ops (same formula)
    # a low-rank κ's pool: the kernel's own products or torch's matmuls (the same products, other roundings)
    out["lowrank_products"] = cpu_kernel.lowrank_products()
    # a matrix κ with a learned α on CPU: the compiled element work or the composite formula (other roundings);
    # without the compiled kernel it is the formula whatever the switch says
    kernel_off = out["dn_cpu_kernel"].startswith("pytorch")
    out["matrix_learned_alpha"] = "formula" if kernel_off else cpu_kernel.matrix_learned_alpha()
    # a channels-first matrix κ over the channels on CPU: on the input's planes (a 1×1 convolution) or transposed
    # to rows (torch's GEMM): other roundings; without the compiled kernel neither runs (the formula on rows)
    out["channel_pool"] = "rows" if kernel_off else cpu_kernel.channel_pool()
    try:
        rev = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        if rev:
            out["git"] = rev
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _write_json(path: Path, obj: Any) -> None:
    atomic.write_json(path, obj, indent=2, default=str)


def _save_checkpoint(path: Path, model: nn.Module) -> None:
    with atomic.atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)


def _param_groups(config: RunConfig, model: nn.Module) -> list[dict[str, Any]]:
    """One group, or two when `kappa_decay` gives the divisive norms' κ parameters their own decay."""
    if config.kappa_decay is None:
        return [{"params": list(model.parameters())}]
    kappa = [p for n, p in model.named_parameters() if any(part.startswith("kappa") for part in n.split("."))]
    ids = {id(p) for p in kappa}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": kappa, "weight_decay": config.kappa_decay}]


def _optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD over all parameters. `foreach`: one call per update op for all tensors together instead
    of a Python loop over them (torch's CPU default): the same arithmetic, bitwise the same parameters (tested),
    and less per-step overhead for models of many small tensors."""
    params = _param_groups(config, model)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, foreach=True
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)


def _scheduler(config: RunConfig, opt: torch.optim.Optimizer, total_steps: int) -> Any:
    """Stepped once per batch; None for a constant rate."""
    total = max(1, total_steps)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        )
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total + 1)
    return None


@torch.no_grad()
def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all gradients together (0-d tensor; no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over (x, y) in eval mode, in batches of EVAL_BATCH."""
    model.eval()
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(y), EVAL_BATCH):
        out = model(x[i : i + EVAL_BATCH])  # (b, classes), or (b, T, vocab) for a language model
        yb = y[i : i + EVAL_BATCH]
        loss += F.cross_entropy(out.float().reshape(-1, out.shape[-1]), yb.reshape(-1), reduction="sum")
        correct += (out.argmax(-1) == yb).sum()
    n = max(1, y.numel())  # samples, or predicted tokens
    return loss.item() / n, correct.item() / n


class _Progress:
    """Rich bar on a terminal, one plain line per epoch otherwise, nothing when disabled."""

    def __init__(self, mode: bool | None, total: int, label: str) -> None:
        tty = sys.stdout.isatty()
        self.rich = None
        self.plain = bool(mode) and not tty
        if (mode is None or mode) and tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.rich = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )  # fmt: skip
            self.rich.start()
            self.task = self.rich.add_task(label, total=total, info="")
        self.total = total

    def epoch(self, m: EpochMetrics) -> None:
        info = f"loss {m.train_loss:.4f}  test_acc {m.test_acc:.4f}"
        if self.rich is not None:
            self.rich.update(self.task, advance=1, info=info)
        elif self.plain:
            print(
                f"epoch {m.epoch}/{self.total}  train_loss {m.train_loss:.4f}  train_acc {m.train_acc:.4f}  "
                f"test_loss {m.test_loss:.4f}  test_acc {m.test_acc:.4f}  {m.samples_per_s:.0f} samples/s",
                flush=True,
            )

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(config: RunConfig, *, progress: bool | None = None) -> RunResult:
    """Train `config` and return its RunResult (see the module docstring for the run folder).

    progress: None → rich bar only on a terminal; True → rich bar on a terminal, plain lines otherwise;
    False → silent. Raises UsageError before writing anything when the config cannot run.
    """
    with _threads(config.threads):
        return _run(config, progress)


def _run(config: RunConfig, progress: bool | None) -> RunResult:
    data, device = validate_config(config)
    seed_everything(config.seed)
    model = build_model(config, data.meta.input_shape, data.meta.num_classes).to(device)
    opt = _optimizer(config, model)
    params = [p for p in model.parameters() if p.requires_grad]
    x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)
    x_te, y_te = data.x_test.to(device), data.y_test.to(device)
    n, bs = len(y_tr), config.batch_size
    steps_per_epoch = math.ceil(n / bs)
    sched = _scheduler(config, opt, config.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(config.seed)
    batch_sizes = torch.tensor([min(bs, n - i * bs) for i in range(steps_per_epoch)], device=device)

    run_id = config.run_id()
    out = Path(config.out_dir) if config.out_dir else Path("runs") / run_id
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl", "result.json", "checkpoint.pt"):
        (out / stale).unlink(missing_ok=True)
    for tmp in out.glob(".*.tmp.*"):  # half-written files of a run killed while writing (atomic.atomic_path)
        tmp.unlink(missing_ok=True)
    header = {
        "run_id": run_id,
        "config": config.model_dump(),
        "device": str(device),
        "dataset": data.meta.to_dict(),
        "num_params": num_params(model),
        "versions": versions(),
    }
    _write_json(out / "config.json", header)

    history: list[EpochMetrics] = []
    status, diverged_step = "done", None
    bar = _Progress(progress, config.epochs, f"{run_id}")
    t_start = time.perf_counter()
    try:
        with open(out / "metrics.jsonl", "a") as log:
            for epoch in range(1, config.epochs + 1):
                t0 = time.perf_counter()
                model.train()
                perm = torch.randperm(n, generator=gen).to(device)
                losses, preds, gnorms = [], [], []  # per step: loss (0-d), predictions (b,), grad norm (0-d)
                for i in range(steps_per_epoch):
                    idx = perm[i * bs : (i + 1) * bs]
                    xb, yb = x_tr[idx], y_tr[idx]  # (b, ...), (b,)
                    logits = model(xb)  # (b, classes), or (b, T, vocab) for a language model
                    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    gnorms.append(_grad_norm(params))
                    opt.step()
                    if sched is not None:
                        sched.step()
                    losses.append(loss.detach())
                    preds.append(logits.detach().argmax(-1))
                step_losses = torch.stack(losses)  # (steps,)
                step_gnorms = torch.stack(gnorms)  # (steps,)
                bad = ~torch.isfinite(step_losses)
                t_train = time.perf_counter() - t0
                limit = EXPLODE_FACTOR * math.log(max(logits.shape[-1], 2))
                if not bad.any() and (step_losses * batch_sizes).sum().item() / n > limit:
                    bad = step_losses > limit  # exploded: the first step above the limit is where it began
                if bad.any():
                    status = "diverged"
                    diverged_step = (epoch - 1) * steps_per_epoch + int(bad.nonzero()[0]) + 1
                    break
                test_loss, test_acc = evaluate(model, x_te, y_te)
                if not math.isfinite(test_loss):
                    status, diverged_step = "diverged", epoch * steps_per_epoch
                    break
                m = EpochMetrics(
                    epoch=epoch,
                    train_loss=(step_losses * batch_sizes).sum().item() / n,
                    train_acc=(torch.cat(preds) == y_tr[perm]).sum().item() / y_tr.numel(),
                    test_loss=test_loss,
                    test_acc=test_acc,
                    lr=opt.param_groups[0]["lr"],
                    wall_s=time.perf_counter() - t0,
                    samples_per_s=n / max(t_train, 1e-9),
                    grad_norm_mean=step_gnorms.mean().item(),
                    grad_norm_max=step_gnorms.max().item(),
                )
                history.append(m)
                log.write(m.model_dump_json() + "\n")
                log.flush()
                bar.epoch(m)
    finally:
        bar.close()
    wall = time.perf_counter() - t_start
    if config.checkpoint:
        _save_checkpoint(out / "checkpoint.pt", model)
    last = history[-1] if history and status == "done" else None
    result = RunResult(
        run_id=run_id,
        config=config.model_dump(),
        status=status,  # type: ignore[arg-type]
        test_acc=last.test_acc if last else None,
        test_loss=last.test_loss if last else None,
        train_acc=last.train_acc if last else None,
        train_loss=last.train_loss if last else None,
        history=history,
        diverged_step=diverged_step,
        wall_s=wall,
        samples_per_s=(sum(h.samples_per_s for h in history) / len(history)) if history else None,
        num_params=num_params(model),
        out_dir=str(out),
        versions=versions(),
    )
    _write_json(out / "result.json", result.model_dump(mode="json"))
    return result


@dataclass
class LoadedRun:
    """A finished run brought back: the model in eval mode with its trained weights, its data and result."""

    config: RunConfig
    model: nn.Module
    data: Dataset
    result: RunResult | None
    run_dir: Path


def load_run(run_dir: str | os.PathLike[str], *, device: str = "cpu") -> LoadedRun:
    """Rebuild a run's model from config.json and checkpoint.pt (torch.load(weights_only=True))."""
    run_dir = Path(run_dir)
    cfg_path, ckpt = run_dir / "config.json", run_dir / "checkpoint.pt"
    if not cfg_path.is_file():
        raise UsageError(f"{run_dir} is not a run folder (no config.json); pass a folder under runs/")
    if not ckpt.is_file():
        raise UsageError(f"{run_dir} has no checkpoint.pt (trained with checkpoint off, or unfinished)")
    try:
        config = RunConfig(**json.loads(cfg_path.read_text())["config"])
    except (ValueError, KeyError) as e:
        raise UsageError(f"{cfg_path} is unreadable ({e}); rerun the training") from e
    data = dataset_for(config)
    model = build_model(config, data.meta.input_shape, data.meta.num_classes)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # refused by the safe unpickler, truncated, or weights of another model
        raise UsageError(  # torch's own text suggests weights_only=False, the unsafe way: not repeated here
            f"{ckpt} is not a lateralnorm checkpoint of this run, or it was damaged or tampered with "
            f"({type(e).__name__}); retrain the run rather than loading it unsafely"
        ) from None
    model.to(resolve_device(device)).eval()
    res_path = run_dir / "result.json"
    result = RunResult.model_validate_json(res_path.read_text()) if res_path.is_file() else None
    return LoadedRun(config=config, model=model, data=data, result=result, run_dir=run_dir)
