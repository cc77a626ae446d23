"""The explorer page in headless Debian chromium (Selenium + chromedriver).

Loads the written file, checks the page's formulas against the Python layers on the same inputs, moves
sliders and types an input, checks the displayed numbers, that no console errors were logged, and saves a
screenshot. Skips with the reason where no browser or driver exists.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from browser_support import CHROMEDRIVER, CHROMIUM, missing_browser  # noqa: E402
from lateralnorm import create_norm
from lateralnorm.viz import explorer

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tmp = tmp_path_factory.mktemp("explorer")
    path = explorer.write_explorer(tmp / "explorer.html")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1400,1900",
        f"--user-data-dir={tmp / 'profile'}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except Exception as e:  # a browser that cannot start here is an environment problem, not a page bug
        pytest.skip(f"chromium did not start: {str(e).splitlines()[0]}")
    driver.get(path.resolve().as_uri())
    yield driver, tmp
    driver.quit()


def _ref(spec: str, y: list[float], kappa: np.ndarray | None = None) -> np.ndarray:
    """The Python layer's output for one input vector, in float64 (buffers were built in float32: rtol 1e-6)."""
    layer = create_norm(spec, len(y)).double()
    if kappa is not None:
        layer.kappa_fixed.copy_(torch.as_tensor(kappa))
    with torch.no_grad():
        return layer(torch.tensor([y], dtype=torch.float64))[0].numpy()


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_page_formulas_match_the_python_layers(page):
    driver, _ = page
    rng = np.random.default_rng(0)
    cases = [
        ("ln", {}),
        ("ln", {"eps": 0.3}),
        ("relu>ln", {}),
        ("gelu>ln", {}),
        ("softmax", {}),
        ("softmax", {"temperature": 0.4}),
        ("dn", {}),
        ("dn", {"alpha": 1.3, "beta": 0.6, "kappa": "self", "kappa_scale": 2.0}),
        ("dn", {"alpha": 3.0, "beta": 1.7, "kappa": "uniform", "kappa_scale": 0.5}),
        ("dn", {"alpha": 2.0, "beta": 0.4, "kappa": "band", "band": 3}),
        ("dn", {"alpha": 1.0, "beta": 1.0, "kappa": "band", "band": 5, "kappa_scale": 2.5}),
    ]
    for n in (2, 5, 8):
        for norm, params in cases:
            y = (rng.normal(size=n) * 2).round(3).tolist()
            y[0] = -3.0  # a strongly negative unit: the cross-talk case
            got = driver.execute_script("return window.lateralnorm.compute(arguments[0], arguments[1], arguments[2])",
                                        norm, y, params)  # fmt: skip
            spec = explorer.lateralnorm_spec(norm, n, **params)
            np.testing.assert_allclose(
                got, _ref(spec, y), rtol=1e-6, atol=1e-9, err_msg=f"{norm} {params} {y}"
            )
    # the "random" kappa preset through an explicit full kappa matrix
    y = [1.0, -2.0, 0.5, 2.5, 0.1, -0.7]
    kappa = driver.execute_script("return window.lateralnorm.kappaMatrix('random', 6, 1.5, 3, 7)")
    got = driver.execute_script("return window.lateralnorm.compute('dn', arguments[0], {kappa: 'random', "
                                "kappa_scale: 1.5, alpha: 2.0, beta: 0.8})", y)  # fmt: skip
    spec = "dn:alpha=2.0,beta=0.64,kappa=full,learn_kappa=false,learn_beta=false,affine=false"
    np.testing.assert_allclose(got, _ref(spec, y, np.array(kappa)), rtol=1e-6, atol=1e-9)
    assert _console_errors(driver) == []


def _slide(driver, element_id: str, presses: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    el = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].focus()", el)  # focus without a click (a click moves the thumb)
    key = Keys.ARROW_RIGHT if presses > 0 else Keys.ARROW_LEFT
    el.send_keys(*([key] * abs(presses)))


def _value(driver, element_id: str) -> float:
    return float(driver.execute_script(f"return document.getElementById('{element_id}').value"))


def _text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def test_sliders_and_inputs_change_the_shown_numbers(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, tmp = page
    driver.refresh()
    # the single unit: z = y^a / (b^a + k y^a) at the probe y
    assert _text(driver, "unit-z") == "0.5000"  # α = 2, β = 1, κ = 1, y = 1
    before = _text(driver, "unit-z")
    _slide(driver, "unit-y", 7)
    _slide(driver, "unit-alpha", 5)
    a, b, k, y = (_value(driver, i) for i in ("unit-alpha", "unit-beta", "unit-kappa", "unit-y"))
    assert (a, y) != (2.0, 1.0)
    assert _text(driver, "unit-z") == f"{y**a / (b**a + k * y**a):.4f}" != before
    _slide(driver, "sig-logeps", -6)
    eps, x = 10 ** _value(driver, "sig-logeps"), _value(driver, "sig-x")
    assert _text(driver, "sig-u") == f"{x / math.sqrt(x * x + eps):.4f}"

    # the layer: type a strongly negative input for unit 3, move dn's alpha, compare the table with torch
    box = driver.find_element(By.ID, "y-3")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("-3")
    _slide(driver, "dn-alpha", -3)
    y = [float(v) for v in driver.execute_script("return window.lateralnorm.state.y")]
    assert y[3] == -3.0 and len(y) == 6
    alpha = _value(driver, "dn-alpha")
    assert alpha != 2.0
    for norm in ("ln", "relu>ln", "gelu>ln", "softmax", "dn"):
        spec = explorer.lateralnorm_spec(norm, 6, alpha=alpha)
        want = _ref(spec, y)
        shown = [float(_text(driver, f"out-{norm.replace('>', '-')}-{i}")) for i in range(6)]
        np.testing.assert_allclose(shown, want, atol=6e-5, err_msg=norm)
    # the cross-talk readout: relu>ln ignores the negative unit, ln does not
    assert _text(driver, "crosstalk-relu-ln").endswith("0.0000")
    assert not _text(driver, "crosstalk-ln").endswith("0.0000")
    # N slider: one more unit appears in the table
    _slide(driver, "layer-n", 1)
    assert len(driver.execute_script("return window.lateralnorm.state.y")) == int(_value(driver, "layer-n"))

    shot = tmp / "explorer.png"
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    if os.environ.get("LATERALNORM_WRITE_DOCS"):  # refresh the README's screenshot: docs/img/explorer.png
        shutil.copyfile(shot, Path(__file__).resolve().parents[1] / "docs" / "img" / "explorer.png")
    assert _console_errors(driver) == []
