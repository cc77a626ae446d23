"""Floors of the dn row kernel's element work: why a learned α and low-rank κ stay just above issue 13's
targets (benchmarks/RESULTS.md). Builds benchmarks/kernel_floor.cpp with the kernel's own compiler flags
(lateralnorm.norms.cpu_kernel) and prints its timings as ratios within the one process.

    python benchmarks/kernel_floor.py

1. exp/log: the kernel's a^(α−1) = exp((α−1)·ln a) row loop with glibc's vector libm (what the kernel calls),
   with an inline polynomial exp/log, and with no transcendental (the memory floor), at (1024, 512).
2. Row sums in double (the kernel's order, on which the committed answers' bits depend): one sum, two sums
   in two loops, the same two in one loop (same bits). If one sum were bound by its adds' latency, the fused
   pair would cost about one sum; if by throughput (float→double conversions and adds), about two.
Needs GCC and glibc's libmvec (x86-64 Linux); elsewhere it says so and exits 0.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from lateralnorm.norms import cpu_kernel

SOURCE = Path(__file__).with_name("kernel_floor.cpp")


def build(folder: Path) -> Path | None:
    flags = cpu_kernel.CFLAGS + cpu_kernel._arch_flags()
    if "-DLATERALNORM_LIBMVEC" not in flags:
        return None
    exe = folder / "kernel_floor"
    # -Wno-aggressive-loop-optimizations: n is a compile-time constant there, and GCC warns about the tail loops
    cmd = [
        "c++",
        "-std=c++20",
        *flags,
        "-Wno-aggressive-loop-optimizations",
        str(SOURCE),
        "-o",
        str(exe),
        "-lmvec",
    ]
    subprocess.run(cmd, check=True)
    return exe


def table(v: dict[str, float], title: str, ref_name: str, rows: list[tuple[str, str]]) -> None:
    """One markdown table of `rows` (key, label), each as µs and as a ratio to the first row."""
    ref = v[rows[0][0]]
    print(f"| {title} | µs | ratio |\n|---|---|---|")
    for key, label in rows:
        print(f"| {label} | {v[key]:.1f} | {v[key] / ref:.2f} × {ref_name} |")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        if exe is None:
            print("kernel_floor: needs GCC with glibc's libmvec (x86-64 Linux); nothing to measure here")
            return 0
        out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    v = {k: float(x) for k, x in (line.split() for line in out.splitlines())}
    print("# dn kernel floors (one thread, best of 30; times in µs at 1024 × 512 elements)\n")
    table(v, "loop", "libmvec", [
        ("exp_log_libmvec", "a^(α−1) and ln a, glibc libmvec (the kernel)"),
        ("exp_log_poly", "the same, inline polynomial exp/log"),
        ("exp_log_none", "the same loop without exp/log (memory floor)"),
    ])  # fmt: skip
    print(
        f"\npolynomial worst error: log {v['poly_log_worst_ulp']:.2f} ulp, exp {v['poly_exp_worst_ulp']:.2f} ulp "
        "(float32, against double)\n"
    )
    table(v, "row sums in double, 1024 rows of 512 (L1-resident)", "one sum", [
        ("sum_one", "one sum"),
        ("sum_two_loops", "two sums, two loops"),
        ("sum_two_fused", "two sums, one loop (same bits)"),
    ])  # fmt: skip
    same = bool(v["sum_fused_same_bits"])
    print(f"\nfused sums equal to the separate ones to the bit: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
