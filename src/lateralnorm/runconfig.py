"""RunConfig and RunResult: the contract between the trainer, the study runner and the probes.

A RunConfig says everything needed to reproduce one training run; its fields mirror the
`lateralnorm train` flags and are the axes a study grid may vary. A RunResult is what one run returns:
plain final metrics beside the per-epoch history, so the store and the statistics never parse logs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lateralnorm.choices import Device, Optimizer, Placement, Schedule, choices  # the one table of choices
from lateralnorm.errors import UsageError, did_you_mean

Status = Literal["pending", "running", "done", "failed", "diverged"]
# upper limits of the sizes a run may ask for: beyond them a typo, not an experiment (checked for the CLI and
# specs alike, since both build a RunConfig); `train.check_memory` also refuses a model that cannot fit
MAX: dict[str, int] = {
    "depth": 256,
    "width": 65_536,
    "samples": 10_000_000,
    "epochs": 100_000,
    "threads": 1024,
}
# fields added after run ids were first published, with their defaults (see RunConfig.key)
ADDED_FIELDS: dict[str, Any] = {"holdout": 0.0, "kappa_decay": None}


class RunConfig(BaseModel):
    """One training run. Unknown keys are errors (a typo must never silently become a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # what to train
    dataset: str = "mnist1d"
    model: str = "mlp"
    norm: str = "ln"  # a norm spec, e.g. "gelu>ln" or "dn:kappa=band:5,alpha=2"
    placement: Placement = "post"  # post: Linear→norm→act, pre: Linear→act→norm, only: Linear→norm
    depth: int = Field(
        2, ge=0, le=MAX["depth"], description="hidden layers (mlp), conv blocks (cnn), stacked cells (rnn)"
    )
    width: int = Field(
        128, ge=1, le=MAX["width"], description="hidden units / channels / recurrent state size"
    )
    activation: str = "relu"
    # data views
    subset: int | None = Field(
        None, ge=1, le=MAX["samples"], description="use only the first N training samples"
    )
    samples: int | None = Field(
        None, ge=1, le=MAX["samples"], description="size of generated data sets (toys, mnist1d)"
    )
    random_labels: bool = False
    data_dir: str | None = None
    holdout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="validation split: hold out this fraction of the training set and "
        "evaluate on it instead of the test set (learning-rate tuning never sees the test set)",
    )
    # optimisation
    seed: int = Field(0, ge=-(2**63), le=2**63 - 1)
    epochs: int = Field(20, ge=0, le=MAX["epochs"])
    batch_size: int = Field(128, ge=1, le=MAX["samples"])
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    optimizer: Optimizer = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    kappa_decay: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="weight decay of the divisive norms' κ parameters (default: weight_decay)",
    )
    schedule: Schedule = "constant"
    # execution
    device: Device = "cpu"
    threads: int | None = Field(None, ge=1, le=MAX["threads"])
    out_dir: str | None = None  # defaults to runs/<run_id>
    checkpoint: bool = True

    @field_validator("optimizer", "schedule", "device", "placement", mode="before")
    @classmethod
    def _known(cls, value: Any, info: Any) -> Any:
        """An unknown name gets the project's message (what was given, the close matches, the list)."""
        known = choices(info.field_name)
        if isinstance(value, str) and value not in known:
            raise ValueError(
                f"unknown {info.field_name} {value!r}{did_you_mean(value, known)} (known: {', '.join(known)})"
            )
        return value

    def key(self) -> dict[str, Any]:
        """The fields that change the result (execution details excluded). Fields added after the first
        release are left out while they keep their default, so existing run ids (and stores) stay valid."""
        key = self.model_dump(exclude={"device", "threads", "out_dir", "checkpoint"})
        for name, default in ADDED_FIELDS.items():
            if key.get(name) == default:
                key.pop(name)
        return key

    def short_hash(self) -> str:
        blob = json.dumps(self.key(), sort_keys=True, default=str).encode()
        return hashlib.sha1(blob).hexdigest()[:8]

    def run_id(self) -> str:
        """Deterministic, readable id: a few key values plus a short config hash."""
        norm = "".join(c if c.isalnum() else "-" for c in self.norm).strip("-")
        return f"{self.model}-{norm}-{self.placement}-s{self.seed}-{self.short_hash()}"


def _param_estimate(config: RunConfig, input_shape: tuple[int, ...]) -> int:
    """An upper-end count of the model's parameters from its sizes alone (nothing is built)."""
    w, d = config.width, max(config.depth, 1)
    n_in = int(math.prod(input_shape))
    per_norm = w * w if "full" in config.norm or "gdn" in config.norm else 4 * w
    if config.model in ("mlp", "linear"):
        return n_in * w + (d - 1) * w * w + 10 * w + d * per_norm + n_in * 10
    if config.model in ("cnn", "cnn1d"):
        return 9 * w * w * d + 9 * w * input_shape[0] + d * per_norm + 10 * w
    if config.model in ("rnn", "gru", "lstm"):
        return 4 * d * (w * w + max(input_shape[-1], w) * w) + d * per_norm + 10 * w
    return 12 * d * w * w + d * per_norm + n_in * w + 10 * w  # transformer


def check_memory(config: RunConfig, input_shape: tuple[int, ...]) -> None:
    """(For the trainer and the spec check alike; nothing is built.) UsageError when the model's weights, gradients and optimizer state alone cannot fit in memory."""
    need = _param_estimate(config, input_shape) * 4 * 4  # float32 × (weights, grads, two Adam moments)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return
    if need > 0.8 * have:
        raise UsageError(
            f"width {config.width} × depth {config.depth} needs about {need / 2**30:.1f} GiB for the {config.model}'s "
            f"weights and optimizer state alone, more than this machine's {have / 2**30:.1f} GiB: choose a smaller width or depth"
        )


class EpochMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    wall_s: float
    samples_per_s: float
    # gradient norm (L2 over all parameters, before the optimizer step) over the epoch's steps
    grad_norm_mean: float | None = None
    grad_norm_max: float | None = None


class RunResult(BaseModel):
    """What one run returns. `status` is done or diverged (failed runs raise; the executor records them)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    config: dict[str, Any]
    status: Status
    test_acc: float | None = None
    test_loss: float | None = None
    train_acc: float | None = None
    train_loss: float | None = None
    history: list[EpochMetrics] = Field(default_factory=list)
    diverged_step: int | None = None
    wall_s: float = 0.0
    samples_per_s: float | None = None
    num_params: int | None = None
    out_dir: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    probes: dict[str, Any] = Field(default_factory=dict)  # probe name -> JSON-able result
