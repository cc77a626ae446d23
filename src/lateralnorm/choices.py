"""The fixed choice lists of a run, in one place (standard library only, so the CLI can build its help
without importing torch). RunConfig's fields are typed by them; the trainer, the spec validator, the CLI's
flags and every "unknown …" message read them through `choices(field)`."""

from __future__ import annotations

from typing import Literal, get_args

Placement = Literal["post", "pre", "only"]  # post: Linear→norm→act, pre: Linear→act→norm, only: Linear→norm
Optimizer = Literal["adamw", "sgd"]
Schedule = Literal["constant", "cosine", "onecycle"]
Device = Literal["auto", "cpu", "cuda"]

CHOICES: dict[str, tuple[str, ...]] = {
    "placement": get_args(Placement),
    "optimizer": get_args(Optimizer),
    "schedule": get_args(Schedule),
    "device": get_args(Device),
}


def choices(field: str) -> tuple[str, ...]:
    """The allowed values of a RunConfig field with a fixed choice list."""
    return CHOICES[field]
