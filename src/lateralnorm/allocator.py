"""Keep freed memory in the process: glibc malloc's settings for a process that trains.

A training step allocates and frees the same tensors again and again. glibc serves blocks above its mmap
threshold (128 KiB, raised on the fly up to the largest block freed) with fresh mmaps, and hands the top of
its heap back to the kernel once more than twice that threshold is free; either way the next step's tensors
land on new pages and each page costs a fault and a zeroing (at (1024, 512) float32 a matrix-κ or learned-α
`dn` step took ~1000 faults: ~1.5× its time without them). Fixed thresholds keep every block up to 32 MiB in
the heap and the heap's top kept up to 1 GiB, so a step reuses the pages of the step before: the same
results (allocation never changes the arithmetic), fewer faults, and a resident size that stays at its peak,
as with jemalloc or tcmalloc preloaded (PyTorch's CPU tuning advice).

Called by the processes that lateralnorm owns (the `lateralnorm` command, a study's workers), never on
import: a user's own process keeps its allocator. `LATERALNORM_MALLOC=system` leaves glibc's defaults."""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 << 30

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's fixed mmap and trim thresholds once for this process; True when they are set (glibc Linux,
    not opted out by LATERALNORM_MALLOC=system), False where nothing was changed."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("LATERALNORM_MALLOC", "").strip().lower() == "system":
        return False
    try:  # the process's own symbols: glibc's mallopt where the interpreter links glibc (no library search)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no glibc (musl, macOS, Windows): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _done
