"""The registry and the spec grammar: make any norm by name.

spec   := part ( ">" part )*              applied left to right: "gelu>ln" is GELU then LayerNorm
part   := name [ ":" key=value ( "," key=value )* ]     e.g. "dn:kappa=band:5,alpha=2"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lateralnorm.errors import UsageError, did_you_mean
from lateralnorm.norms.activations import ACTIVATIONS, make_activation
from lateralnorm.norms.base import LAYOUTS, Norm


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., nn.Module]
    description: str
    kind: str  # "norm" or "activation"


_REGISTRY: dict[str, Entry] = {}


def register_norm(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    description: str | None = None,
    kind: str = "norm",
) -> Any:
    """Register `factory(num_features, layout=..., **options) -> nn.Module` under `name`.
    Usable as a decorator (`@register_norm("mynorm")`). A registered norm gets the generated tests."""

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"norm names are letters, digits and '_'; got {name!r}")
        doc = (
            description
            or getattr(f, "summary", None)
            or ((f.__doc__ or name).strip().splitlines() or [name])[0]
        )
        _REGISTRY[name] = Entry(name, f, doc, kind)
        return f

    return add(factory) if factory is not None else add


def list_norms(kind: str | None = None) -> dict[str, str]:
    """name → one-line description, norms first then activations."""
    entries = sorted(_REGISTRY.values(), key=lambda e: (e.kind != "norm", e.name))
    return {e.name: e.description for e in entries if kind is None or e.kind == kind}


def options_of(name: str) -> dict[str, Any]:
    """Declared options of a registered norm (for `lateralnorm norms --options`)."""
    f = _lookup(name).factory
    return dict(getattr(f, "OPTIONS", {}))


def _lookup(name: str) -> Entry:
    if name not in _REGISTRY:
        raise UsageError(
            f"unknown norm '{name}'{did_you_mean(name, _REGISTRY)} (lateralnorm norms lists all)"
        )
    return _REGISTRY[name]


def parse_spec(spec: str) -> list[tuple[str, dict[str, str]]]:
    """'gelu>dn:alpha=2,kappa=band:3' → [('gelu', {}), ('dn', {'alpha': '2', 'kappa': 'band:3'})]."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"a norm spec must be a non-empty string like 'ln' or 'gelu>ln'; got {spec!r}")
    parts = []
    for raw in spec.split(">"):
        raw = raw.strip()
        if not raw:
            raise UsageError(
                f"norm spec {spec!r} has an empty part; write parts joined by '>' like 'gelu>ln'"
            )
        name, _, rest = raw.partition(":")
        opts: dict[str, str] = {}
        if rest.strip():
            for item in rest.split(","):
                key, eq, value = item.partition("=")
                key = key.strip()
                if not eq or not key or not value.strip():
                    raise UsageError(
                        f"norm spec {spec!r}: option {item.strip()!r} must look like key=value, e.g. 'ln:eps=1e-6'"
                    )
                if key in opts:
                    raise UsageError(f"norm spec {spec!r}: option '{key}' is given twice")
                opts[key] = value.strip()
        parts.append((name.strip(), opts))
    return parts


class NormChain(nn.Sequential):
    """Parts of a composed spec applied in order ("gelu>ln": GELU, then LayerNorm)."""

    def __init__(self, spec: str, *parts: nn.Module) -> None:
        super().__init__(*parts)
        self.spec = spec


def create_norm(
    spec: str,
    num_features: int,
    layout: str = "last",
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build the norm a spec names, for `num_features` units with the given layout.

    `overrides` (e.g. eps=1e-6, affine=False) go to every part that declares the option; a key that no part
    takes is an error. `dtype` and `device` go to the parameters' creation, as with torch's own modules (so
    float64 constants such as ε or 1/N are exact, not rounded through float32; nothing process-wide changes);
    a registered factory that is not a `Norm` gets its module moved afterwards.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"layout must be 'last' or 'channels_first'; got {layout!r}")
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise UsageError(f"num_features must be a positive integer; got {num_features!r}")
    parsed = parse_spec(spec)
    entries = [_lookup(name) for name, _ in parsed]
    used: set[str] = set()
    modules = []
    for entry, (_, opts) in zip(entries, parsed):
        declared = getattr(entry.factory, "OPTIONS", None)
        extra = {k: v for k, v in overrides.items() if declared is None or k in declared}
        used |= set(extra)
        if isinstance(entry.factory, type) and issubclass(entry.factory, Norm):
            modules.append(
                entry.factory(num_features, layout=layout, device=device, dtype=dtype, **{**opts, **extra})
            )
        else:
            made = entry.factory(num_features, layout=layout, **{**opts, **extra})
            modules.append(
                made.to(device=device, dtype=dtype) if device is not None or dtype is not None else made
            )
    unused = set(overrides) - used
    if unused:
        raise UsageError(f"no part of norm spec {spec!r} takes option(s) {', '.join(sorted(unused))}")
    return modules[0] if len(modules) == 1 else NormChain(spec, *modules)


def _register_builtins() -> None:
    from lateralnorm.norms import divisive, standard

    for cls in (
        standard.Identity, standard.LayerNorm, standard.RMSNorm, standard.GroupedLayerNorm, standard.BatchNorm,
        standard.GroupNorm, standard.LayerNormCHW, standard.LocalResponseNorm, divisive.GDN, standard.Softmax,
        standard.DyT, standard.Tanh, divisive.DivisiveNorm,
    ):  # fmt: skip
        register_norm(cls.name, cls)
    for name, (_, formula) in ACTIVATIONS.items():
        register_norm(name, make_activation(name), description=f"activation: {formula}", kind="activation")


_register_builtins()
assert all(isinstance(e.factory, type) and issubclass(e.factory, Norm) for e in _REGISTRY.values())
