"""Study execution: scaling from 1 to 2 workers, and the executor + store overhead vs a plain loop.

    python benchmarks/sweep_scaling.py [--runs 8] [--epochs 20] [--width 128]

Same grid of small MLP runs on MNIST-1D (data generated once, then read from the cache) timed as:
    loop      lateralnorm.train.run in a plain loop in this process, 1 torch thread
    study 1   run_study with a LocalExecutor of 1 worker, 1 thread (same work as the loop)
    study 2   run_study with 2 workers, 1 thread each
Printed: speed-up = study 1 / study 2 (target >= 1.7x on 2 cores) and overhead = study 1 / loop - 1
(target <= 5%), also split into the one-off worker start (spawn, import torch, load the data) and the
per-run part.
Numbers are ratios measured in the same process; other load on the machine shows up in them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lateralnorm.runconfig import RunConfig
from lateralnorm.study import LocalExecutor, plan, run_study, validate_spec
from lateralnorm.study.executors import Task


def spec_for(runs: int, epochs: int, width: int) -> dict:
    lrs = [1e-3 * (1 + i) for i in range(max(1, runs // 2))]
    return {
        "name": "bench",
        "seeds": [0, 1],
        "base": {
            "dataset": "mnist1d",
            "model": "mlp",
            "depth": 2,
            "width": width,
            "epochs": epochs,
            "checkpoint": False,
        },  # fmt: skip
        "grid": {"lr": lrs},
    }


def time_study(spec, workers: int) -> tuple[float, float]:
    """(wall seconds of run_study, mean per-run seconds measured inside the workers)."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run_study(
            spec, Path(d) / "s", executor=LocalExecutor(workers=workers, threads=1), echo=lambda s: None
        )
        wall = time.perf_counter() - t0
        from lateralnorm.study import Study

        with Study.load(Path(d) / "s") as study:
            runs = study.runs()
        assert (runs["status"] == "done").all(), runs[["run_id", "status", "error"]]
        return wall, float(runs["task_wall_s"].mean())


def pool_start_s(config: RunConfig) -> float:
    """Time for a fresh 1-worker pool to spawn, import torch and the trainer, load the data and return
    a 0-epoch run: the one-off cost of a worker."""
    ex = LocalExecutor(workers=1, threads=1)
    t0 = time.perf_counter()
    ex.start()
    (outcome,) = ex.imap([Task("warm", config.model_copy(update={"epochs": 0}).model_dump(mode="json"))])
    assert outcome.error is None, outcome.error
    wall = time.perf_counter() - t0
    ex.shutdown()
    return wall


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
        t0 = time.perf_counter()
        walls = [run(c, progress=False).wall_s for c in configs]
        loop = time.perf_counter() - t0
    n = len(configs)
    print(
        f"{n} runs of a {spec.base['depth']}x{args.width} MLP, {args.epochs} epochs on MNIST-1D, 1 thread each"
    )
    print(
        f"  loop of train.run     {loop:7.2f} s   ({loop / n:.2f} s/run, training {sum(walls) / n:.2f} s/run)"
    )
    with tempfile.TemporaryDirectory() as d:
        start = pool_start_s(configs[0].model_copy(update={"out_dir": d}))
    one, per_run_1 = time_study(spec, 1)
    two, _ = time_study(spec, 2)
    print(
        f"  study, 1 worker       {one:7.2f} s   (pool start + warm-up {start:.2f} s; {per_run_1:.2f} s/run inside the worker)"
    )
    print(f"  study, 2 workers      {two:7.2f} s")
    print(f"speed-up 2 vs 1 worker: {one / two:.2f}x   (target >= 1.7x)")
    print(f"overhead vs loop:       {100 * (one / loop - 1):+.1f}% total   (target <= 5%)")
    print(f"  without the pool start: {100 * ((one - start) / loop - 1):+.1f}%   "
          f"({(one - start - loop) / n * 1000:+.0f} ms per run)")  # fmt: skip


if __name__ == "__main__":
    main()
