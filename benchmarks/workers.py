"""Study worker start and 2-worker speed-up, spawn vs forkserver, measured in one process.

    python benchmarks/workers.py [--runs 8]

For each start method: (1) the latency of a fresh pool's first finished task (a no-op run function: pure
worker start), for the first pool of the driver and for a second pool (a study's tuning pool, then its
main pool; every study of `make results`); (2) the wall time of `--runs` short real runs (MNIST-1D MLP, 2
epochs on 1 000 samples, the size of the demo's quick runs) with 1 and with 2 workers, and the ratio.
Targets (issue 13): worker start ≤ 1 s after the first; 2 workers ≥ 1.7× one worker.
"""

from __future__ import annotations

import argparse
import time

from lateralnorm.runconfig import RunConfig, RunResult
from lateralnorm.study.executors import LocalExecutor, Task


def noop(config: RunConfig) -> RunResult:
    return RunResult(run_id="noop", config=config.model_dump(), status="done")


def first_result_latency(context: str) -> float:
    ex = LocalExecutor(workers=1, run_fn="benchmarks.workers:noop", context=context)
    t0 = time.perf_counter()
    ex.start()
    fut = ex.pool.submit(_execute_noop)
    fut.result()
    took = time.perf_counter() - t0
    ex.shutdown()
    return took


def _execute_noop() -> int:
    return 1


def real_runs(context: str, workers: int, runs: int) -> float:
    ex = LocalExecutor(workers=workers, context=context, threads=1)
    tasks = [
        Task(f"r{i}", RunConfig(dataset="mnist1d", model="mlp", epochs=2, subset=1000, seed=i, checkpoint=False,
                                out_dir=f"/tmp/lateralnorm-bench-workers/{context}-{workers}-{i}").model_dump())
        for i in range(runs)
    ]  # fmt: skip
    t0 = time.perf_counter()
    ex.start()
    futs = [ex.pool.submit(_execute, t) for t in tasks]
    for f in futs:
        assert f.result().result is not None
    took = time.perf_counter() - t0
    ex.shutdown()
    return took


def _execute(task: Task):  # noqa: ANN202
    from lateralnorm.study.executors import execute

    return execute(task, None, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    args = ap.parse_args()
    print("| start method | first pool: first result (s) | second pool (s) | third pool (s) | "
          f"{args.runs} runs, 1 worker (s) | 2 workers (s) | speed-up |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for context in ("spawn", "forkserver"):
        lat = [first_result_latency(context) for _ in range(3)]
        one = real_runs(context, 1, args.runs)
        two = real_runs(context, 2, args.runs)
        print(
            f"| {context} | {lat[0]:.2f} | {lat[1]:.2f} | {lat[2]:.2f} | {one:.1f} | {two:.1f} | {one / two:.2f}× |"
        )


if __name__ == "__main__":
    main()
