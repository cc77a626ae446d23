"""Probes recomputed on a study's stored runs, after a probe or a layer's gradient was fixed.

Checkpoints are not kept with committed results, so each selected run is trained again from the configuration
its record holds (in a temporary folder, one thread per worker as the studies run). The trainer is
deterministic for the same code and vector instruction set: the retrained run's final metrics must equal the
stored ones exactly — the same model — and only then are the named probes' rows replaced, one transaction per
run. A run whose metrics differ keeps its stored probes and is named in the report, as is a probe that fails;
nothing else in the store changes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lateralnorm.errors import UsageError
from lateralnorm.study.executors import Executor, LocalExecutor, Task
from lateralnorm.study.store import Store

# the final metrics that identify the trained model (wall time and throughput vary from run to run)
SAME_MODEL = ("test_acc", "test_loss", "train_acc", "train_loss", "diverged_step", "num_params")


@dataclass
class ReprobeReport:
    replaced: list[str] = field(default_factory=list)  # run ids whose probes were replaced
    differ: list[tuple[str, str]] = field(default_factory=list)  # (run id, which metric differs)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, error)

    @property
    def ok(self) -> bool:
        return not self.differ and not self.failed


def _same(stored: Any, new: Any) -> bool:
    if stored is None or new is None:
        return stored is None and new is None
    if isinstance(stored, float) or isinstance(new, float):
        a, b = float(stored), float(new)
        return a == b or (math.isnan(a) and math.isnan(b))
    return stored == new


def lowrank_hint(config: dict[str, Any], versions: dict[str, Any] | None) -> str:
    """What to add when a run does not retrain to its stored model and its low-rank κ's pool took other
    products then than now: runs stored before 2026-12-07 (no `lowrank_products` in their versions) took torch's
    matmuls, later ones what they recorded; the compiled kernel's own products (ranks up to 16, on CPU) round
    differently from torch's."""
    from lateralnorm.norms import cpu_kernel
    from lateralnorm.norms.dn_kernel import KERNEL_MAX_RANK

    ranks = [int(k) for k in re.findall(r"kappa=lowrank:(\d+)", str(config.get("norm") or ""))]
    on_cpu = str(config.get("device") or "cpu").split(":")[0] == "cpu"
    if not on_cpu or not any(k <= KERNEL_MAX_RANK for k in ranks):
        return ""
    then = (versions or {}).get("lowrank_products", "torch")
    return _switch_hint("its low-rank κ's pool took the {} products", "the {} products",
                        "LATERALNORM_LOWRANK_PRODUCTS", then, cpu_kernel.lowrank_products())  # fmt: skip


def _switch_hint(stored: str, now: str, variable: str, then: str, current: str) -> str:
    """' (<stored> when it was stored, <now> now: VARIABLE=then retrains it that way)', each text with one {} for
    its way, or '' when the run was stored the way in use now."""
    if then == current:
        return ""
    return f" ({stored.format(then)} when it was stored, {now.format(current)} now: {variable}={then} retrains it that way)"


def matrix_alpha_hint(config: dict[str, Any], versions: dict[str, Any] | None) -> str:
    """What to add when a run does not retrain to its stored model and its `dn` with a matrix κ (full, low-rank,
    gaussian, GDN) and a learned α ran another way then than now on CPU: runs stored before 2026-12-07 stop 38
    (no `matrix_learned_alpha` in their versions) differentiated the composite formula, later ones what they
    recorded; the compiled element work rounds differently."""
    from lateralnorm.norms import cpu_kernel, create_norm

    on_cpu = str(config.get("device") or "cpu").split(":")[0] == "cpu"
    try:
        layer = create_norm(str(config.get("norm") or "none"), 8)
    except Exception:  # noqa: BLE001 - an unreadable spec gets no hint (the run's own error says why)
        return ""
    if not on_cpu or not getattr(layer, "_matrix", False) or getattr(layer, "alpha_raw", None) is None:
        return ""
    then = (versions or {}).get("matrix_learned_alpha", "formula")
    return _switch_hint("its matrix κ with a learned α ran the {} way", "the {} way",
                        "LATERALNORM_MATRIX_LEARNED_ALPHA", then, cpu_kernel.matrix_learned_alpha())  # fmt: skip


def channel_pool_hint(config: dict[str, Any], versions: dict[str, Any] | None) -> str:
    """What to add when a run does not retrain to its stored model and its CNN's `dn` with a matrix κ over the
    channels (full, gaussian; GDN), not centered and with a fixed α, ran another way then than now on CPU: runs
    stored before 2026-12-07 stop 43 (no `channel_pool` in their versions) transposed the planes to rows, later
    ones what they recorded; the planes route's batched GEMM and sums round differently. It runs on planes of
    `PLANES_FROM` (128) positions or more, which the config alone does not tell: the hint names the switch for
    any CNN run of that kind (a 1-D CNN on MNIST-1D, 40 positions and fewer, took rows either way)."""
    from lateralnorm.models import layout_of
    from lateralnorm.norms import cpu_kernel, create_norm

    on_cpu = str(config.get("device") or "cpu").split(":")[0] == "cpu"
    try:
        layer = create_norm(str(config.get("norm") or "none"), 8)
    except Exception:  # noqa: BLE001 - an unreadable spec gets no hint (the run's own error says why)
        return ""
    structure = getattr(layer, "structure", None)
    if (
        not on_cpu
        or layout_of(str(config.get("model") or "")) != "channels_first"
        or not getattr(layer, "_matrix", False)
        or not getattr(structure, "channel_pooled", False)
        or getattr(layer, "center", True)
        or getattr(layer, "alpha_raw", None) is not None
    ):
        return ""
    then = (versions or {}).get("channel_pool", "rows")
    return _switch_hint("its channels-first matrix κ ran on {}", "on {}",
                        "LATERALNORM_CHANNEL_POOL", then, cpu_kernel.channel_pool())  # fmt: skip


