"""Data flows one way (DESIGN.md, Architecture): `norms` imports torch only and `models` imports norms only.
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
