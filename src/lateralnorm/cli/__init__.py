"""The `lateralnorm` command: thin. Each command group lives in its own module with `register(subparsers)`;
handlers parse, call the library and print. User errors end as one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import errno
import importlib
import sqlite3
import sys

# one module per command group; each defines register(subparsers) and sets args.func
COMMAND_MODULES = [
    "lateralnorm.cli.study_cmd",
    "lateralnorm.cli.norms_cmd",
    "lateralnorm.cli.train_cmd",
    "lateralnorm.cli.viz_cmd",
    "lateralnorm.cli.probe_cmd",
    "lateralnorm.cli.report_cmd",
    "lateralnorm.cli.results_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    from lateralnorm import __version__

    parser = argparse.ArgumentParser(
        prog="lateralnorm",
        description="Normalization layers as lateral inhibition: layers, lab, probes, pictures, report.",
    )
    parser.add_argument("--version", action="version", version=f"lateralnorm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from lateralnorm.errors import UsageError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from lateralnorm.allocator import keep_freed_memory

    keep_freed_memory()  # the command's own process trains (train, in-process studies): see allocator.py
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", ""))
        if msg.startswith("Value error, "):  # our own validator's message already names the value
            print(f"error: {msg.removeprefix('Value error, ')}", file=sys.stderr)
        else:
            print(f"error: {where}: {msg} (got {first.get('input')!r})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, sqlite3.OperationalError) as e:
        message = storage_problem(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EFBIG: "the file is larger than this process may write"}  # fmt: skip


def storage_problem(e: BaseException) -> str | None:
    """One line for a full, read-only or forbidden disk (finished results are kept: every writer is atomic
    and the store commits each run in one transaction), else None."""
    what = None
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        what = f"{DISK_ERRNOS[e.errno]} ({e.filename or e.strerror})"
    elif isinstance(e, sqlite3.OperationalError):
        text = str(e)
        if "full" in text:
            what = f"the disk is full ({text})"
        elif "readonly" in text or "read-only" in text:
            what = f"the study database cannot be written ({text})"
        elif "disk I/O error" in text or "unable to open" in text:
            what = f"the study database cannot be written ({text}): the disk may be full or read-only"
    if what is None:
        return None
    return (
        f"{what}: nothing finished was lost; free space (or choose a writable folder with --out) "
        "and run the same command again to resume"
    )


if __name__ == "__main__":
    sys.exit(main())
