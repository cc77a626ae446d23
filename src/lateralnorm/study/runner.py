"""The driver: plan a spec, hold the study folder's lock, hand pending runs to an executor and write every
outcome to the store as it arrives.

Resume is the normal path: runs already done or diverged are skipped, runs a dead driver left 'running'
go back to pending, failed runs are retried only with `retry_failed`. Ctrl-C stops the workers and puts
their runs back to pending; `kill -9` leaves them 'running' until the next `study run` requeues them.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lateralnorm.errors import UsageError
from lateralnorm.runconfig import RunResult
from lateralnorm.study import adaptive, stats, tuning
from lateralnorm.study.executors import Executor, Outcome, RunFn, Task, make_executor
from lateralnorm.study.plan import baseline_label, baseline_map, plan
from lateralnorm.study.spec import StudySpec
from lateralnorm.study.store import Store

LOCK_NAME = ".lock"


def default_study_dir(spec: StudySpec) -> Path:
    return Path("runs") / spec.name


class StudyLock:
    """An exclusive fcntl.flock on `<study>/.lock`, released by the kernel if the driver dies.
    The file holds the driver's pid, only to name it in the refusal message."""

    def __init__(self, study_dir: str | Path) -> None:
        self.path = Path(study_dir) / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> StudyLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(
                f"{self.path.parent} is in use by another `lateralnorm study` run or reprobe (pid {holder}): "
                "wait for it to finish or stop it, then run again (it resumes where it stopped)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def lock_holder(study_dir: str | Path) -> int | None:
    """Pid of a live driver holding the study's lock, else None (probed without taking the lock)."""
    try:
        text = (Path(study_dir) / LOCK_NAME).read_text().strip()
        pid = int(text)
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@dataclass
class RunReport:
    """What one `study run` did."""

    study_dir: Path
    planned: int = 0
    skipped: int = 0  # already finished before this call
    done: int = 0
    diverged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run_id, one-line error)
    requeued: int = 0  # left running by a dead driver, put back to pending
    stopped_early: bool = False  # --fail-fast

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stopped_early


def _check_same_study(store: Store, spec: StudySpec) -> None:
    meta = store.meta()
    if not meta:
        return
    if meta.get("name") != spec.name or meta.get("variant") != spec.variant:
        had = meta.get("name") + (f" --variant {meta['variant']}" if meta.get("variant") else "")
        now = spec.name + (f" --variant {spec.variant}" if spec.variant else "")
        raise UsageError(
            f"{store.study_dir} holds study '{had}', not '{now}': pass --out to use another folder"
        )


