"""Declared options of a norm: type, default and allowed range, so every bad value gets the same clear error."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lateralnorm.errors import UsageError


@dataclass(frozen=True)
class Opt:
    """One option of a norm. `kind` is bool, int, float or str; ranges are inclusive unless `open_lo`."""

    kind: type
    default: Any
    doc: str = ""
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    choices: tuple[str, ...] | Mapping[str, Any] | None = (
        None  # a live mapping (a registry) is read at each check
    )
    nullable: bool = False

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        lo = "" if self.lo is None else (f"> {self.lo:g}" if self.open_lo else f">= {self.lo:g}")
        hi = "" if self.hi is None else f"<= {self.hi:g}"
        rng = " and ".join(p for p in (lo, hi) if p)
        return f"{'an integer' if self.kind is int else 'a number' if self.kind is float else 'text'}" + (
            f" {rng}" if rng else ""
        )

    def parse(self, text: str) -> Any:
        """Spec-string value → typed value (not yet range checked)."""
        t = text.strip()
        if self.nullable and t.lower() in ("none", "null"):
            return None
        if self.kind is bool:
            if t.lower() in ("true", "1", "yes", "on"):
                return True
            if t.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(t)
        if self.kind is int:
            return int(t)
        if self.kind is float:
            return float(t)
        return t

    def check(self, value: Any) -> Any:
        """Typed value → validated value; raises ValueError on a bad one."""
        if value is None and self.nullable:
            return None
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(value)
            if self.kind is int and float(value) != int(value):
                raise ValueError(value)
            value = self.kind(value)
            if not math.isfinite(value):
                raise ValueError(value)
            if self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo):
                raise ValueError(value)
            if self.hi is not None and value > self.hi:
                raise ValueError(value)
            return value
        if not isinstance(value, str):
            raise ValueError(value)
        if self.choices and value.split(":")[0] not in self.choices:
            raise ValueError(value)
        return value


def resolve_options(norm: str, declared: dict[str, Opt], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `given`, every value checked; errors name the key, the value and the range."""
    from lateralnorm.errors import did_you_mean

    out = {k: o.default for k, o in declared.items()}
    for key, value in given.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise UsageError(
                f"norm '{norm}' has no option '{key}'{did_you_mean(key, declared)} (its options: {known})"
            )
        opt = declared[key]
        try:
            typed = opt.parse(value) if isinstance(value, str) and opt.kind is not str else value
            out[key] = opt.check(typed)
        except (ValueError, TypeError):
            raise UsageError(
                f"norm '{norm}': option '{key}'={value!r} is not allowed; it must be {opt.allowed()}"
            ) from None
    return out
