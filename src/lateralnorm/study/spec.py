"""Study specs: a TOML file that names a grid of training runs, validated before anything is written.

    name = "q1"                                  # a safe folder name: runs/q1
    seeds = [0, 1, 2]
    baseline = { norm = "ln", placement = "post" }
    probes = ["sparsity"]                        # optional, run after each training run
    [base]                                       # RunConfig fields shared by every run
    dataset = "mnist1d"
    epochs = 30
    [grid]                                       # RunConfig fields to vary: the cells are the product
    norm = ["ln", "relu>ln", "none"]
    placement = ["post", "pre"]
    [variants.quick]                             # overrides chosen with --variant quick
    epochs = 5
    seeds = [0, 1]

Beyond the plain grid:

    exclude = [{ norm = "none", placement = "pre" }]     # drop every cell that matches all these values
    include = [{ norm = "ln", placement = "only" }]      # add cells (a value for every grid axis)
    compare_within = ["batch_size"]                      # compare each cell with the baseline that has its
    baseline = { norm = "bn" }                           #   batch size: the baseline names the other axes
    [tune]                                               # learning rate per cell, chosen on a validation
    lr = [1e-3, 3e-3, 1e-2]                              #   split carved from the training set (never the
    seeds = [1000]                                       #   test set); see lateralnorm.study.tuning
    holdout = 0.1
    [adaptive]                                           # seeds until resolved; see lateralnorm.study.adaptive
    batch = 3                                            #   seeds added per look to unresolved cells
    max_seeds = 15                                       #   cap per cell
    min_effect = 0.005                                   #   smallest effect of interest (metric units)

A variant may set `seeds`, `probes`, `include`, `exclude`, `compare_within`, `baseline`, `description`, `tune`,
`adaptive` (`false` drops either), a `[variants.x.base]` or
`[variants.x.grid]` table, or any RunConfig field directly: a field that is a grid axis replaces that axis (a
scalar becomes a one-value axis), any other field overrides `base`.

Every error is a `UsageError` of one line, `file:line: key: what is wrong; what to do`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from lateralnorm.errors import UsageError, did_you_mean
from lateralnorm.runconfig import RunConfig

RUN_FIELDS: tuple[str, ...] = tuple(RunConfig.model_fields)
# fields a study sets itself: one seed per run from `seeds`, one folder per run under the study folder
RESERVED_FIELDS = {"seed": "list seeds at the top level: seeds = [0, 1, 2]", "out_dir": "the study sets it"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REPLACED_BY_VARIANT = ("seeds", "probes", "include", "exclude", "compare_within", "baseline", "tune", "adaptive",
                       "description", "metric")  # fmt: skip
VARIANT_KEYS = ("base", "grid", *REPLACED_BY_VARIANT)


METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")


class TuneSpec(BaseModel):
    """Learning-rate grid searched per cell on a validation split of the training set."""

    model_config = ConfigDict(extra="forbid")

    lr: list[float] = Field(min_length=2)
    seeds: list[StrictInt] = Field(default_factory=lambda: [1000])
    holdout: float = Field(0.1, gt=0, lt=0.5)


class AdaptiveSpec(BaseModel):
    """Seeds added in batches to the cells whose comparison with their baseline is unresolved."""

    model_config = ConfigDict(extra="forbid")

    batch: StrictInt = Field(2, ge=1)
    max_seeds: StrictInt = Field(ge=2)
    min_effect: float = Field(
        gt=0, description="smallest effect of interest, in metric units (0.005 = 0.5 pts)"
    )
    alpha: float = Field(0.05, gt=0, lt=0.5)


class StudySpec(BaseModel):
    """A validated study spec. `grid` keeps the file's axis order; `variant` names the overrides applied."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    description: StrictStr = ""
    seeds: list[StrictInt] = Field(default_factory=lambda: [0])
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    probes: list[StrictStr] = Field(default_factory=list)
    include: list[dict[str, Any]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    compare_within: list[StrictStr] = Field(default_factory=list)
    tune: TuneSpec | None = None
    adaptive: AdaptiveSpec | None = None
    metric: StrictStr = (
        "test_acc"  # the final metric judged (test_loss for a language model: lower is better)
    )
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    variant: StrictStr | None = None  # set by load_spec, not read from the file

    def axes(self) -> list[str]:
        return list(self.grid)


class SpecError(UsageError):
    """A spec error that knows its key path; `load_spec` adds the file and line."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        self.path = tuple(path)
        self.message = message
        super().__init__(f"{_dotted(self.path)}: {message}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top>"


# --------------------------------------------------------------------------------------------- locate
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")
_KEYLINE = re.compile(r"^\s*([A-Za-z0-9_\"'-][A-Za-z0-9_.\"' -]*?)\s*=")


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def locate(text: str, path: tuple[str | int, ...]) -> int | None:
    """1-based line of the TOML key or table that best matches `path` (the longest matching prefix)."""
    keys = tuple(p for p in path if isinstance(p, str))
    best, best_len, table = None, 0, ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            full = table
        else:
            key = _KEYLINE.match(line)
            if not key:
                continue
            full = table + _split_key(key.group(1))
        if full and keys[: len(full)] == full and len(full) > best_len:
            best, best_len = number, len(full)
    return best


# ------------------------------------------------------------------------------------------- validate
def _check_fields(keys: dict[str, Any], where: tuple[str, ...]) -> None:
    for key in keys:
        if key in RESERVED_FIELDS:
            raise SpecError((*where, key), f"'{key}' cannot be set here: {RESERVED_FIELDS[key]}")
        if key not in RUN_FIELDS:
            hint = (
                did_you_mean(key, RUN_FIELDS) or " (a RunConfig field: lateralnorm train --help lists them)"
            )
            raise SpecError((*where, key), f"unknown run setting '{key}'{hint}")


def _run_config(fields: dict[str, Any], where_of: dict[str, tuple[str | int, ...]]) -> RunConfig:
    """RunConfig(**fields), with a pydantic error turned into a SpecError at the offending key."""
    try:
        return RunConfig(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else ""
        raise SpecError(where_of.get(field, (field,)), _said(err)) from None


def _said(err: dict[str, Any]) -> str:
    """A pydantic error as one phrase: our validators' messages name the value already."""
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    return f"{msg} (got {_short(err.get('input'))})"


def _runnable_problem(config: RunConfig) -> str | None:
    """Why `config` cannot run (unknown dataset, model, activation, norm spec, optimizer, schedule, a norm
    that does not fit the width), else None. Names only: no data is loaded, nothing is built but a norm."""
    from lateralnorm.data import check_dataset_name
    from lateralnorm.models import check_model
    from lateralnorm.runconfig import check_memory

    try:  # (optimizer, schedule, device and placement were checked by RunConfig itself)
        check_dataset_name(config.dataset)
        check_model(config)
        check_memory(config, (40,) if config.dataset == "mnist1d" else (1, 28, 28))
    except UsageError as e:
        return str(e)
    except Exception as e:  # a spec the norm registry chokes on: say so rather than crash
        return f"cannot build this run: {type(e).__name__}: {e}"
    return None


def _matches(cell: dict[str, Any], partial: dict[str, Any]) -> bool:
    return all(cell.get(k) == v for k, v in partial.items())


def grid_cells(
    spec: StudySpec, with_include: bool = True
) -> list[tuple[dict[str, Any], tuple[str | int, ...]]]:
    """Every cell (axis -> value) with where it comes from: the product of the axes in file order, less the
    cells an `exclude` entry matches, then (with_include) the `include` cells in file order."""
    import itertools

    axes = list(spec.grid)
    out: list[tuple[dict[str, Any], tuple[str | int, ...]]] = []
    for values in itertools.product(*(spec.grid[a] for a in axes)):
        cell = dict(zip(axes, values))
        if not any(_matches(cell, e) for e in spec.exclude):
            out.append((cell, ("grid",)))
    for i, extra in enumerate(spec.include if with_include else []):
        out.append(({a: extra[a] for a in axes}, ("include", i)))
    return out


def _check_cells(spec: StudySpec) -> None:
    """Every cell must be runnable: blame the grid value (or base key, or include entry) the error names."""
    axes = list(spec.grid)
    for cell, origin in grid_cells(spec):
        problem = _runnable_problem(RunConfig(**spec.base, **cell))
        if problem is None:
            continue
        if origin[0] == "include":
            raise SpecError(origin, problem)
        combo = [(spec.grid[a].index(cell[a]), cell[a]) for a in axes]
        grid_hits = [(("grid", a, i), v) for a, (i, v) in zip(axes, combo) if isinstance(v, str)]
        base_hits = [(("base", k), v) for k, v in spec.base.items() if isinstance(v, str)]
        for quoted in (True, False):  # 'lnn' (quoted, exact) before lnn (a substring)
            for where, v in grid_hits + base_hits:
                if v and (repr(v) if quoted else v) in problem:
                    raise SpecError(where, problem)
        for a, (i, _) in zip(axes, combo):
            if a in problem:
                raise SpecError(("grid", a, i), problem)
        label = ", ".join(f"{a}={v}" for a, v in cell.items())
        raise SpecError(("grid",), f"cell {label}: {problem}")


def _check_include_exclude(spec: StudySpec) -> None:
    axes = list(spec.grid)
    for i, partial in enumerate(spec.exclude):
        if not partial:
            raise SpecError(("exclude", i), "is empty: name the axis values of the cells to drop")
        for key, value in partial.items():
            if key not in spec.grid:
                raise SpecError(("exclude", i, key), f"'{key}' is not a grid axis{did_you_mean(key, axes)}")
            if value not in spec.grid[key]:
                raise SpecError(
                    ("exclude", i, key), f"{value!r} is not among grid.{key} = {spec.grid[key]!r}"
                )
    product = [c for c, _ in grid_cells(spec, with_include=False)]
    seen: list[dict[str, Any]] = list(product)
    for i, extra in enumerate(spec.include):
        missing = [a for a in axes if a not in extra]
        unknown = [k for k in extra if k not in spec.grid]
        if unknown:
            k = unknown[0]
            raise SpecError(
                ("include", i, k),
                f"'{k}' is not a grid axis{did_you_mean(k, axes)} (axes: {', '.join(axes)})",
            )
        if missing:
            raise SpecError(
                ("include", i), f"must give a value for every grid axis; missing: {', '.join(missing)}"
            )
        for key, value in extra.items():
            _run_config({**spec.base, key: value}, {key: ("include", i, key)})
        if extra in seen:
            raise SpecError(("include", i), f"{extra!r} is already a cell of the study: list each cell once")
        seen.append(dict(extra))


def _check_comparisons(spec: StudySpec) -> None:
    """baseline names every grid axis except the compare_within ones; each stratum has its baseline cell."""
    within = spec.compare_within
    for i, axis in enumerate(within):
        if axis not in spec.grid:
            raise SpecError(
                ("compare_within", i), f"'{axis}' is not a grid axis{did_you_mean(axis, spec.grid)}"
            )
    if spec.baseline is None:
        if within:
            raise SpecError(("compare_within",), "needs a baseline = { ... } to compare with")
        if spec.adaptive is not None:
            raise SpecError(
                ("adaptive",),
                "adds seeds until each comparison with the baseline is resolved: set baseline = { ... }",
            )
        return
    for key, value in spec.baseline.items():
        if key in within:
            raise SpecError(
                ("baseline", key),
                f"'{key}' is a compare_within axis: every value of it has its own baseline; remove it here",
            )
        if key not in spec.grid:
            raise SpecError(
                ("baseline", key),
                f"'{key}' is not a grid axis{did_you_mean(key, spec.grid)} (axes: {', '.join(spec.grid)})",
            )
        if value not in spec.grid[key]:
            raise SpecError(("baseline", key), f"{value!r} is not among grid.{key} = {spec.grid[key]!r}")
    missing = [a for a in spec.grid if a not in spec.baseline and a not in within]
    if missing:
        raise SpecError(
            ("baseline",), f"must name a value for every grid axis; missing: {', '.join(missing)}"
        )
    cells = [c for c, _ in grid_cells(spec)]
    for cell in cells:
        base = {**cell, **spec.baseline}
        if base not in cells:
            label = ", ".join(f"{a}={cell[a]}" for a in within)
            raise SpecError(
                ("baseline",),
                f"the baseline cell for {label or 'the study'} is excluded or missing: keep it in the grid",
            )


def _check_tune(spec: StudySpec) -> None:
    if spec.tune is None:
        return
    if "lr" in spec.grid:
        raise SpecError(("tune", "lr"), "lr is a grid axis: either tune it or list it under [grid], not both")
    for i, lr in enumerate(spec.tune.lr):
        _run_config({**spec.base, "lr": lr, "holdout": spec.tune.holdout}, {"lr": ("tune", "lr", i)})
    if len(set(spec.tune.lr)) != len(spec.tune.lr):
        raise SpecError(("tune", "lr"), f"has duplicates {spec.tune.lr}: list each rate once")
    if set(spec.tune.seeds) & set(spec.seeds):
        raise SpecError(
            ("tune", "seeds"), "shares seeds with the study's seeds: tuning seeds must differ (e.g. [1000])"
        )


def _known_probes() -> tuple[str, ...] | None:
    try:
        from lateralnorm.probes import PROBES
    except Exception:
        return None
    return tuple(PROBES)


def _apply_variant(raw: dict[str, Any], variant: str) -> dict[str, Any]:
    variants = raw.get("variants") or {}
    if variant not in variants:
        known = ", ".join(sorted(variants)) or "none"
        raise SpecError(
            ("variants",), f"no variant '{variant}'{did_you_mean(variant, variants)} (this spec has: {known})"
        )
    out = {k: v for k, v in raw.items()}
    out["base"] = dict(raw.get("base") or {})
    out["grid"] = dict(raw.get("grid") or {})
    where = ("variants", variant)
    for key, value in variants[variant].items():
        if key in ("tune", "adaptive") and value is False:
            out[key] = None  # `tune = false` in a variant: this variant does without it
        elif key in REPLACED_BY_VARIANT:
            out[key] = value
        elif key in ("base", "grid"):
            if not isinstance(value, dict):
                raise SpecError((*where, key), "must be a table")
            _check_fields(value, (*where, key))
            out[key].update(value)
        elif key in RUN_FIELDS and key not in RESERVED_FIELDS:
            if key in out["grid"]:
                out["grid"][key] = value if isinstance(value, list) else [value]
            else:
                out["base"][key] = value
        else:
            _check_fields({key: value}, where)  # raises with a suggestion among run settings
    return out


def validate_spec(raw: dict[str, Any], variant: str | None = None) -> StudySpec:
    """Check a parsed spec and apply `variant`. Raises SpecError (with the key path) on any problem."""
    try:
        spec = StudySpec(**raw)
    except ValidationError as e:
        errors = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")  # typos first
        err = errors[0]
        loc = tuple(err.get("loc", ()))
        if err["type"] == "missing":
            raise SpecError(loc, 'is required (e.g. name = "q1", [grid] norm = ["ln"])') from None
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            allowed = [f for f in StudySpec.model_fields if f != "variant"]
            hint = did_you_mean(key, allowed + list(RUN_FIELDS))
            if key in RUN_FIELDS:
                hint = f"; run settings go under [base] or [grid]: [base] {key} = ..."
            raise SpecError(loc, f"unknown key '{key}'{hint}") from None
        raise SpecError(loc, _said(err)) from None
    if spec.variant is not None:
        raise SpecError(("variant",), "unknown key 'variant'; choose overrides with --variant NAME")
    for name, overrides in spec.variants.items():
        for key in overrides:
            if key not in VARIANT_KEYS and (key not in RUN_FIELDS or key in RESERVED_FIELDS):
                _check_fields({key: None}, ("variants", name))
    _check_fields(spec.base, ("base",))
    _check_fields(spec.grid, ("grid",))
    if variant is not None:
        spec = validate_spec(_apply_variant(spec.model_dump(exclude={"variant"}), variant))
        return spec.model_copy(update={"variant": variant})

    if not SAFE_NAME.match(spec.name) or ".." in spec.name:
        raise SpecError(
            ("name",),
            f"'{spec.name}' is not a safe folder name: use letters, digits, '_', '-', '.' (no '/'), "
            "at most 64 characters; pass --out to choose another folder",
        )
    if not spec.seeds:
        raise SpecError(("seeds",), "is empty: list at least one seed, e.g. seeds = [0]")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SpecError(("seeds",), f"has duplicates {spec.seeds}: list each seed once")
    if not spec.grid:
        raise SpecError(("grid",), 'is empty: add at least one axis under [grid], e.g. norm = ["ln", "none"]')
    for axis, values in spec.grid.items():
        if axis in spec.base:
            raise SpecError(("grid", axis), f"duplicate axis: '{axis}' is set in both [base] and [grid]")
        if not values:
            raise SpecError(("grid", axis), "is an empty list: give at least one value or remove the axis")
        seen: list[Any] = []
        for v in values:
            if v in seen:
                raise SpecError(("grid", axis), f"lists {v!r} twice: list each value once")
            seen.append(v)

    _run_config(spec.base, {k: ("base", k) for k in spec.base})
    for axis, values in spec.grid.items():
        for i, v in enumerate(values):
            where = {axis: ("grid", axis, i)} | {k: ("base", k) for k in spec.base}
            _run_config({**spec.base, axis: v}, where)

    _check_include_exclude(spec)
    _check_cells(spec)
    _check_comparisons(spec)
    _check_tune(spec)
    if spec.metric not in METRICS:
        raise SpecError(
            ("metric",),
            f"unknown metric {spec.metric!r}{did_you_mean(spec.metric, METRICS)} (one of {', '.join(METRICS)})",
        )
    if spec.adaptive is not None and spec.adaptive.max_seeds < len(spec.seeds):
        raise SpecError(("adaptive", "max_seeds"), f"is below the {len(spec.seeds)} seeds listed in seeds")

    if spec.probes and not RunConfig(**spec.base).checkpoint:
        raise SpecError(("base", "checkpoint"), "probes load each run's checkpoint: set checkpoint = true")
    known = _known_probes()
    for i, probe in enumerate(spec.probes):
        if known is not None and probe not in known:
            hint = did_you_mean(probe, known) or f" (known: {', '.join(known)})"
            raise SpecError(("probes", i), f"unknown probe '{probe}'{hint}")
    return spec


def load_spec(path: str | Path, variant: str | None = None) -> StudySpec:
    """Read and validate a spec file. Errors are one-line UsageErrors naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"spec file {path} not found: give the path of a .toml study spec") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read spec file {path}: {e}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: invalid TOML: {e}") from None
    try:
        return validate_spec(raw, variant)
    except SpecError as e:
        line = locate(text, e.path)
        where = f"{path}:{line}" if line else str(path)
        message = " ".join(e.message.split())  # one line, whatever the cause said
        raise UsageError(f"{where}: {_dotted(e.path)}: {message}") from None