def select_runs(store: Store, probes: list[str], cells: list[str]) -> list[dict[str, Any]]:
    """Finished runs that hold a row of one of `probes`, whose cell label contains one of `cells` (all when
    empty), in plan order: run_id, cell label, config (dict) and the stored final metrics."""
    rows = store.runs_with_probes(probes)
    out = []
    for r in rows:
        if cells and not any(c in r["cell_label"] for c in cells):
            continue
        out.append({"run_id": r["run_id"], "cell": r["cell_label"], "config": json.loads(r["config"]),
                    "stored": {k: r[k] for k in SAME_MODEL}, "versions": json.loads(r["versions"] or "{}")})  # fmt: skip
    return out


def reprobe(
    study_dir: str | Path,
    probes: list[str],
    cells: list[str] | None = None,
    *,
    workers: int = 1,
    threads: int = 1,
    executor: Executor | None = None,
    echo: Callable[[str], None] = print,
) -> ReprobeReport:
    """Recompute `probes` on the study's finished runs (those whose cell label contains one of `cells`)."""
    from lateralnorm.probes import PROBES
    from lateralnorm.study.runner import StudyLock
    from lateralnorm.train import RunResult

    unknown = [p for p in probes if p not in PROBES]
    if not probes or unknown:
        raise UsageError(f"unknown probe(s) {unknown or probes}: choose from {', '.join(sorted(PROBES))}")
    study_dir = Path(study_dir)
    if not (study_dir / "study.db").is_file():
        raise UsageError(
            f"{study_dir} holds no study (no study.db): pass a study folder, e.g. results/studies/…"
        )
    report = ReprobeReport()
    with (
        StudyLock(study_dir),
        Store(study_dir) as store,
        tempfile.TemporaryDirectory(prefix="reprobe-") as tmp,
    ):
        runs = select_runs(store, probes, cells or [])
        if not runs:
            where = f" in cells matching {', '.join(cells)}" if cells else ""
            raise UsageError(f"no finished run of {study_dir} holds {' or '.join(probes)}{where}: "
                             "check --probe and --cell against `lateralnorm study summary`")  # fmt: skip
        echo(f"reprobe {study_dir}: {len(runs)} finished run(s) with {', '.join(probes)} to recompute")
        stored = {r["run_id"]: r for r in runs}
        tasks = [Task(r["run_id"], {**r["config"], "out_dir": str(Path(tmp) / r["run_id"]), "checkpoint": True},
                      tuple(probes)) for r in runs]  # fmt: skip
        ex = executor or LocalExecutor(workers=workers, threads=threads)
        with ex:
            for i, outcome in enumerate(ex.imap(tasks), 1):
                rid = outcome.run_id
                head = f"[{i}/{len(tasks)}] {rid}"
                if outcome.error is not None or outcome.result is None:
                    report.failed.append((rid, outcome.error or "no result"))
                    echo(f"{head}  FAILED  {outcome.error}")
                    continue
                shutil.rmtree(Path(tmp) / rid, ignore_errors=True)  # its checkpoint: not needed any more
                try:
                    result = RunResult.model_validate(outcome.result)
                except ValueError as e:
                    report.failed.append((rid, f"its result does not read: {e}"))
                    echo(f"{head}  FAILED  its result does not read")
                    continue
                diff = [k for k in SAME_MODEL if not _same(stored[rid]["stored"][k], getattr(result, k))]
                if diff:
                    k = diff[0]
                    what = f"{k} {getattr(result, k)!r} retrained vs {stored[rid]['stored'][k]!r} stored"
                    report.differ.append((rid, what))
                    config, versions = stored[rid]["config"], stored[rid]["versions"]
                    hint = (lowrank_hint(config, versions) + matrix_alpha_hint(config, versions)
                            + channel_pool_hint(config, versions))  # fmt: skip
                    echo(f"{head}  not the stored model ({what}): its probes are kept{hint}")
                    continue
                errors = [f"{p}: {result.probes[p]['error']}" for p in probes
                          if isinstance(result.probes.get(p), dict) and "error" in result.probes[p]]  # fmt: skip
                if errors or any(p not in result.probes for p in probes):
                    report.failed.append((rid, "; ".join(errors) or "a probe gave no result"))
                    echo(f"{head}  probe failed ({'; '.join(errors)}): its probes are kept")
                    continue
                store.replace_probes(rid, {p: result.probes[p] for p in probes})
                report.replaced.append(rid)
                echo(f"{head}  same model; {', '.join(probes)} replaced")
        # which rows were recomputed, by which code (a study can then tell its recomputed probes from the others)
        reprobes = list(store.meta().get("reprobes") or [])
        reprobes.append({"probes": probes, "cells": cells or [], "at": time.time(), "code": code_version(),
                         "replaced": report.replaced, "kept": [rid for rid, _ in report.differ + report.failed]})  # fmt: skip
        store.set_meta(reprobes=reprobes)
    return report


def code_version() -> str | None:
    """The checkout's commit, None outside a git checkout."""
    from lateralnorm.train import versions

    return versions().get("git")
