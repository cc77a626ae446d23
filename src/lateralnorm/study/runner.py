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
from lateralnorm.study.executors import Executor, Outcome, RunFn, Task, make_executor
from lateralnorm.study.plan import baseline_label, plan
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
                f"{self.path.parent} is in use by another `lateralnorm study run` (pid {holder}): "
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
    """Run (or resume) a study into `study_dir` (default runs/<name>). Returns a RunReport."""
    study_dir = Path(study_dir) if study_dir is not None else default_study_dir(spec)
    planned = plan(spec, study_dir)
    ex = executor if isinstance(executor, Executor) else make_executor(executor, workers, run_fn, ray_address)
    report = RunReport(study_dir=study_dir, planned=len(planned))
    study_dir.mkdir(parents=True, exist_ok=True)
    with StudyLock(study_dir), Store(study_dir) as store:
        _check_same_study(store, spec)
        now = time.time()
        meta = store.meta()
        store.set_meta(
            name=spec.name, variant=spec.variant, spec=spec.model_dump(mode="json"), spec_path=spec_path,
            axes=spec.axes(), baseline=baseline_label(spec), executor=ex.name, workers=ex.workers,
            created=meta.get("created", now), updated=now,
        )  # fmt: skip
        store.add_runs(planned)
        report.requeued = store.requeue_running()
        status = store.status_of(p.run_id for p in planned)
        wanted = ("pending", "failed") if retry_failed else ("pending",)
        todo = [p for p in planned if status[p.run_id] in wanted]
        report.skipped = sum(status[p.run_id] in ("done", "diverged") for p in planned)
        n_failed = sum(s == "failed" for s in status.values())

        def header() -> None:
            echo(
                f"study {spec.name}: {len(planned)} runs, {report.skipped} finished, {n_failed} failed"
                f"{'' if retry_failed or not n_failed else ' (--retry-failed reruns them)'}, {len(todo)} to run"
                f" -> {study_dir} ({ex.name}, {ex.workers} worker{'s' * (ex.workers > 1)})"
            )

        if not todo:
            header()
            return report
        tasks = [Task(p.run_id, p.config.model_dump(mode="json"), tuple(spec.probes)) for p in todo]
        width = len(str(len(tasks)))
        interrupted = True
        try:
            ex.start()  # a Ray executor learns its worker count here
            store.set_meta(workers=ex.workers)
            header()
            for i, outcome in enumerate(ex.imap(tasks, lambda t: store.mark_running(t.run_id, ex.name)), 1):
                line = _record(store, outcome, report)
                echo(f"[{i:>{width}}/{len(tasks)}] {line}")
                if fail_fast and outcome.error is not None:
                    report.stopped_early = True
                    echo(f"--fail-fast: stopping; {len(tasks) - i} runs left pending")
                    break
            interrupted = False
        finally:  # runs still in flight (fail-fast, Ctrl-C, an error) are stopped and go back to pending
            ex.shutdown(cancel=interrupted or bool(ex.inflight))
            store.requeue_running(ex.inflight_ids())
            ex.inflight.clear()
    return report


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