def run_study(
    spec: StudySpec,
    study_dir: str | Path | None = None,
    *,
    executor: str | Executor = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    fail_fast: bool = False,
    retry_failed: bool = False,
    run_fn: RunFn | None = None,
    spec_path: str | None = None,
    echo: Callable[[str], None] = print,
) -> RunReport:
    """Run (or resume) a study into `study_dir` (default runs/<name>). Returns a RunReport.

    With `[tune]` the tuning study in `<study>/tune` runs first and fixes each cell's learning rate; with
    `[adaptive]` seeds are added to unresolved cells look by look (lateralnorm.study.adaptive)."""
    study_dir = Path(study_dir) if study_dir is not None else default_study_dir(spec)
    ex = executor if isinstance(executor, Executor) else make_executor(executor, workers, run_fn, ray_address)
    report = RunReport(study_dir=study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    with StudyLock(study_dir), Store(study_dir) as store:
        _check_same_study(store, spec)
        lr_of: dict[str, float] | None = None
        if spec.tune is not None:
            tuned = _tune(spec, study_dir, ex, fail_fast, retry_failed, echo)
            if tuned is None:  # --fail-fast stopped the tuning study
                report.stopped_early = True
                return report
            lr_of = tuned
        meta = store.meta()
        extra: dict[str, list[int]] = dict(meta.get("extra_seeds") or {}) if spec.adaptive else {}
        looks: list[dict] = list(meta.get("looks") or []) if spec.adaptive else []
        n_start = len(spec.seeds)
        confidence = 1 - adaptive.alpha_per_look(spec.adaptive, n_start) if spec.adaptive else 0.95
        baselines = baseline_map(spec)
        now = time.time()
        store.set_meta(
            name=spec.name, variant=spec.variant, spec=spec.model_dump(mode="json"), spec_path=spec_path,
            spec_header=leading_comment(spec_path), axes=spec.axes(), baseline=baseline_label(spec), baselines=baselines, tuned_lr=lr_of,
            confidence=confidence, executor=ex.name, workers=ex.workers,
            created=meta.get("created", now), updated=now,
        )  # fmt: skip
        report.requeued = store.requeue_running()
        started = False
        try:
            while True:
                planned = plan(spec, study_dir, lr_of=lr_of, extra_seeds=extra)
                store.set_meta(extra_seeds=extra, looks=looks)
                store.add_runs(planned)
                if not started:
                    report.planned = len(planned)
                    report.skipped = sum(
                        s in ("done", "diverged") for s in store.status_of(p.run_id for p in planned).values()
                    )
                else:
                    report.planned = len(planned)
                started = _execute(store, ex, spec, planned, report, retry_failed, fail_fast, echo, started)
                if spec.adaptive is None or report.stopped_early:
                    break
                seeds_of = {p.cell_label: [] for p in planned}
                for p in planned:
                    seeds_of[p.cell_label].append(p.seed)
                from lateralnorm.study import Study

                with Study(study_dir) as reader:
                    runs = reader.runs()
                runs = runs[runs["run_id"].isin({p.run_id for p in planned})]
                lk = adaptive.look(runs, baselines, spec.adaptive, n_start, seeds_of, spec.metric)
                record = {"look": len(looks) + 1, "runs": len(planned), "resolved": lk.resolved,
                          "unresolved": lk.unresolved, "capped": lk.capped, "added": lk.add}  # fmt: skip
                if not looks or looks[-1].get("runs") != len(planned):
                    looks.append(record)
                else:
                    looks[-1] = record
                store.set_meta(looks=looks)
                if not lk.add:
                    echo(
                        f"study {spec.name}: look {len(looks)}: {len(lk.resolved)} comparisons resolved, "
                        f"{len(lk.capped)} unresolved at max_seeds = {spec.adaptive.max_seeds}; done"
                    )
                    break
                echo(
                    f"study {spec.name}: look {len(looks)}: {len(lk.resolved)} resolved, {len(lk.unresolved)} "
                    f"unresolved -> {sum(map(len, lk.add.values()))} more runs"
                )
                for cell, seeds in lk.add.items():
                    extra[cell] = sorted(set(extra.get(cell, [])) | set(seeds))
        finally:
            if started:
                ex.shutdown(cancel=bool(ex.inflight))
    return report


def _tune(
    spec: StudySpec, study_dir: Path, ex: Executor, fail_fast: bool, retry_failed: bool,
    echo: Callable[[str], None],
) -> dict[str, float] | None:  # fmt: skip
    """Run (or resume) the tuning study; the chosen rate per cell, or None when --fail-fast stopped it."""
    from lateralnorm.study import Study

    tspec = tuning.tune_spec(spec)
    tdir = study_dir / tuning.TUNE_DIR
    sub = run_study(tspec, tdir, executor=ex, fail_fast=fail_fast, retry_failed=retry_failed, echo=echo)
    if sub.stopped_early:
        return None
    with Study(tdir) as reader:
        table = tuning.grid_table(spec, reader.runs(), spec.metric)
    chosen = tuning.choose(table, lower_is_better=stats.lower_is_better(spec.metric))
    echo(f"study {spec.name}: learning rates chosen on the validation split: "
         + ", ".join(f"{c} -> {lr:g}" for c, lr in chosen.items()))  # fmt: skip
    return chosen


def _execute(
    store: Store, ex: Executor, spec: StudySpec, planned: list, report: RunReport, retry_failed: bool,
    fail_fast: bool, echo: Callable[[str], None], started: bool,
) -> bool:  # fmt: skip
    """Run the planned runs that are pending (and failed, with retry_failed); returns whether the executor is
    started. Ctrl-C or an error stops the workers and puts their runs back to pending."""
    status = store.status_of(p.run_id for p in planned)
    wanted = ("pending", "failed") if retry_failed else ("pending",)
    todo = [p for p in planned if status[p.run_id] in wanted]
    n_failed = sum(s == "failed" for s in status.values())
    finished = sum(s in ("done", "diverged") for s in status.values())

    def header() -> None:
        echo(
            f"study {spec.name}: {len(planned)} runs, {finished} finished, {n_failed} failed"
            f"{'' if retry_failed or not n_failed else ' (--retry-failed reruns them)'}, {len(todo)} to run"
            f" -> {store.study_dir} ({ex.name}, {ex.workers} worker{'s' * (ex.workers > 1)})"
        )

    if not todo:
        header()
        return started
    tasks = [Task(p.run_id, p.config.model_dump(mode="json"), tuple(spec.probes)) for p in todo]
    width = len(str(len(tasks)))
    interrupted = True
    try:
        if not started:
            ex.start()  # a Ray executor learns its worker count here
            started = True
            store.set_meta(workers=ex.workers)
        header()
        t0 = time.perf_counter()
        for i, outcome in enumerate(ex.imap(tasks, lambda t: store.mark_running(t.run_id, ex.name)), 1):
            line = _record(store, outcome, report)
            left = (time.perf_counter() - t0) / i * (len(tasks) - i)
            echo(f"[{i:>{width}}/{len(tasks)}] {line}  (left ~{format_duration(left)})")
            if fail_fast and outcome.error is not None:
                report.stopped_early = True
                echo(f"--fail-fast: stopping; {len(tasks) - i} runs left pending")
                break
        interrupted = False
    finally:  # runs still in flight (fail-fast, Ctrl-C, an error) are stopped and go back to pending
        if interrupted or ex.inflight:
            ex.shutdown(cancel=True)
            started = False
        store.requeue_running(ex.inflight_ids())
        ex.inflight.clear()
    return started


def leading_comment(spec_path: str | None) -> str | None:
    """The spec file's leading comment lines (the question it asks), stored with the study so a report
    never reads files a database names."""
    if not spec_path:
        return None
    try:
        text = Path(spec_path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _record(store: Store, outcome: Outcome, report: RunReport) -> str:
    """Write one outcome; return the line to print."""
    if outcome.error is not None or outcome.result is None:
        error = outcome.error or "no result"
        store.record_failure(outcome.run_id, error, outcome.traceback, outcome.wall_s)
        report.failed.append((outcome.run_id, error))
        return f"FAILED   {outcome.run_id}  {error}"
    result = RunResult.model_validate(outcome.result)
    store.record_result(result, wall_s=outcome.wall_s)
    if result.status == "diverged":
        report.diverged += 1
        return f"diverged {outcome.run_id}  at step {result.diverged_step}  {outcome.wall_s:.1f}s"
    report.done += 1
    acc = f"test_acc={result.test_acc:.4f}" if result.test_acc is not None else ""
    return f"done     {outcome.run_id}  {acc}  {outcome.wall_s:.1f}s"


def summary_lines(report: RunReport) -> list[str]:
    """The closing summary of a run: counts, then each failure on one line."""
    lines = [
        f"{report.done} done, {report.diverged} diverged, {len(report.failed)} failed, "
        f"{report.skipped} already finished (of {report.planned}) -> {report.study_dir}"
    ]
    lines += [f"  failed {rid}: {err}" for rid, err in report.failed]
    if report.failed:
        lines.append(f"  tracebacks: lateralnorm study status {report.study_dir} --errors")
    return lines
