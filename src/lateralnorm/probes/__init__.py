"""Probes: turn the lateral-inhibition hypotheses into numbers, on a bare norm layer or on a trained model.

    from lateralnorm.probes import run_probes, probe_bare
    run_probes(["crosstalk", "sparsity"], "runs/mlp-ln-only-s0-1a2b3c4d")   # {name: JSON-able result}
    probe_bare("crosstalk", "gelu>ln", width=32)

Probes of trained models load the run (`lateralnorm.train.load_run`), capture every module with "norm" in its
name with forward hooks on up to `SAMPLES` test inputs, and probe each layer on what it saw. Capacity trains
networks, so it is its own API (`lateralnorm.probes.capacity`) and command (`lateralnorm capacity`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from lateralnorm.errors import UsageError, did_you_mean
from lateralnorm.probes.capacity import capacity, memorize
from lateralnorm.probes.crosstalk import crosstalk, crosstalk_curve
from lateralnorm.probes.folds import folds_bare, folds_model, linear_regions_2d
from lateralnorm.probes.invariance import invariance, invariance_bare
from lateralnorm.probes.layers import CapturedLayer, bare_layer, capture_norm_layers
from lateralnorm.probes.sparsity import sparsity, sparsity_bare

SAMPLES = 256  # test inputs a model probe looks at


@dataclass
class ProbeContext:
    """A trained model, the test inputs to probe it on, and (captured on first use) its norm layers."""

    model: nn.Module
    inputs: torch.Tensor  # (B, *input_shape)
    labels: torch.Tensor | None = None  # (B,)
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def layers(self) -> list[CapturedLayer]:
        return capture_norm_layers(self.model, self.inputs)

    @classmethod
    def from_run(cls, run_dir: str, samples: int = SAMPLES) -> ProbeContext:
        from lateralnorm.train import load_run

        run = load_run(run_dir)
        x, y = run.data.x_test[:samples], run.data.y_test[:samples]
        return cls(run.model.eval(), x, y, {"run_id": run.result.run_id if run.result else None})


def _crosstalk(ctx: ProbeContext) -> dict[str, Any]:
    return crosstalk(ctx.layers)


def _sparsity(ctx: ProbeContext) -> dict[str, Any]:
    return sparsity(ctx.layers)


def _invariance(ctx: ProbeContext) -> dict[str, Any]:
    return invariance(ctx.layers, model=ctx.model, inputs=ctx.inputs, labels=ctx.labels)


def _folds(ctx: ProbeContext) -> dict[str, Any]:
    return folds_model(ctx.model, ctx.inputs)


# name → probe of a trained model (ProbeContext → JSON-able dict)
PROBES: dict[str, Callable[[ProbeContext], dict[str, Any]]] = {
    "crosstalk": _crosstalk,
    "sparsity": _sparsity,
    "invariance": _invariance,
    "folds": _folds,
}

# name → probe of a bare layer ((layer, width) → JSON-able dict)
BARE_PROBES: dict[str, Callable[[nn.Module, int], dict[str, Any]]] = {
    "crosstalk": lambda layer, width: crosstalk_curve(layer),
    "sparsity": sparsity_bare,
    "invariance": invariance_bare,
    "folds": folds_bare,
}


def jsonable(obj: Any) -> Any:
    """Plain JSON: tuples become lists, tensors numbers/lists, NaN and ±inf become None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def check_probe_names(names: list[str]) -> list[str]:
    if not names:
        raise UsageError(f"name at least one probe ({', '.join(PROBES)})")
    for n in names:
        if n not in PROBES:
            hint = " (capacity trains networks: run `lateralnorm capacity`)" if n == "capacity" else ""
            raise UsageError(
                f"unknown probe '{n}'{did_you_mean(n, PROBES)}; known: {', '.join(PROBES)}{hint}"
            )
    return names


def run_probes(names: list[str], run_dir: str, samples: int = SAMPLES) -> dict[str, Any]:
    """Load the run in `run_dir` once and run each named probe: {name: JSON-able result}."""
    check_probe_names(list(names))
    ctx = ProbeContext.from_run(str(run_dir), samples)
    return {name: jsonable(PROBES[name](ctx)) for name in names}


def probe_bare(name: str, spec: str, width: int, seed: int = 0) -> dict[str, Any]:
    """Run one probe on a freshly built layer `create_norm(spec, width)`."""
    check_probe_names([name])
    layer = bare_layer(spec, width, seed)
    return jsonable({"norm": spec, "width": width, **BARE_PROBES[name](layer, width)})


__all__ = [
    "BARE_PROBES", "PROBES", "SAMPLES", "CapturedLayer", "ProbeContext", "bare_layer", "capacity",
    "capture_norm_layers", "check_probe_names", "crosstalk", "crosstalk_curve", "folds_bare", "folds_model",
    "invariance", "invariance_bare", "jsonable", "linear_regions_2d", "memorize", "probe_bare", "run_probes", "sparsity",
    "sparsity_bare",
]  # fmt: skip
