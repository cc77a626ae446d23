"""Compile the Triton route's kernels to NVIDIA machine code on a machine without a GPU, and print each one's
registers and spills (ptxas -v, the ptxas that ships in the Triton wheel).

    python benchmarks/triton_compile.py [--arch 90] [--widths 512,4096]

The tests lower every kernel-mode pair to Triton IR (`test_every_kernel_lowers_for_a_gpu_target`); this goes
the whole way: Triton IR → TritonGPU IR → LLVM IR → PTX → cubin, for the kernels in the modes of the specs
`benchmarks/gpu_check.py --sections at` times, float32 and bfloat16 rows. A kernel that fails here would fail on its first GPU call. Registers above 255 or any spill at a
width are worth a look before a GPU timing. Runs on the CPU: nothing is launched.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile for a GPU target, not the interpreter
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

F32 = "*fp32"
ROWS = dict(MEAN=F32, WSAVE=F32, GAMMA=F32, N="i32", alpha="fp32", p="fp32", r="fp32", beta_bound="fp32",
            c_bound="fp32", pedestal="fp32")  # fmt: skip


def _o_n_modes() -> list[tuple[str, dict]]:
    """(label, constexprs) of the O(N) kernels for the forms section t times: dn (uniform, α = 2, r = 1/2),
    self, band:5, preset=ln (shared fixed β and c), and a learned-β general power (α = 1.5); and the LRN preset
    (a band without γ and b)."""
    base = dict(CENTER=False, RECT=True, A2=True, PMODE=0, RMODE=0, BETA_VEC=1, C_VEC=1, BETA_RAW=True,
                C_RAW=True, BEFORE=0, AFTER=0)  # fmt: skip
    return [
        ("dn", dict(base, KIND=1)),
        ("dn:kappa=self", dict(base, KIND=0)),
        ("dn:kappa=band:5", dict(base, KIND=2, BEFORE=5, AFTER=5)),
        (
            "dn:preset=ln",
            dict(base, KIND=1, CENTER=True, RECT=False, BETA_VEC=0, C_VEC=0, BETA_RAW=False, C_RAW=False),
        ),  # fmt: skip
        ("dn:alpha=1.5", dict(base, KIND=1, A2=False, PMODE=2, RMODE=0)),
        (
            "dn:preset=lrn",
            dict(base, KIND=2, RECT=False, RMODE=2, BEFORE=2, AFTER=2, BETA_RAW=False, C_RAW=False),
        ),  # fmt: skip  (no γ, no b)
    ]


def jobs(widths: list[int]) -> list[tuple[str, object, dict, dict, int]]:
    """(label, kernel, signature, constexprs, warps) for each compile."""
    from lateralnorm.norms import triton_kernel as tk

    out = []
    for n in widths:
        block = tk._pow2(n)
        warps = tk.warps(block)
        for dtype in ("*fp32", "*bf16"):
            # as section t runs them: the whole module in the rows' type (β, c, γ, b raw in it), except the band
            # backward's γ, which the host hands over in float32
            par = dtype
            for label, modes in _o_n_modes():
                rows = dict(ROWS, GAMMA=par)
                fwd_sig = dict(Y=dtype, OUT=dtype, BIAS=par, BETA=par, C=par, **rows)
                bwd_sig = dict(Y=dtype, G=dtype, GY=dtype, PART=F32, M="i32", BETA=par, C=par, **rows)
                if modes["KIND"] == 2:
                    bwd_sig["GAMMA"] = F32
                tag = f"{label} {dtype[1:]} N={n}"
                affine = label != "dn:preset=lrn"
                aff = dict(HAS_GAMMA=affine, HAS_BIAS=affine)
                out.append((f"_fwd {tag}", tk._fwd, fwd_sig,
                            dict(modes, SAVE_W=modes["KIND"] == 2, BLOCK=block, **aff), warps))  # fmt: skip
                out.append((f"_bwd {tag}", tk._bwd, bwd_sig, dict(modes, BLOCK=block, HAS_GAMMA=aff["HAS_GAMMA"]),
                            warps))  # fmt: skip
            given = dict(Y=dtype, W=dtype, BETA=par, GAMMA=par, N="i32", alpha="fp32", p="fp32", r="fp32",
                         beta_bound="fp32", pedestal="fp32")  # fmt: skip
            flags = dict(CENTER=False, RECT=True, A2=True, BLOCK=block)
            gmodes = dict(flags, PMODE=0, RMODE=0, BETA_VEC=1, BETA_RAW=True, HAS_GAMMA=True)
            tag = f"dn:kappa=full {dtype[1:]} N={n}"
            out.append((f"_psi_fwd {tag}", tk._psi_fwd, dict(Y=dtype, PSI=dtype, N="i32", alpha="fp32"), flags,
                        warps))  # fmt: skip
            out.append((f"_psi_bwd {tag}", tk._psi_bwd,
                        dict(Y=dtype, GPSI=dtype, GY=dtype, ADD=dtype, N="i32", alpha="fp32"),
                        dict(flags, HAS_ADD=True), warps))  # fmt: skip
            out.append((f"_given_fwd {tag}", tk._given_fwd, dict(BIAS=par, OUT=dtype, **given),
                        dict(gmodes, HAS_BIAS=True), warps))  # fmt: skip
            out.append((f"_given_bwd {tag}", tk._given_bwd,
                        dict(G=dtype, GY=dtype, GW=dtype, PART=F32, M="i32", **given), gmodes, warps))  # fmt: skip
        grads = dict(
            SUMS=F32,
            BETA=F32,
            C=F32,
            GB=F32,
            GC=F32,
            GG="*bf16",
            GBIAS="*bf16",
            N="i32",
            r="fp32",
            beta_bound="fp32",
            c_bound="fp32",
        )
        for bv in (0, 1):
            out.append((f"_param_grads vec={bv} N={n}", tk._param_grads, grads,
                        dict(BETA_VEC=bv, C_VEC=bv, BETA_RAW=True, C_RAW=True, NEED_BETA=True, NEED_C=True,
                             NEED_GAMMA=bool(bv), NEED_BIAS=bool(bv), BLOCK=min(block, 1024)), 4))  # fmt: skip
    for dtype in ("*fp32", "*bf16"):
        out.append((f"_nonneg_fwd {dtype[1:]}", tk._nonneg_fwd,
                    dict(RAW=dtype, OUT=dtype, NUMEL="i32", bound="fp32", pedestal="fp32"),
                    dict(BLOCK=tk.ELEMENTS), 4))  # fmt: skip
        out.append(
            (
                f"_nonneg_bwd {dtype[1:]}",
                tk._nonneg_bwd,
                dict(G=dtype, RAW=dtype, GRAW=dtype, NUMEL="i32", bound="fp32"),
                dict(BLOCK=tk.ELEMENTS),
                4,
            )
        )
    return out


def ptxas_usage(ptx: str, arch: str) -> tuple[int, int, int]:
    """(registers, spill stores, spill loads) in bytes from -v of the ptxas Triton itself uses for the target."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(int(re.sub(r"\D", "", arch))).path
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        done = subprocess.run([str(ptxas), "-v", f"--gpu-name={arch}", str(src), "-o", str(Path(tmp) / "k.o")],
                              capture_output=True, text=True, check=True)  # fmt: skip
    text = done.stderr + done.stdout
    regs = int(re.search(r"Used (\d+) registers", text).group(1))
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return regs, int(spills.group(1)), int(spills.group(2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=90, help="compute capability as a number (90: H100/H200)")
    ap.add_argument("--widths", default="512,4096", help="row widths N, comma-separated")
    args = ap.parse_args()
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    target = GPUTarget("cuda", args.arch, 32)
    arch = f"sm_{args.arch}a" if args.arch >= 90 else f"sm_{args.arch}"
    failed = 0
    print(f"Triton {triton.__version__}, target {arch}")
    print(f"{'kernel':52s} {'warps':>5s} {'regs':>5s} {'spill st/ld (bytes)':>20s}")
    for label, fn, sig, consts, warps in jobs([int(w) for w in args.widths.split(",")]):
        try:
            kernel = triton.compile(ASTSource(fn, sig, consts), target=target, options={"num_warps": warps})
            regs, st, ld = ptxas_usage(kernel.asm["ptx"], arch)
            print(f"{label:52s} {warps:5d} {regs:5d} {f'{st} / {ld}':>20s}")
        except Exception as e:  # noqa: BLE001 - report every kernel
            failed += 1
            lines = [x for x in str(e).splitlines() if x.strip()]
            print(f"{label:52s} FAILED: {(lines or ['?'])[-1][:150]}")
    print(f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
