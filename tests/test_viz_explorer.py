"""The explorer page without a browser: self-contained, written atomically, served on 127.0.0.1 only."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from lateralnorm.cli import main
from lateralnorm.errors import UsageError
from lateralnorm.viz import explorer


def test_page_is_self_contained_and_exposes_the_formulas():
    html = explorer.render_explorer()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "__VERSION__" not in html
    # offline: no external scripts, styles, images or fonts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert "window.lateralnorm" in html
    for norm in ("ln", "relu>ln", "gelu>ln", "softmax", "dn"):
        assert f'"{norm}"' in html
    for preset in ("self", "uniform", "band", "random"):
        assert f'value="{preset}"' in html


def test_write_explorer_is_atomic_and_checks_the_path(tmp_path):
    out = explorer.write_explorer(tmp_path / "page.html")
    assert out.read_text(encoding="utf-8") == explorer.render_explorer()
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temp file left behind
    with pytest.raises(UsageError, match="does not exist"):
        explorer.write_explorer(tmp_path / "missing" / "page.html")
    with pytest.raises(UsageError, match="is a folder"):
        explorer.write_explorer(tmp_path)


def test_cli_explore_writes_the_file(tmp_cwd, capsys):
    assert main(["explore", "-o", "x.html"]) == 0
    assert (tmp_cwd / "x.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert capsys.readouterr().out.strip() == "x.html"
    assert main(["explore", "-o", "nowhere/x.html"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_serve_binds_loopback_on_a_free_port():
    server, url = explorer.serve_explorer(0)
    try:
        assert url.startswith("http://127.0.0.1:") and server.server_address[0] == "127.0.0.1"
        assert server.server_address[1] > 0
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200
            assert "text/html" in r.headers["Content-Type"]
            assert r.read().decode("utf-8") == explorer.render_explorer()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "etc/passwd", timeout=5)
        assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(UsageError, match="out of range"):
        explorer.serve_explorer(70000)
