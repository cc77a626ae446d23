"""Whole training runs with torch's per-tensor optimizer loop against foreach (the trainer's default), in one
process, alternating, 1 thread; the parameters after training are compared bitwise.

    python benchmarks/optimizer_foreach.py     # prints the table rows of benchmarks/RESULTS.md
"""

from __future__ import annotations

import tempfile
import time

import torch

from lateralnorm import train
from lateralnorm.train import default_config

CASES = [
    ("MLP, LN (the Q3 config: MNIST-1D, depth 2, width 100, 40 epochs)",
     dict(dataset="mnist1d", model="mlp", norm="ln", depth=2, width=100, epochs=40, lr=3e-3, batch_size=100,
          schedule="cosine")),
    ("MLP, dn κ full with learned α (same config)",
     dict(dataset="mnist1d", model="mlp", norm="dn:kappa=full,learn_alpha=true,alpha=1", depth=2, width=100,
          epochs=40, lr=3e-3, batch_size=100, schedule="cosine")),
    ("GPT, LN (the QT config, 4 000 windows, 1 epoch)",
     dict(dataset="fortunes", model="gpt", norm="ln", placement="pre", depth=2, width=64, epochs=1, lr=3e-3,
          batch_size=64, schedule="cosine", subset=4000)),
]  # fmt: skip


def main() -> None:
    out = tempfile.mkdtemp(prefix="lateralnorm-foreach-")
    made = train._optimizer

    def with_flag(flag: bool):  # noqa: ANN202
        def optimizer(config, model):  # noqa: ANN001, ANN202
            opt = made(config, model)
            for group in opt.param_groups:
                group["foreach"] = flag
            return opt

        return optimizer

    print("| run | per-tensor loop (s) | foreach (s) | ratio | parameters bitwise equal |")
    print("|---|---|---|---|---|")
    for name, kw in CASES:
        times: dict[bool, list[float]] = {False: [], True: []}
        params = {}
        for _round in range(2):
            for flag in (False, True):
                train._optimizer = with_flag(flag)
                folder = f"{out}/{flag}"
                config = default_config(
                    **{**kw, "threads": 1, "seed": 0, "checkpoint": True, "out_dir": folder}
                )
                t0 = time.perf_counter()
                train.run(config, progress=False)
                times[flag].append(time.perf_counter() - t0)
                params[flag] = torch.load(f"{folder}/checkpoint.pt", weights_only=True)
        train._optimizer = made
        same = all(torch.equal(params[False][k], params[True][k]) for k in params[False])
        loop, batched = min(times[False]), min(times[True])
        print(f"| {name} | {loop:.2f} | {batched:.2f} | {batched / loop:.2f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
