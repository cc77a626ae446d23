"""The correctness checks of `benchmarks/gpu_check.py` (sections a and b) as pytest tests with a `gpu` marker:
exactness of the dn presets and named layers against torch's layers and GDN's closed form, the fused
backwards against autograd through the formula, the Triton kernels, every registered norm in float32 and
bfloat16 in both layouts, one step of every model family and 1-epoch trainer runs, all on CUDA.

Skipped without CUDA. `LATERALNORM_TEST_DEVICE=cpu pytest -m gpu` runs the same checks on the CPU (what CI's
machine can do: it shows the checks themselves are sound). `benchmarks/gpu_check.py` stays the one-shot runner
for a lent GPU machine without this repository's environment, and holds the timing tables (section c).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", _PATH)
gc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gc)

from lateralnorm import create_norm, list_norms  # noqa: E402
from lateralnorm.models import MODELS  # noqa: E402


@pytest.fixture(scope="module")
def device() -> torch.device:
    name = os.environ.get("LATERALNORM_TEST_DEVICE", "cuda")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here (set LATERALNORM_TEST_DEVICE=cpu to run the checks on the CPU)")
    return torch.device(name)


def _passes(check, *args) -> None:  # noqa: ANN001
    try:
        ok, detail = check(*args)
    except gc.Skip as e:
        pytest.skip(str(e))
    assert ok, detail


EXACT = [(label, layout, shapes, make) for label, layout, shapes, make in gc.exact_rows(create_norm)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("row", EXACT, ids=[r[0] for r in EXACT])
def test_exact_against_torch_and_closed_forms(row, dtype, device):
    _, layout, shapes, make = row
    _passes(gc.check_exact, make, layout, shapes, dtype, device)


@pytest.mark.parametrize("spec", gc.GRAD_SPECS)
def test_fused_backward_against_the_formula(spec, device):
    _passes(gc.check_fused_grad, create_norm, spec, device)


@pytest.mark.parametrize("spec", gc.TRITON_SPECS)
def test_triton_kernels(spec, device):
    if device.type != "cuda":
        pytest.skip("the Triton kernels run on CUDA")
    _passes(gc.check_triton, create_norm, spec, device)


@pytest.mark.parametrize("spec", sorted(list_norms()) + gc.REGISTRY_EXTRAS)
def test_every_registered_norm_in_low_precision(spec, device):
    _passes(gc.check_registry_spec, create_norm, spec, device)


@pytest.mark.parametrize("norm", gc.MODEL_NORMS)
@pytest.mark.parametrize("model", MODELS)
def test_model_step(model, norm, device):
    _passes(gc.check_model_step, model, norm, device)


@pytest.mark.parametrize(
    "run", [("spirals", "mlp", "dn"), ("mnist1d", "mlp", "ln"), ("mnist1d", "gru", "ln")]
)
def test_one_epoch_trainer_run(run, device):
    _passes(gc.check_train_run, *run, device)
