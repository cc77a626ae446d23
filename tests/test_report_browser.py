"""The report in headless Debian chromium: it renders, every figure decodes, no console errors, no network.

Skips with the reason where no browser or driver exists. `LATERALNORM_WRITE_DOCS=1` copies the screenshot
to docs/img/report.png (run it on a report of the real demo studies for the README picture:
`LATERALNORM_REPORT=runs/report.html LATERALNORM_WRITE_DOCS=1 pytest tests/test_report_browser.py`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from browser_support import CHROMEDRIVER, CHROMIUM, missing_browser  # noqa: E402
from lateralnorm.cli import main
from lateralnorm.study import run_study, validate_spec

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent


def _report(tmp: Path) -> Path:
    """A given report (LATERALNORM_REPORT), else one built from the stand-in study of test_report.py."""
    given = os.environ.get("LATERALNORM_REPORT")
    if given:
        return Path(given).resolve()
    from test_report import SPEC, fake_run

    run_study(validate_spec(SPEC), tmp / "fake", executor="inline", run_fn=fake_run, echo=lambda _: None)
    assert main(["report", str(tmp / "fake"), "-o", str(tmp / "report.html")]) == 0
    return tmp / "report.html"


def test_report_renders_without_errors(tmp_path):
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    path = _report(tmp_path)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,2000",
                f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except Exception as e:  # a browser that cannot start here is an environment problem, not a page bug
        pytest.skip(f"chromium did not start: {str(e).splitlines()[0]}")
    try:
        driver.get(path.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"
        )
        assert images and all(done and width > 100 for done, width, _ in images), images
        # the browser fetched nothing but the file itself (figures are inline)
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert [u for u in fetched if not u.startswith(("data:", "file:"))] == []
        assert driver.execute_script("return document.querySelectorAll('.badge.k-better').length") >= 1
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height), 2400))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
        if os.environ.get("LATERALNORM_WRITE_DOCS"):
            shutil.copyfile(shot, ROOT / "docs" / "img" / "report.png")
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()
