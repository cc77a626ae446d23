"""Study specs: valid specs load, every kind of mistake is one line naming file, line and key."""

from __future__ import annotations

import math
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lateralnorm.cli import main
from lateralnorm.errors import UsageError
from lateralnorm.study.plan import plan
from lateralnorm.study.spec import RUN_FIELDS, StudySpec, load_spec, locate

EXAMPLE = Path(__file__).resolve().parent.parent / "studies" / "example_quick.toml"

GOOD = """\
name = "q1"
seeds = [0, 1]
baseline = { norm = "ln", placement = "post" }

[base]
dataset = "mnist1d"
epochs = 3

[grid]
norm = ["ln", "relu>ln"]
placement = ["post", "pre"]

[variants.quick]
epochs = 1
seeds = [0]
norm = "ln"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, variant: str | None = None) -> str:
    with pytest.raises(UsageError) as e:
        load_spec(write(tmp_path, text), variant)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_good_spec_and_variant(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "q1" and spec.seeds == [0, 1] and spec.axes() == ["norm", "placement"]
    assert spec.base == {"dataset": "mnist1d", "epochs": 3} and spec.variant is None
    quick = load_spec(write(tmp_path, GOOD), "quick")
    assert quick.variant == "quick" and quick.seeds == [0]
    assert quick.base["epochs"] == 1 and quick.grid["norm"] == ["ln"]  # a scalar narrows a grid axis
    assert quick.grid["placement"] == ["post", "pre"]


def test_example_spec_loads():
    spec = load_spec(EXAMPLE)
    assert len(plan(spec, "runs/x")) == len(spec.seeds) * math.prod(len(v) for v in spec.grid.values())


@pytest.mark.parametrize(
    "edit, line, needles",
    [
        (
            ("[grid]\nnorm", "[grid]\nnrom"),
            10,
            ["grid.nrom", "unknown run setting 'nrom'", "did you mean 'norm'"],
        ),
        (('name = "q1"', 'nmae = "q1"'), 1, ["nmae", "did you mean 'name'"]),
        (("epochs = 3", "epochs = 'three'"), 7, ["base.epochs", "integer"]),
        (("epochs = 3", "epochs = -1"), 7, ["base.epochs", "greater than or equal to 0"]),
        (
            ('placement = ["post", "pre"]', 'placement = ["post", "sideways"]'),
            11,
            ["grid.placement[1]", "sideways"],
        ),
        (('placement = ["post", "pre"]', "placement = []"), 11, ["grid.placement", "empty list"]),
        (('placement = ["post", "pre"]', 'placement = ["pre", "pre"]'), 11, ["grid.placement", "twice"]),
        (('dataset = "mnist1d"', 'dataset = "mnist1d"\nnorm = "ln"'), 11, ["grid.norm", "duplicate axis"]),
        (('name = "q1"', 'name = "../evil"'), 1, ["name", "safe folder name"]),
        (("seeds = [0, 1]", "seeds = [0, 0]"), 2, ["seeds", "duplicates"]),
        (('placement = "post" }', 'placement = "sideways" }'), 3, ["baseline.placement", "sideways"]),
        (
            ('baseline = { norm = "ln", placement = "post" }', 'baseline = { norm = "ln" }'),
            3,
            ["missing: placement"],
        ),
        (("[base]\n", "[base]\nseed = 3\n"), 6, ["base.seed", "seeds = [0, 1, 2]"]),
        (("[base]\n", "[base]\nlr = 0\n"), 6, ["base.lr", "greater than 0"]),
        (("epochs = 1\n", "epochz = 1\n"), 14, ["variants.quick.epochz", "did you mean 'epochs'"]),
        (('norm = ["ln", "relu>ln"]', 'norm = ["ln", "lnn"]'), 10, ["grid.norm[1]", "lnn"]),
        (('dataset = "mnist1d"', 'dataset = "mnist1"'), 6, ["base.dataset", "unknown dataset", "'mnist1d'"]),
        (("[grid]\n", '[grid]\nmodel = ["mlp", "mlpp"]\n'), 10, ["grid.model[1]", "did you mean 'mlp'"]),
        (("epochs = 3", "epochs = 3\noptimizer = 'adam'"), 8, ["base.optimizer", "did you mean 'adamw'"]),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, edit, line, needles):
    old, new = edit
    assert old in GOOD
    message = error_of(tmp_path, GOOD.replace(old, new, 1))
    assert message.startswith(f"{tmp_path / 'spec.toml'}:{line}: "), message
    for needle in needles:
        assert needle in message, (needle, message)


def test_empty_grid_and_duplicate_toml_key(tmp_path):
    no_grid = GOOD.split("[grid]")[0].replace('baseline = { norm = "ln", placement = "post" }\n', "")
    assert "grid: is empty" in error_of(tmp_path, no_grid + "[grid]\n")
    assert "invalid TOML" in error_of(tmp_path, GOOD.replace("epochs = 3", "epochs = 3\nepochs = 4"))


def test_unknown_variant_and_missing_file(tmp_path):
    assert "no variant 'quik'; did you mean 'quick'?" in error_of(tmp_path, GOOD, "quik")
    with pytest.raises(UsageError, match="not found"):
        load_spec(tmp_path / "nope.toml")


def test_locate_finds_tables_keys_and_inline_tables():
    assert locate(GOOD, ("grid", "placement", 1)) == 11
    assert locate(GOOD, ("base",)) == 5
    assert locate(GOOD, ("baseline", "norm")) == 3
    assert locate(GOOD, ("variants", "quick", "seeds")) == 15
    assert locate(GOOD, ("nothing",)) is None


def test_cli_spec_error_is_one_line_exit_2_and_writes_nothing(tmp_cwd, capsys):
    write(tmp_cwd, GOOD.replace("[grid]\nnorm", "[grid]\nnrom"))
    assert main(["study", "run", "spec.toml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "spec.toml:10: grid.nrom" in err
    assert not (tmp_cwd / "runs").exists()


# --------------------------------------------------------------------------------- hypothesis fuzz
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if not isinstance(v, float) or math.isfinite(v) else ("nan" if v != v else "inf")
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(x)}' for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(doc: dict) -> str:
    top = [f'"{k}" = {toml_value(v)}' for k, v in doc.items() if not isinstance(v, dict)]
    tables = [
        f'["{k}"]\n' + "\n".join(f'"{kk}" = {toml_value(vv)}' for kk, vv in v.items())
        for k, v in doc.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top) + "\n" + "\n\n".join(tables) + "\n"


KEYS = st.sampled_from(
    ["name", "seeds", "base", "grid", "baseline", "probes", "variants", "description", "nmae", "x"]
)
FIELDS = st.sampled_from([*RUN_FIELDS, "nrom", "seeds", "zzz"])
SCALARS = st.one_of(
    st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["ln", "relu>ln", "lnn", "post", "pre", "mlp", "mnist1d", "q1", "a/b", ""]),
    st.text(string.printable, max_size=8),
)  # fmt: skip
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))
TABLE = st.dictionaries(FIELDS, VALUES, max_size=4)
DOC = st.dictionaries(
    KEYS,
    st.one_of(VALUES, TABLE, st.dictionaries(st.sampled_from(["quick", "x"]), TABLE, max_size=2)),
    max_size=7,
)


def check_loads_or_usage_error(path: Path) -> None:
    try:
        spec = load_spec(path, None)
    except UsageError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(spec, StudySpec)
    try:
        plan(spec, "runs/x")  # a valid spec must plan
    except UsageError as e:
        assert "\n" not in str(e)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=DOC)
def test_fuzzed_specs_never_crash(tmp_path, doc):
    check_loads_or_usage_error(write(tmp_path, to_toml(doc)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, len(GOOD)), length=st.integers(0, 12), junk=st.text(string.printable, max_size=6))
def test_mangled_good_spec_never_crashes(tmp_path, start, length, junk):
    check_loads_or_usage_error(write(tmp_path, GOOD[:start] + junk + GOOD[start + length :]))
