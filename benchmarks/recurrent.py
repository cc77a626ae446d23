"""Recurrent cells per training batch (forward + backward), as ratios to torch's own module of the same kind
(nn.RNN / nn.GRU / nn.LSTM, no norm) measured in the same process, interleaved.

    python benchmarks/recurrent.py [--threads 1] [--rounds 7] [--markdown]

Shape: B=100 sequences of T=40 steps, 1 input feature (MNIST-1D read as a sequence), H=128. Each model is
the recurrent layer alone (lateralnorm.models.rnn.NormRecurrentCell vs the torch module); the loss is the
sum of the last hidden state. Best of `rounds` interleaved rounds of 5 steps (noise only adds time).
Targets (issue 13): norm none ≤ 1.2× the torch module; ln or a dn preset in the recurrence ≤ 2× the torch
module without norm. `--torch-gates` adds, for each GRU/LSTM norm, the same cell with its gate arithmetic in
torch ops instead of the compiled kernel (`csrc/recurrent_gates.cpp`): the before/after of that kernel.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from lateralnorm.models.rnn import NormRecurrentCell

B, T, F, H = 100, 40, 1, 128
TORCH = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
NORMS = [
    "none",
    "ln",
    "rms",
    "dn:fn=signed,r=0.5,kappa_init=0.1,beta=1",
    "dn:fn=rect,alpha=1,kappa_init=0.1,beta=1",
]
TARGET = {"none": 1.2}


class TorchOpGates(nn.Module):
    """Our cell with the gate arithmetic in torch ops (the step loop before the compiled gates)."""

    def __init__(self, cell: NormRecurrentCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell.step_loop(x, compiled_gates=False)


class TorchLayer(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.rnn = TORCH[kind](F, H, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def batch_time(m: nn.Module, x: torch.Tensor, steps: int = 5) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        m.zero_grad(set_to_none=True)
        m(x)[:, -1].sum().backward()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--kinds", default="rnn,gru,lstm")
    ap.add_argument("--torch-gates", action="store_true", help="also time the gates in torch ops")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(B, T, F)
    rows = []
    for kind in args.kinds.split(","):
        models = {"torch": TorchLayer(kind)}
        for norm in NORMS:
            models[norm] = NormRecurrentCell(kind, F, H, norm)
            if args.torch_gates and kind != "rnn" and norm != "none":
                models[f"{norm} (torch-op gates)"] = TorchOpGates(models[norm])
        best = {k: float("inf") for k in models}
        for m in models.values():
            batch_time(m, x, 1)  # warm up
        for _ in range(args.rounds):
            for k, m in models.items():
                best[k] = min(best[k], batch_time(m, x))
        ref = best["torch"]
        for k in models:
            ratio = best[k] / ref
            limit = TARGET.get(k, 2.0) if k != "torch" else None
            verdict = "" if limit is None else f"<= {limit}x: {'ok' if ratio <= limit else 'MISSED'}"
            rows.append((kind, k, best[k] * 1e3, ratio, verdict))
    if args.markdown:
        print("| cell | norm | ms per batch | × torch module | target |\n|---|---|---|---|---|")
        for kind, k, ms, r, v in rows:
            print(f"| {kind} | {k} | {ms:.2f} | {r:.2f} | {v} |")
    else:
        for kind, k, ms, r, v in rows:
            print(f"{kind:5s} {k:45s} {ms:8.2f} ms  {r:6.2f}x  {v}")


if __name__ == "__main__":
    main()
