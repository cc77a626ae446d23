"""Overhead of lateralnorm.train.run against a plain PyTorch loop on the same MLP and data.

    python benchmarks/train_overhead.py [--dataset mnist1d] [--epochs 60] [--repeats 5]

Both train the same seeded model (same build_model, AdamW, batch order) and evaluate the test split
every epoch; run() also validates, writes config/metrics/checkpoint/result and tracks train metrics.
Timings alternate between the two and keep the best of `repeats`. Target: ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from lateralnorm.data import load_dataset
from lateralnorm.models import build_model
from lateralnorm.train import default_config, run


def plain_loop(cfg, data) -> float:
    """The reference: a bare training loop, returns the final test accuracy."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.meta.input_shape, data.meta.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y, n = data.x_train, data.y_train, len(data.y_train)
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    return acc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--norm", default="ln")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = default_config(args.dataset, "mlp", norm=args.norm, epochs=args.epochs, schedule="constant")
    data = load_dataset(cfg.dataset, seed=cfg.seed)
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as out:
        for r in range(args.repeats):
            t0 = time.perf_counter()
            acc_plain = plain_loop(cfg, data)
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = run(cfg.model_copy(update={"out_dir": f"{out}/r{r}"}), progress=False)
            ours.append(time.perf_counter() - t0)
    print(f"MLP {cfg.width}x{cfg.depth} norm {cfg.norm!r} on {cfg.dataset}, {cfg.epochs} epochs, 1 thread")
    print(f"| loop | best of {args.repeats} (s) | test acc |")
    print("|---|---|---|")
    print(f"| plain torch loop | {min(plain):.3f} | {acc_plain:.4f} |")
    print(f"| lateralnorm.train.run | {min(ours):.3f} | {result.test_acc:.4f} |")
    ratio = min(ours) / min(plain)
    print(f"ratio run/plain: {ratio:.3f}x (target <= 1.05x): {'met' if ratio <= 1.05 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
