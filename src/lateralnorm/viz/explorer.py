"""The explorer page: one self-contained, offline HTML file (canvas + a small inline script, no CDN).

It shows the single self-inhibiting unit  z = y^α / (β^α + κ·y^α)  beside LayerNorm's 1-D sigmoid
u_ε(x) = x / √(x² + ε), and a layer of N units whose outputs under ln, relu>ln, gelu>ln, softmax and dn are
drawn side by side while the reader drags one unit's input negative (the cross-talk picture).

The page's formulas are on `window.lateralnorm` (compute(norm, y, params), kappaMatrix, ...) so the browser
test can compare them with the Python layers.
"""

from __future__ import annotations

import http.server
import os
import threading
from importlib import resources
from pathlib import Path

from lateralnorm import atomic
from lateralnorm.errors import UsageError

TEMPLATE = "explorer_template.html"


def render_explorer() -> str:
    """The page as one HTML string (the template with the package version filled in)."""
    from lateralnorm import __version__

    html = resources.files("lateralnorm.viz").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return html.replace("__VERSION__", __version__)


def lateralnorm_spec(
    norm: str,
    num_features: int,
    *,
    eps: float = 1e-5,
    temperature: float = 1.0,
    alpha: float = 2.0,
    beta: float = 1.0,
    kappa: str = "uniform",
    kappa_scale: float = 1.0,
    band: int = 3,
) -> str:
    """The `create_norm` spec that computes what the page shows for `norm` with the page's parameters.

    Meanings that differ between the page and the layer library:
    - dn's β: the page uses the half-saturation constant σ (denominator σ^α + Σ κ y₊^α, as in the issue's
      z = y^α/(β^α + κ·y^α)); the library's `beta` option is the whole additive term, so beta = σ^α.
    - κ presets: self = s·I → kappa=self,kappa_init=s; uniform = s/N → kappa=uniform,kappa_init=s/N;
      band of odd width w → kappa=band,size=w,kappa_init=s/w. The page's "random" preset has no spec
      (use kappa=full and set the matrix; see `window.lateralnorm.kappaMatrix`).
    - ln, relu>ln, gelu>ln are the library's layers at initialisation (γ = 1, b = 0), eps as given.
    """
    if norm in ("ln", "relu>ln", "gelu>ln"):
        return f"{norm}:eps={eps!r}" if norm == "ln" else f"{norm.split('>')[0]}>ln:eps={eps!r}"
    if norm == "softmax":
        return f"softmax:temperature={temperature!r}"
    if norm != "dn":
        raise UsageError(f"the explorer has no norm {norm!r}; it shows ln, relu>ln, gelu>ln, softmax, dn")
    if kappa == "self":
        k = f"kappa=self,kappa_init={kappa_scale!r}"
    elif kappa == "uniform":
        k = f"kappa=uniform,kappa_init={kappa_scale / num_features!r}"
    elif kappa == "band":
        if band < 1 or band % 2 == 0:
            raise UsageError(f"band width {band} must be a positive odd number (the page uses 1, 3, 5, ...)")
        k = f"kappa=band,size={band},kappa_init={kappa_scale / band!r}"
    else:
        raise UsageError(f"kappa preset {kappa!r} has no spec; use self, uniform or band (or kappa=full)")
    return f"dn:alpha={alpha!r},beta={beta**alpha!r},{k},learn_kappa=false,learn_beta=false,affine=false"


def write_explorer(path: str | os.PathLike[str] = "explorer.html") -> Path:
    """Write the page to `path` atomically (temp file in the same folder, then os.replace)."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"output '{out}' is a folder; give a file name such as {out / 'explorer.html'}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"folder '{parent}' does not exist; create it first or choose another -o path")
    html = render_explorer()
    atomic.write_text(out, html)
    return out


class _PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves the page at / (and /explorer.html); everything else is 404."""

    page: bytes = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?")[0] not in ("/", "/index.html", "/explorer.html"):
            self.send_error(404, "only / is served")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:  # quiet: the CLI prints the URL only
        pass


def serve_explorer(port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start serving the page on 127.0.0.1 (port 0: a free one) in a daemon thread.

    Returns (server, url); call server.shutdown() to stop it.
    """
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} is out of range; use 0 (any free port) to 65535")
    handler = type("ExplorerHandler", (_PageHandler,), {"page": render_explorer().encode("utf-8")})
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        raise UsageError(f"cannot listen on 127.0.0.1:{port} ({e.strerror}); try --port 0") from None
    thread = threading.Thread(target=server.serve_forever, name="lateralnorm-explorer", daemon=True)
    thread.start()
    host, bound = server.server_address[:2]
    return server, f"http://{host}:{bound}/"
