"""Study execution: scaling from 1 to 2 workers, and the executor + store overhead vs a plain loop.

    python benchmarks/sweep_scaling.py [--runs 8] [--epochs 20] [--width 128]

One grid of small MLP runs on MNIST-1D (data generated once, then read from the cache), timed as:
    loop       lateralnorm.train.run in a plain loop in this process, 1 torch thread
    study x1   run_study with a LocalExecutor of 1 worker, 1 thread: the same work as the loop
    study x2   run_study with 2 workers, 1 thread each
    start      a fresh 1-worker pool doing a 0-epoch run: spawn, import torch, load the data (one-off)
    driver     run_study with an in-process executor and a run that trains nothing: the per-run cost of
               planning, bookkeeping and the SQLite writes, measured without the noise of training
Printed: speed-up = wall(x1) / wall(x2) (target >= 1.7x on 2 cores) and overhead = x1 / loop - 1
(target <= 5%), in wall time and in CPU time (this process + its workers, from getrusage), in total and
without the one-off worker start. CPU time barely moves when other processes load the machine; wall
time and the speed-up need free cores. All ratios are measured in the same process.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lateralnorm.runconfig import EpochMetrics, RunConfig, RunResult
from lateralnorm.study import InlineExecutor, LocalExecutor, Study, plan, run_study, validate_spec
from lateralnorm.study.executors import Task


def spec_for(runs: int, epochs: int, width: int) -> dict:
    lrs = [1e-3 * (1 + i) for i in range(max(1, runs // 2))]
    base = {
        "dataset": "mnist1d",
        "model": "mlp",
        "depth": 2,
        "width": width,
        "epochs": epochs,
        "checkpoint": False,
    }
    return {"name": "bench", "seeds": [0, 1], "base": base, "grid": {"lr": lrs}}


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of fn(); workers must have exited when fn returns."""
    w0, c0 = time.perf_counter(), cpu_s()
    fn()
    return time.perf_counter() - w0, cpu_s() - c0


def study(spec, workers: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        run_study(
            spec, Path(d) / "s", executor=LocalExecutor(workers=workers, threads=1), echo=lambda s: None
        )
        with Study.load(Path(d) / "s") as s:
            runs = s.runs()
        assert (runs["status"] == "done").all(), runs[["run_id", "status", "error"]]


def instant_run(config: RunConfig) -> RunResult:
    """A run that trains nothing but returns a full result (one EpochMetrics per epoch)."""
    history = [
        EpochMetrics(
            epoch=e,
            train_loss=1.0,
            train_acc=0.5,
            test_loss=1.0,
            test_acc=0.5,
            lr=config.lr,
            wall_s=0.0,
            samples_per_s=1.0,
        )  # fmt: skip
        for e in range(1, config.epochs + 1)
    ]
    return RunResult(run_id=config.run_id(), config=config.model_dump(mode="json"), status="done", test_acc=0.5,
                     history=history, out_dir=config.out_dir)  # fmt: skip


def driver_ms_per_run(epochs: int, n: int = 200) -> float:
    """CPU ms per run spent by the driver and the store (plan, validate, SQLite writes), training excluded."""
    spec = validate_spec({"name": "o", "seeds": list(range(n // 10)), "base": {"epochs": epochs},
                          "grid": {"lr": [1e-3 * (1 + i) for i in range(10)]}})  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        t0 = time.process_time()
        run_study(spec, d, executor=InlineExecutor(instant_run), echo=lambda s: None)
        return (time.process_time() - t0) / n * 1000


def worker_start(config: RunConfig) -> None:
    ex = LocalExecutor(workers=1, threads=1)
    ex.start()
    with tempfile.TemporaryDirectory() as d:
        warm = config.model_copy(update={"epochs": 0, "out_dir": d}).model_dump(mode="json")
        (outcome,) = ex.imap([Task("warm", warm)])
    assert outcome.error is None, outcome.error
    ex.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8, help="grid size (even; default 8)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--width", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = validate_spec(spec_for(args.runs, args.epochs, args.width))
    from lateralnorm.train import run

    with tempfile.TemporaryDirectory() as d:
        configs = [p.config for p in plan(spec, d)]
        run(configs[0].model_copy(update={"epochs": 0}), progress=False)  # generate and cache the data once

        def loop() -> None:
            for c in configs:
                run(c, progress=False)

        results = {"loop": measure(loop)}
    results["start"] = measure(lambda: worker_start(configs[0]))
    results["study x1"] = measure(lambda: study(spec, 1))
    results["study x2"] = measure(lambda: study(spec, 2))

    n = len(configs)
    print(
        f"{n} runs of a {spec.base['depth']}x{args.width} MLP, {args.epochs} epochs on MNIST-1D, 1 torch thread each"
    )
    print(f"  {'':10s} {'wall s':>8s} {'cpu s':>8s}")
    for name, (wall, cpu) in results.items():
        print(f"  {name:10s} {wall:8.2f} {cpu:8.2f}")
    (lw, lc), (sw, sc), (ow, oc), (tw, _) = (results[k] for k in ("loop", "start", "study x1", "study x2"))
    print(f"speed-up 2 vs 1 worker (wall):   {ow / tw:.2f}x   (target >= 1.7x)")
    print(f"overhead vs loop, total:         wall {100 * (ow / lw - 1):+.1f}%   cpu {100 * (oc / lc - 1):+.1f}%"
          "   (target <= 5%)")  # fmt: skip
    print(f"overhead without worker start:   wall {100 * ((ow - sw) / lw - 1):+.1f}%   "
          f"cpu {100 * ((oc - sc) / lc - 1):+.1f}%   ({(oc - sc - lc) / n * 1000:+.0f} ms cpu per run)")  # fmt: skip
    ms = driver_ms_per_run(args.epochs)
    print(f"driver + store alone:            {ms:.2f} ms cpu per run "
          f"= {100 * ms / 1000 / (lc / n):.3f}% of a run here")  # fmt: skip


if __name__ == "__main__":
    main()
