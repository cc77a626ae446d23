"""`lateralnorm train`: one training run from flags that mirror RunConfig's fields.

Flags left out take the default recipe for (model, dataset) (see lateralnorm.train.RECIPES), then
RunConfig's defaults. Prints a progress bar (plain lines when not a terminal), then the final metrics and
the run folder.
"""

from __future__ import annotations

import argparse
from typing import Any

from lateralnorm.choices import choices


def _one_of(field: str, default: str) -> str:
    return ", ".join(f"{c} (default)" if c == default else c for c in choices(field))


# flag → (RunConfig field, type, help)
FLAGS: list[tuple[str, str, Any, str]] = [
    ("--dataset", "dataset", str, "mnist1d (default), fashion-mnist, mnist, digits, moons, xor, ..."),
    ("--model", "model", str, "linear, mlp (default), cnn, cnn1d, rnn, gru, lstm, transformer"),
    ("--norm", "norm", str, "norm spec, e.g. ln, rms, gelu>ln, dn:kappa=band:5,alpha=2, none"),
    (
        "--placement",
        "placement",
        str,
        _one_of("placement", "post") + ": Linear→norm→act, Linear→act→norm, Linear→norm",
    ),
    ("--depth", "depth", int, "hidden layers / conv blocks / stacked cells"),
    ("--width", "width", int, "hidden units / channels / state size"),
    ("--activation", "activation", str, "relu, gelu, elu, silu, tanh, ..."),
    ("--subset", "subset", int, "train on the first N training samples"),
    ("--samples", "samples", int, "size of generated data sets (toys, mnist1d)"),
    ("--data-dir", "data_dir", str, "folder holding the IDX files (fashion-mnist, mnist)"),
    ("--seed", "seed", int, "random seed (default 0)"),
    ("--epochs", "epochs", int, "training epochs"),
    ("--batch-size", "batch_size", int, "mini-batch size"),
    ("--lr", "lr", float, "learning rate (peak rate for cosine/onecycle)"),
    ("--optimizer", "optimizer", str, _one_of("optimizer", "adamw")),
    ("--momentum", "momentum", float, "SGD momentum"),
    ("--weight-decay", "weight_decay", float, "decoupled weight decay"),
    ("--schedule", "schedule", str, _one_of("schedule", "constant") + " (or the recipe's)"),
    ("--device", "device", str, _one_of("device", "cpu")),
    ("--threads", "threads", int, "torch CPU threads"),
    ("--out", "out_dir", str, "run folder (default runs/<run-id>)"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one model (progress bar, run folder with config, metrics and checkpoint)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, dest, typ, text in FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=None, help=text)
    p.add_argument("--random-labels", dest="random_labels", action="store_true", default=None,
                   help="replace training labels by uniform random ones (capacity tests)")  # fmt: skip
    p.add_argument("--no-checkpoint", dest="checkpoint", action="store_false", default=None,
                   help="do not save checkpoint.pt")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress output, only the final line")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from lateralnorm.train import default_config, run

    given = {dest: getattr(args, dest) for _, dest, _, _ in FLAGS}
    given["random_labels"], given["checkpoint"] = args.random_labels, args.checkpoint
    given = {k: v for k, v in given.items() if v is not None}
    dataset, model = given.pop("dataset", "mnist1d"), given.pop("model", "mlp")
    config = default_config(dataset, model, **given)
    result = run(config, progress=not args.quiet)
    if result.status == "diverged":
        print(f"diverged at step {result.diverged_step} ({result.wall_s:.1f} s) -> {result.out_dir}")
    elif result.test_acc is None:
        print(f"{result.status}: no epochs trained -> {result.out_dir}")
    else:
        print(
            f"{result.status}: test_acc {result.test_acc:.4f}  test_loss {result.test_loss:.4f}  "
            f"train_acc {result.train_acc:.4f}  ({result.wall_s:.1f} s, {result.num_params} params) "
            f"-> {result.out_dir}"
        )
    return 0
