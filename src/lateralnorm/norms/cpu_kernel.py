"""The compiled CPU kernel for divisive normalization with an O(N) pool (`csrc/dn_rows.cpp`), which also
carries the channels-first LN/RMS sweeps, the LSTM/GRU gate steps of `models/rnn.py`
(`csrc/recurrent_gates.cpp`) and the low-rank κ's products (`csrc/lowrank_product.cpp`).

It is built once per machine, on first use, with torch's C++ extension tooling (a C++ compiler and ninja),
into `<cache>/ext/dn_rows-<key>/` (cache: $LATERALNORM_KERNEL_CACHE, else $LATERALNORM_CACHE, else
~/.cache/lateralnorm; the key covers the sources, torch, Python and the CPU). Later processes load the built
library directly; `make setup` builds it ahead (`lateralnorm norms --build-kernel`).

LATERALNORM_CPU_KERNEL chooses: `auto` (default: the compiled kernel when it builds, else the PyTorch
kernel of `dn_kernel.py`, with one warning), `cpp` (the compiled kernel or an error) or `torch` (never
build; the PyTorch kernel). Both kernels compute the same formula and are tested against each other.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

from lateralnorm.cache_root import cache_dir
from lateralnorm.errors import UsageError

CSRC = Path(__file__).parent / "csrc"
# dn_rows.cpp holds the module's bindings; dn_rows_f64.cpp its O(N) rows in double (the same source, compiled
# in parallel); recurrent_gates.cpp the LSTM/GRU gate steps (models/rnn.py); lowrank_product.cpp the low-rank
# κ's K-thin products (dn_kernel.lowrank_product)
SOURCES = (
    CSRC / "dn_rows.cpp",
    CSRC / "dn_rows_f64.cpp",
    CSRC / "recurrent_gates.cpp",
    CSRC / "lowrank_product.cpp",
    CSRC / "exp_rows.cpp",
)
HEADERS = (CSRC / "vec_math.h", CSRC / "autograd_node.h")  # included by the sources: part of the build key
MODES = ("auto", "cpp", "torch")
# -fno-trapping-math lets GCC vectorize the branchy element loops (relu, sign, a > 0 ? …); without it the
# row loops run an order of magnitude slower. -fno-math-errno lets sqrt vectorize.
CFLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
# GCC ignores __restrict__ on local pointers and versions each loop for aliasing at run time instead; the
# backward's main loop needs more than the default 10 checks to be vectorized at all.
# -fopenmp: at::parallel_for runs rows on torch's intra-op threads only when the extension itself is built
# with OpenMP (torch's CPU wheel uses OpenMP; without the flag the kernel runs on one thread).
GCC_CFLAGS = ["--param", "vect-max-version-for-alias-checks=64", "-fopenmp"]
STALE_LOCK_S = 900.0  # a build lock older than this was left by a killed build

_lock = threading.Lock()
_state: dict[str, object] = {"tried": False, "ext": None}


# The switches below are read on every layer call (a low-rank κ's step read eight: ~7 µs of a 4-row layer's
# ~110 µs forward), so a read is the process's own copy of the environment, the bytes table that os.environ
# writes through (every os.environ change, monkeypatch's included, is in it), looked up by the name's bytes,
# and each (name, raw value) validated once. Elsewhere than POSIX, os.environ.get.
_choices_seen: dict[tuple[str, bytes | str | None], str] = {}
_env_keys: dict[str, bytes] = {}


def _env_raw(name: str) -> bytes | str | None:
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(data, dict):
        return os.environ.get(name)
    key = _env_keys.get(name)
    if key is None:
        key = _env_keys[name] = os.fsencode(name)
    return data.get(key)


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    """The environment variable `name`, one of `choices` (the first when unset or empty), else a UsageError."""
    raw = _env_raw(name)
    seen = _choices_seen.get((name, raw))
    if seen is not None:
        return seen
    text = raw if raw is None or isinstance(raw, str) else os.fsdecode(raw)
    value = (text or "").strip().lower() or choices[0]
    if value not in choices:
        raise UsageError(
            f"{name}={value!r} is not one of {', '.join(choices)}; unset it or pick one of those"
        )
    _choices_seen[(name, raw)] = value
    return value


def mode() -> str:
    """LATERALNORM_CPU_KERNEL: `auto` (default: the compiled kernel where it builds), `cpp` or `torch`."""
    return _env_choice("LATERALNORM_CPU_KERNEL", MODES)


LOWRANK_MODES = ("kernel", "torch")


def lowrank_products() -> str:
    """Which products a low-rank κ's pool takes where the compiled kernel runs its element work
    (LATERALNORM_LOWRANK_PRODUCTS): `kernel` (default: the kernel's own K-thin products up to rank 16) or
    `torch` (torch's matmuls: the bits of the runs stored before 2026-12-07, which `lateralnorm study reprobe`
    must reproduce exactly to replace their probes)."""
    return _env_choice("LATERALNORM_LOWRANK_PRODUCTS", LOWRANK_MODES)


CHANNEL_POOL_MODES = ("planes", "rows")


def channel_pool() -> str:
    """How a channels-first `dn` with a matrix κ over the channels (full, gaussian; GDN), not centered and with a
    fixed α, runs on CPU (LATERALNORM_CHANNEL_POOL): `planes` (default: the element work on the input's own
    (B·C, P) planes and the pool as one batched GEMM, no transposes, for planes of `dn_kernel.PLANES_FROM`
    positions or more) or `rows` (the planes transposed to rows
    (B·P, C), torch's GEMM on them and back: the bits of the runs stored before 2026-12-07 stop 43, which
    `lateralnorm study reprobe` must reproduce exactly to replace their probes)."""
    return _env_choice("LATERALNORM_CHANNEL_POOL", CHANNEL_POOL_MODES)


MATRIX_ALPHA_MODES = ("kernel", "formula")


def matrix_learned_alpha() -> str:
    """Where a matrix κ's `dn` with a learned α runs on CPU (LATERALNORM_MATRIX_LEARNED_ALPHA): `kernel` (default:
    the compiled element work around the pool's products, α's gradient beside it) or `formula` (the composite
    formula through autograd: the bits of the runs stored before 2026-12-07 stop 38, which `lateralnorm study
    reprobe` must reproduce exactly to replace their probes)."""
    return _env_choice("LATERALNORM_MATRIX_LEARNED_ALPHA", MATRIX_ALPHA_MODES)


def _is_gcc() -> bool:
    compiler = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Free Software Foundation" in out


@functools.cache
def _arch_flags() -> list[str]:
    flags = ["-march=native"] if platform.machine() in ("x86_64", "AMD64") else []
    if _is_gcc():
        flags += GCC_CFLAGS + (["-DLATERALNORM_LIBMVEC"] if _libmvec() else [])
    return flags


@functools.cache
def _libmvec() -> bool:
    """Whether glibc's vector math library can be linked (GCC on x86-64 Linux with libmvec.so): then the
    general exponents (a^e = exp(e·ln a)) call its vectorized exp/log instead of one std::pow per element."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    compiler = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run(
            [compiler, "-print-file-name=libmvec.so"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return os.path.isabs(out) and Path(out).exists()


def _ldflags() -> list[str]:
    if not _is_gcc():
        return []
    return ["-fopenmp"] + (["-lmvec"] if _libmvec() else [])


def _cpu_id() -> str:
    """What the -march=native code depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep)))


@functools.cache
def build_key() -> str:
    h = hashlib.sha256()
    for part in (
        *(src.read_bytes() for src in (*SOURCES, *HEADERS)),
        torch.__version__.encode(),
        sys.version.encode(),
        _cpu_id().encode(),
    ):
        h.update(part)
    h.update(" ".join(CFLAGS + _arch_flags()).encode())
    return h.hexdigest()[:16]


def build_dir() -> Path:
    root = os.environ.get("LATERALNORM_KERNEL_CACHE")
    return (Path(root) if root else cache_dir()) / "ext" / f"dn_rows-{build_key()}"


def _module_name() -> str:
    return f"lateralnorm_dn_rows_{build_key()}"


def _load_built(folder: Path, name: str) -> ModuleType | None:
    """Import an already built library without going through the build tooling (fast path). Not while a
    build holds the folder's lock (the library may be half written); a library that does not load (a build
    killed while linking) is removed, so the tooling builds it again."""
    if (folder / "lock").exists():
        return None
    for lib in folder.glob(f"{name}*.so"):
        spec = importlib.util.spec_from_file_location(name, lib)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ImportError:
            lib.unlink(missing_ok=True)
            return None
        return module
    return None


def _with_ninja_on_path() -> None:
    """torch's tooling runs `ninja` from PATH; the `ninja` wheel puts it in the environment's bin folder,
    which is not on PATH unless the environment is activated."""
    if shutil.which("ninja"):
        return
    candidates = [Path(sys.executable).parent]
    try:
        import ninja  # type: ignore[import-not-found]

        candidates.insert(0, Path(ninja.BIN_DIR))
    except ImportError:
        pass
    for folder in candidates:
        if (folder / "ninja").exists():
            os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
            return


def clear_stale_lock(folder: Path, max_age_s: float = STALE_LOCK_S) -> bool:
    """Remove the build lock torch's tooling left behind when a build was killed (it would otherwise make
    every later process wait on it forever). A build takes about a minute; a lock older than `max_age_s`
    has no live owner."""
    lock = folder / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age <= max_age_s:
        return False
    lock.unlink(missing_ok=True)
    print(f"lateralnorm: removed a stale build lock ({age:.0f} s old) in {folder}", file=sys.stderr)
    return True


def build(verbose: bool = False) -> ModuleType:
    """Build (or load) the extension; raises on failure."""
    from torch.utils import cpp_extension

    folder, name = build_dir(), _module_name()
    clear_stale_lock(folder)
    module = _load_built(folder, name)
    if module is not None:
        return module
    folder.mkdir(parents=True, exist_ok=True)
    _with_ninja_on_path()
    print(
        f"lateralnorm: compiling the CPU kernels (dn, channel LN, recurrent gates) once, into {folder}",
        file=sys.stderr,
    )
    return cpp_extension.load(
        name=name,
        sources=[str(src) for src in SOURCES],
        extra_cflags=CFLAGS + _arch_flags(),
        extra_ldflags=_ldflags(),
        build_directory=str(folder),
        verbose=verbose,
    )


def extension() -> ModuleType | None:
    """The compiled kernel, or None when the mode is `torch` or (mode `auto`) it cannot be built."""
    chosen = mode()
    if chosen == "torch":
        return None
    ext = _state["ext"]
    if ext is not None:  # built or loaded already: no lock on the per-call path
        return ext  # type: ignore[return-value]
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                _state["ext"] = build()
            except Exception as exc:  # noqa: BLE001 - any build failure means: use the PyTorch kernel
                _state["ext"] = None
                _state["error"] = (
                    f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
                )
                if chosen == "auto":
                    warnings.warn(
                        "lateralnorm: the compiled CPU kernel for dn could not be built "
                        f"({_state['error']}); using the slower PyTorch kernel. Install a C++ compiler and "
                        "ninja, or set LATERALNORM_CPU_KERNEL=torch to silence this.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
    if _state["ext"] is None and chosen == "cpp":
        raise RuntimeError(
            f"lateralnorm: LATERALNORM_CPU_KERNEL=cpp but the CPU kernel could not be built ({_state.get('error')})"
        )
    return _state["ext"]  # type: ignore[return-value]


def loaded_extension() -> ModuleType | None:
    """The compiled kernel if this process has it loaded already (and the mode allows it), else None; never
    builds or loads. For small helpers (NonNegative's value) that are worth the kernel only when it is here."""
    ext = _state["ext"]
    if ext is None or mode() == "torch":
        return None
    return ext  # type: ignore[return-value]


def available() -> bool:
    """Whether the compiled kernel is (or can be) loaded; a constant to torch.compile."""
    return extension() is not None


# A constant to torch.compile (it must not trace the loader). This is all that
# `torch.compiler.assume_constant_result` does, but calling that imports torch._dynamo, which would add about
# a second to every `import lateralnorm` (every CLI command and study worker). The fullgraph compile test in
# tests/test_norms_cpu_kernel.py fails if torch ever reads the mark differently.
available._dynamo_marked_constant = True  # type: ignore[attr-defined]


def applies_to(y: torch.Tensor) -> bool:
    """Whether the compiled kernel runs y (a CPU float32/float64 tensor, and the kernel available)."""
    return y.device.type == "cpu" and y.dtype in (torch.float32, torch.float64) and available()


def extension_for(y: torch.Tensor) -> ModuleType | None:
    """The compiled kernel where it runs y (as `applies_to`), else None: one reading of the mode, for the
    per-call paths that would otherwise ask `applies_to` and then `extension` (each reads the environment)."""
    if y.device.type != "cpu" or y.dtype not in (torch.float32, torch.float64):
        return None
    return extension()


# ---------------------------------------------------------------------------------------------------------
# The kernel as torch operators, so torch.compile / torch.export see them as ops with known output shapes
# (a raw pybind call would break the graph). Unused outputs are empty tensors (an op cannot return None).


def keeps_rowwise(kind: int, alpha: float, p: float) -> bool:
    """Whether the kernel's forward keeps a second (M, N) tensor for the backward when asked (save_w): the
    band pool's window sums (kind 2), or with p = α > 1, α ≠ 2, the elements' a^(α−1), or with α = 1 or 2 and
    p ∉ {1, 2} the elements' a^(p−1) (p > 1) or a^p (p < 1), then the backward takes no exp or log; or with
    α ∉ {1, 2} and p ∉ {1, α > 1} (the general policy, and p = α < 1) the elements' ln a, then it takes no log.
    The same rule as `keeps_rowwise` in csrc/dn_rows.cpp (tested to agree)."""
    general_alpha = alpha not in (1.0, 2.0) and p != 1.0  # p = α > 1, p = α < 1, or any other p
    int_alpha_general_p = alpha in (1.0, 2.0) and p not in (1.0, 2.0)
    return kind == 2 or general_alpha or int_alpha_general_p


def kept_shape(y_shape: tuple[int, int], kind: int, alpha: float, p: float) -> tuple[int, ...]:
    """The shape of the tensor the kernel's forward keeps when asked (save_w, no learned α): (M, N), or
    (2, M, N) where the band pool's window sums have the elements' kept power (or ln a) beside them (an
    exp/log policy: `keeps_rowwise` for any pool), or where the general exponents (α ∉ {1, 2}, p ∉ {1, α}) on
    the self or uniform pool keep their two exps, a^α's and a^p's, instead of ln a; (0,) where it keeps none.
    `keeps_two_planes` in csrc/dn_rows.cpp (tested to agree)."""
    if not keeps_rowwise(kind, alpha, p):
        return (0,)
    band_two = kind == 2 and keeps_rowwise(0, alpha, p)
    general_pair = kind != 2 and alpha not in (1.0, 2.0) and p not in (1.0, alpha)
    return (2, *y_shape) if band_two or general_pair else tuple(y_shape)


@torch.library.custom_op("lateralnorm::dn_rows_forward", mutates_args=())
def rows_forward(
    y: torch.Tensor, beta: torch.Tensor, c: torch.Tensor, gamma: torch.Tensor, bias: torch.Tensor,
    kind: int, center: bool, rect: bool, alpha: float, p: float, r: float, before: int, after: int,
    save_w: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(out, stats (M, 3) float64, w (`kept_shape`) when save_w and the kernel keeps one, else empty)."""
    ext = extension()
    if ext is None:
        raise RuntimeError("lateralnorm: the compiled CPU kernel is not available")
    out, stats, w = ext.forward(
        y, beta, c, gamma, bias, kind, center, rect, alpha, p, r, before, after, save_w, False
    )
    return out, stats, (w if w is not None else y.new_empty(0))


@rows_forward.register_fake
def _(y, beta, c, gamma, bias, kind, center, rect, alpha, p, r, before, after, save_w):  # noqa: ANN001, ANN202
    w = y.new_empty(kept_shape(tuple(y.shape), kind, alpha, p)) if save_w else y.new_empty(0)
    return torch.empty_like(y), y.new_empty((y.shape[0], 3), dtype=torch.float64), w


@torch.library.custom_op("lateralnorm::dn_rows_backward", mutates_args=())
def rows_backward(
    g: torch.Tensor, y: torch.Tensor, stats: torch.Tensor, w: torch.Tensor, beta: torch.Tensor,
    c: torch.Tensor, gamma: torch.Tensor, kind: int, center: bool, rect: bool, alpha: float, p: float,
    r: float, before: int, after: int, need_y: bool, need_gamma: bool, need_bias: bool, need_beta: bool,
    need_c: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(gy, Σ g z, Σ g, Σ q, Σ q W) over the rows; what was not asked for is empty."""
    ext = extension()
    if ext is None:
        raise RuntimeError("lateralnorm: the compiled CPU kernel is not available")
    res = ext.backward(
        g, y, stats, w if w.numel() else None, beta, c, gamma, kind, center, rect, alpha, p, r, before,
        after, need_y, need_gamma, need_bias, need_beta, need_c, False, 0.0,
    )  # fmt: skip
    return tuple(t if t is not None else y.new_empty(0) for t in res[:5])  # type: ignore[return-value]


@rows_backward.register_fake
def _(g, y, stats, w, beta, c, gamma, kind, center, rect, alpha, p, r, before, after,  # noqa: ANN001, ANN202
      need_y, need_gamma, need_bias, need_beta, need_c):  # fmt: skip
    n = y.shape[-1]
    col = [y.new_empty(n) if need else y.new_empty(0) for need in (need_gamma, need_bias, need_beta, need_c)]
    return (torch.empty_like(y) if need_y else y.new_empty(0), *col)


def kernel_name() -> str:
    """Which kernel `dn` runs on CPU, for run records: `compiled-<key>`, `pytorch` (chosen) or `pytorch (not
    built)`. Builds nothing."""
    if mode() == "torch":
        return "pytorch"
    if _state["ext"] is not None or any(build_dir().glob(f"{_module_name()}*.so")):
        return f"compiled-{build_key()}"
    return "pytorch (not built)"


def status() -> str:
    """One line on which kernel `dn` uses on CPU, without building anything."""
    name = kernel_name()
    if name == "pytorch":
        return "dn on CPU: PyTorch kernel (LATERALNORM_CPU_KERNEL=torch)"
    if name.startswith("compiled"):
        return f"dn on CPU: compiled kernel ({build_dir()})"
    return (
        "dn on CPU: compiled kernel not built yet; it is built on first use (about a minute) or now with "
        "`lateralnorm norms --build-kernel`"
    )
