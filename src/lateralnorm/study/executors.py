"""Executors run study tasks somewhere else and hand outcomes back to the driver, as they finish.

    LocalExecutor   a process pool on this machine (concurrent.futures, forkserver context where available)
    InlineExecutor  the driver process itself, one run at a time (debugging, tests)
    RayExecutor     Ray core tasks on a local Ray or a cluster (`pip install lateralnorm[ray]`)

Both keep at most `workers` tasks in flight, so a task is marked running when it really starts and a
stopped study leaves nothing queued. Workers never touch the store: `execute` trains (and probes) one run
and returns an `Outcome` (a RunResult dict or a one-line error with its traceback); the driver writes it.
Each worker uses `threads` torch threads, by default cores // workers.

The run function is injectable: a callable or a "module:function" string, resolved in the worker;
the default is lateralnorm.train.run without a progress bar (`train_quietly`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback as tb
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lateralnorm.errors import UsageError
from lateralnorm.runconfig import RunConfig, RunResult

DEFAULT_RUN_FN = "lateralnorm.study.executors:train_quietly"
TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"
RunFn = Callable[[RunConfig], RunResult] | str


@dataclass(frozen=True)
class Task:
    run_id: str
    config: dict[str, Any]  # RunConfig.model_dump()
    probes: tuple[str, ...] = ()


@dataclass
class Outcome:
    run_id: str
    result: dict[str, Any] | None  # RunResult.model_dump(mode="json"), None when the run failed
    error: str | None = None  # one line: "ValueError: lr must be positive"
    traceback: str | None = None
    wall_s: float = 0.0  # measured in the worker, training and probes together
    worker: str = ""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def train_quietly(config: RunConfig) -> RunResult:
    """lateralnorm.train.run with its progress bar off (workers share the driver's terminal)."""
    from lateralnorm.train import run

    return run(config, progress=False)


def resolve_run_fn(fn: RunFn | None) -> Callable[[RunConfig], RunResult]:
    """A callable, or "module:function" imported here (in the worker)."""
    if fn is None:
        fn = DEFAULT_RUN_FN
    if callable(fn):
        return fn
    module, _, name = fn.partition(":")
    if not module or not name:
        raise UsageError(f"run function {fn!r} must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"cannot load run function {fn!r}: {one_line(e)}") from None
    if not callable(obj):
        raise UsageError(f"run function {fn!r} is not callable")
    return obj


def _run_probes(names: tuple[str, ...], run_dir: str) -> dict[str, Any]:
    """All probes on one loaded run; if that fails, each on its own, so a failing probe is recorded as
    {"error": ...} and the others still give their results."""
    from lateralnorm.probes import run_probes

    try:
        return run_probes(list(names), run_dir)
    except Exception as e:
        if len(names) == 1:
            return {names[0]: {"error": one_line(e)}}
    out: dict[str, Any] = {}
    for name in names:
        try:
            out.update(run_probes([name], run_dir))
        except Exception as e:
            out[name] = {"error": one_line(e)}
    return out


def execute(task: Task, run_fn: RunFn | None = None, threads: int | None = None) -> Outcome:
    """Train one run (then its probes) in this process. Never raises for a failing run: returns its error."""
    start = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        config = RunConfig(**task.config)
        if threads:
            import torch

            torch.set_num_threads(threads)
            if config.threads is None:
                config = config.model_copy(update={"threads": threads})
        result = resolve_run_fn(run_fn)(config)
        if not isinstance(result, RunResult):
            result = RunResult.model_validate(result)
        update: dict[str, Any] = {"run_id": task.run_id}
        if task.probes and result.status == "done":
            update["probes"] = {**result.probes, **_run_probes(task.probes, result.out_dir or config.out_dir)}
        result = result.model_copy(update=update)
        return Outcome(
            task.run_id, result.model_dump(mode="json"), wall_s=time.perf_counter() - start, worker=worker
        )
    except Exception as e:
        return Outcome(
            task.run_id, None, one_line(e), tb.format_exc(), wall_s=time.perf_counter() - start, worker=worker
        )


def _execute_in_ray_worker(task: Task, run_fn: RunFn | None = None, threads: int | None = None) -> Outcome:
    """`execute` in a Ray worker process, which then keeps its freed memory as the local pool's workers do."""
    from lateralnorm.allocator import keep_freed_memory

    keep_freed_memory()
    return execute(task, run_fn, threads)


class Executor:
    """Runs tasks with at most `workers` in flight; subclasses provide start/submit/wait/shutdown."""

    name = "executor"

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise UsageError(f"--workers must be at least 1 (got {workers})")
        self.workers = workers
        self.inflight: dict[Any, Task] = {}

    def start(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def submit(self, task: Task) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def wait(self, handles: list[Any]) -> list[tuple[Any, Outcome]]:  # pragma: no cover - abstract
        """Block until at least one handle finished; return (handle, outcome) for each finished one."""
        raise NotImplementedError

    def shutdown(self, cancel: bool = False) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def inflight_ids(self) -> list[str]:
        return [t.run_id for t in self.inflight.values()]

    def imap(
        self, tasks: Iterable[Task], on_submit: Callable[[Task], None] | None = None
    ) -> Iterator[Outcome]:
        """Outcomes in completion order. `on_submit(task)` runs just before a task is handed to a worker."""
        todo = iter(tasks)

        def fill() -> None:
            while len(self.inflight) < self.workers:
                task = next(todo, None)
                if task is None:
                    return
                if on_submit:
                    on_submit(task)
                self.inflight[self.submit(task)] = task

        fill()
        while self.inflight:
            finished = self.wait(list(self.inflight))
            for handle, _ in finished:
                self.inflight.pop(handle)
            fill()  # keep the workers busy before the driver writes the results
            for _, outcome in finished:
                yield outcome

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.shutdown(cancel=exc_type is not None or bool(self.inflight))


# ----------------------------------------------------------------------------------------------- inline
class InlineExecutor(Executor):
    """Runs each task in the driver process, one at a time: for debugging (breakpoints work) and tests."""

    name = "inline"

    def __init__(self, run_fn: RunFn | None = None, threads: int | None = None) -> None:
        super().__init__(1)
        self.run_fn = run_fn
        self.threads = threads
        self._next = 0

    def start(self) -> None:
        return None

    def submit(self, task: Task) -> int:
        self._next += 1
        return self._next

    def wait(self, handles: list[int]) -> list[tuple[int, Outcome]]:
        handle = handles[0]
        return [(handle, execute(self.inflight[handle], self.run_fn, self.threads))]

    def shutdown(self, cancel: bool = False) -> None:
        return None


# ------------------------------------------------------------------------------------------------ local
def _init_worker(threads: int, driver_pid: int, env: dict[str, str] | None = None) -> None:
    """Pool worker setup: Ctrl-C is the driver's to handle; exit when the driver is gone (kill -9). A worker
    forked from the fork server has the environment of the moment the server started: `env` (the driver's
    environment when this pool starts) replaces it, and PYTHONPATH's folders join sys.path, as they would in
    a freshly spawned interpreter."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
        for folder in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
            if folder and folder not in sys.path:
                sys.path.insert(0, folder)
    import torch

    from lateralnorm.allocator import keep_freed_memory

    torch.set_num_threads(threads)
    keep_freed_memory()  # a worker only trains: glibc keeps its freed pages for the next step (allocator.py)
    parent = os.getppid()  # the driver (spawn) or the fork server, which exits when the driver does

    def driver_alive() -> bool:
        if os.getppid() != parent:
            return False
        try:
            os.kill(driver_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - alive, owned by someone else
            pass
        return True

    def watchdog() -> None:
        while driver_alive():
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True, name="driver-watchdog").start()


PRELOAD = ("lateralnorm.study.executors", "lateralnorm.train", "lateralnorm.probes")


def default_context() -> str:
    """forkserver where the platform has it (Linux), else spawn. Both start workers from a clean process (no
    driver state, store connection or lock file descriptor leaks into them); forkserver's server has the
    heavy imports done once (PRELOAD), so workers start in a fraction of a second."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class LocalExecutor(Executor):
    """A process pool on this machine (forkserver or spawn context, see `default_context`)."""

    name = "local"

    def __init__(
        self, workers: int | None = None, run_fn: RunFn | None = None, threads: int | None = None,
        context: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(workers or cpu_count())
        self.run_fn = run_fn
        self.threads = threads or max(1, cpu_count() // self.workers)
        self.context = context or default_context()
        self.pool: cf.ProcessPoolExecutor | None = None
        self.isolated: dict[cf.Future, cf.ProcessPoolExecutor] = {}  # runs retried alone after a pool crash

    def start(self) -> None:
        # after a kill -9 of the driver, multiprocessing's resource tracker (a process of its own) cleans up the
        # pool's semaphores and warns about each "leak"; the cleanup is the expected path there, so the tracker,
        # which takes its -W flags from this list when it starts, is told not to warn
        if TRACKER_QUIET not in sys.warnoptions:
            sys.warnoptions.append(TRACKER_QUIET)
        self.pool = self._new_pool(self.workers)

    def _new_pool(self, workers: int) -> cf.ProcessPoolExecutor:
        ctx = multiprocessing.get_context(self.context)
        if self.context == "forkserver":
            # the fork server imports torch and the trainer once; every worker of every pool this driver starts
            # is then forked from it with those imports done (a spawned worker pays ~1.5-5 s for them)
            ctx.set_forkserver_preload(list(PRELOAD))
        return cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self.threads, os.getpid(), dict(os.environ)),
        )

    def submit(self, task: Task) -> cf.Future:
        if self.pool is None:
            self.start()
        try:
            return self.pool.submit(execute, task, self.run_fn, self.threads)
        except cf.process.BrokenProcessPool:  # a worker died earlier: start a fresh pool
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.start()
            return self.pool.submit(execute, task, self.run_fn, self.threads)

    def wait(self, handles: list[cf.Future]) -> list[tuple[cf.Future, Outcome]]:
        """Finished handles with their outcomes. When a worker process dies, the pool breaks and every run in
        flight fails with it, though only one caused it: each such run is run again alone, in a one-worker
        pool of its own, and only a run whose own pool dies too is recorded as failed."""
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            task = self.inflight[fut]
            alone = self.isolated.pop(fut, None)
            if alone is not None:
                alone.shutdown(wait=False, cancel_futures=True)
            try:
                out.append((fut, fut.result()))
            except Exception as e:  # the worker process itself died (killed, out of memory, segfault)
                if alone is None:  # caught in a shared pool's crash: run it again on its own
                    del self.inflight[fut]
                    pool = self._new_pool(1)
                    retry = pool.submit(execute, task, self.run_fn, self.threads)
                    self.isolated[retry] = pool
                    self.inflight[retry] = task
                    continue
                out.append((fut, Outcome(task.run_id, None, f"worker process died (also when run alone): {one_line(e)}",
                                         tb.format_exc())))  # fmt: skip
        return out

    def shutdown(self, cancel: bool = False) -> None:
        for pool in self.isolated.values():
            for p in list((getattr(pool, "_processes", None) or {}).values()) if cancel else []:
                p.terminate()
            pool.shutdown(wait=not cancel, cancel_futures=True)
        self.isolated.clear()
        if self.pool is None:
            return
        if cancel:
            processes = list((getattr(self.pool, "_processes", None) or {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for p in processes:  # runs in flight are abandoned: the driver puts them back to pending
                p.terminate()
            for p in processes:
                p.join(timeout=5)
        else:
            self.pool.shutdown(wait=True)
        self.pool = None


# -------------------------------------------------------------------------------------------------- ray
class RayExecutor(Executor):
    """Ray core tasks, one CPU bundle of `threads` per run. Connects to `address` ("auto", "ray://...")
    or starts a local Ray with `num_cpus` (then stops it at shutdown). Workers need lateralnorm installed."""

    name = "ray"

    def __init__(
        self, address: str | None = None, workers: int | None = None, run_fn: RunFn | None = None,
        threads: int = 1, num_cpus: int | None = None,
    ) -> None:  # fmt: skip
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("the ray executor needs Ray: pip install 'lateralnorm[ray]'") from None
        self.address = address
        self.run_fn = run_fn
        self.threads = max(1, threads)
        self.num_cpus = num_cpus if num_cpus is not None else (None if address else cpu_count())
        self._owns_ray = False
        self._remote: Any = None
        super().__init__(workers or 1)
        self._workers_given = workers is not None

    def start(self) -> None:
        import logging

        import ray

        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address, num_cpus=self.num_cpus, include_dashboard=False,
                    logging_level=logging.WARNING, log_to_driver=False,
                )  # fmt: skip
            except ConnectionError as e:
                raise UsageError(f"cannot reach Ray at {self.address!r}: {one_line(e)}") from None
            self._owns_ray = self.address is None
        if not self._workers_given:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers = max(1, cpus // self.threads)
        self._remote = ray.remote(num_cpus=self.threads, max_retries=0)(_execute_in_ray_worker)

    def submit(self, task: Task) -> Any:
        if self._remote is None:
            self.start()
        return self._remote.remote(task, self.run_fn, self.threads)

    def wait(self, handles: list[Any]) -> list[tuple[Any, Outcome]]:
        import ray

        ready, _ = ray.wait(handles, num_returns=1)
        out = []
        for ref in ready:
            task = self.inflight[ref]
            try:
                out.append((ref, ray.get(ref)))
            except Exception as e:  # the Ray worker died or the task could not be deserialized
                out.append(
                    (ref, Outcome(task.run_id, None, f"ray task failed: {one_line(e)}", tb.format_exc()))
                )
        return out

    def shutdown(self, cancel: bool = False) -> None:
        import ray

        if not ray.is_initialized():
            return
        if cancel:
            for ref in list(self.inflight):
                with contextlib.suppress(Exception):  # already finished or gone: nothing to stop
                    ray.cancel(ref, force=True)
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
        self._remote = None


def make_executor(
    kind: str, workers: int | None = None, run_fn: RunFn | None = None, ray_address: str | None = None
) -> Executor:
    if kind == "local":
        return LocalExecutor(workers=workers, run_fn=run_fn)
    if kind == "ray":
        return RayExecutor(address=ray_address, workers=workers, run_fn=run_fn)
    if kind == "inline":
        return InlineExecutor(run_fn=run_fn)
    raise UsageError(f"unknown executor {kind!r}: use 'local', 'ray' or 'inline'")
