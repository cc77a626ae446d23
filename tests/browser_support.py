"""Shared by the page tests: where Debian's chromium and chromedriver are, and why a test must skip."""

from __future__ import annotations

import os
import shutil

CHROMIUM = os.environ.get("LATERALNORM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LATERALNORM_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing_browser() -> str | None:
    """None when selenium, chromium and chromedriver are all there, else the reason to skip."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[browser]')"
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(path)):
            return f"{path} not found (apt-get install {pkg}, or set LATERALNORM_CHROMIUM/LATERALNORM_CHROMEDRIVER)"
    return None
