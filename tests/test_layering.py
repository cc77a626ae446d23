"""Data flows one way (docs/architecture.md): `norms` imports torch only and `models` imports norms only.
Each check imports one package in a fresh interpreter and lists what came in with it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# the project's layers above norms and models, and the third-party packages they bring
UPPER = ["geometry", "data", "runconfig", "train", "probes", "study", "viz", "report", "cli"]
THIRD_PARTY = ["pydantic", "ray", "pandas", "scipy", "sklearn", "matplotlib", "jinja2", "rich", "mnist1d"]
FORBIDDEN = {
    "lateralnorm.norms": [f"lateralnorm.{m}" for m in ["models", *UPPER]] + THIRD_PARTY,
    "lateralnorm.models": [f"lateralnorm.{m}" for m in UPPER] + THIRD_PARTY,
}


def imported_by(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_import_pulls_in_no_upper_layer(module):
    loaded = imported_by(module)
    assert module in loaded
    bad = [f for f in FORBIDDEN[module] if any(m == f or m.startswith(f + ".") for m in loaded)]
    assert not bad, f"`import {module}` also imports {bad}; it may depend only on the layers below it"


PROBES = ("crosstalk", "sparsity", "invariance", "folds", "capacity")  # named in the doc by what they measure


def test_every_module_is_in_the_architecture():
    """docs/architecture.md names every package and top-level module of src/lateralnorm (and every module of
    the packages whose files it lists), so the document cannot silently fall behind the code."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "architecture.md").read_text()
    src = root / "src" / "lateralnorm"
    missing = []
    for path in sorted(src.iterdir()):
        if path.name.startswith("_") or path.name == "__pycache__":
            continue
        name = f"`{path.name}/`" if path.is_dir() else f"`{path.name}`"
        if name not in doc:
            missing.append(name)
    for package in ("norms", "study", "report", "viz", "data", "probes"):
        for module in sorted((src / package).glob("*.py")):
            if (
                not module.name.startswith("_")
                and f"`{module.name}`" not in doc
                and module.stem not in PROBES
            ):
                missing.append(f"{package}/{module.name}")
    assert not missing, f"docs/architecture.md does not mention {missing}"


def test_no_sql_outside_the_store():
    """SQL lives in study/store.py; the rest of the package asks the store's named queries."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "lateralnorm"
    sql = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|PRAGMA)\b")
    offenders = [str(p.relative_to(src)) for p in sorted(src.rglob("*.py"))
                 if p.name != "store.py" and sql.search(p.read_text())]  # fmt: skip
    assert not offenders, f"SQL outside study/store.py: {offenders}"


def test_checking_a_spec_does_not_import_the_trainer():
    """Validating a study spec (every cell's names, sizes and memory) needs RunConfig, the data and model
    name checks, not the trainer."""
    from pathlib import Path

    spec = Path(__file__).resolve().parents[1] / "studies" / "q1_activation_before_ln.toml"
    code = (f"import json, sys; from lateralnorm.study.spec import load_spec; load_spec({str(spec)!r}); "
            "print(json.dumps(sorted(sys.modules)))")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "lateralnorm.study.spec" in loaded and "lateralnorm.train" not in loaded
