"""Recurrent models with the norm inside the recurrence, written cell by cell.

At every step each gate's pre-activation a_g = W_g x_t + U_g h_{t−1} (H units) is normalized over its H
units, then a per-gate bias is added, as in layer-normalized RNNs/LSTMs (Ba et al. 2016):

    rnn:   h_t = act(norm(a) + b)
    gru:   r, z = σ(norm(a_r) + b_r), σ(norm(a_z) + b_z)
           n    = tanh(norm(W_n x_t + r ⊙ U_n h_{t−1}) + b_n),   h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
    lstm:  i, f, o = σ(norm(a_·) + b_·),  g = tanh(norm(a_g) + b_g)
           c_t = f ⊙ c_{t−1} + i ⊙ g,     h_t = o ⊙ tanh(c_t)

One norm module per cell (`cells[k].norm`, width H) serves all of its gates: it sees (B, G, H) and pools
over the last axis only. With norm "none" these are the textbook cells, and they run in torch's own fused
recurrence (torch.rnn_tanh / rnn_relu / gru / lstm on the same parameters: the same function, gates in the
same order, tested equal to the step loop) unless a hook watches the norm slot. Inputs: a signal (L,) becomes L
steps of 1 value, a sequence (T, F) is used as is, an image (C, H, W) becomes H steps of its rows (C·W).
Layers run one after another over the whole sequence, so each layer's input projection is one matmul.
The classifier reads the top layer's last hidden state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lateralnorm.models.common import Act
from lateralnorm.norms import cpu_kernel, create_norm
from lateralnorm.norms.standard import Identity

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def as_sequence(x: torch.Tensor, steps: int, features: int) -> torch.Tensor:
    """(B, L) | (B, T, F) | (B, C, H, W) → (B, T, F)."""
    if x.dim() == 4:
        x = x.permute(0, 2, 1, 3)  # (B, H, C, W): one step per image row
    return x.reshape(x.shape[0], steps, features)


def sequence_shape(input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(steps, features) of a sample of the given shape."""
    if len(input_shape) == 1:
        return input_shape[0], 1
    if len(input_shape) == 2:
        return input_shape[0], input_shape[1]
    c, h, w = input_shape
    return h, c * w


class NormRecurrentCell(nn.Module):
    """One recurrent layer (kind rnn | gru | lstm) with a norm on each gate's pre-activation."""

    def __init__(self, kind: str, input_size: int, hidden: int, norm: str, activation: str = "tanh") -> None:
        super().__init__()
        self.kind, self.hidden, self.gates = kind, hidden, GATES[kind]
        g = self.gates
        self.w_x = nn.Linear(input_size, g * hidden, bias=False)
        self.w_h = nn.Linear(hidden, g * hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(g * hidden))
        self.norm = create_norm(norm, hidden, layout="last")
        self.act = Act(activation)
        bound = 1.0 / math.sqrt(hidden)
        for w in (self.w_x.weight, self.w_h.weight):
            nn.init.uniform_(w, -bound, bound)
        if kind == "lstm":
            with torch.no_grad():
                self.bias[hidden : 2 * hidden].fill_(1.0)  # forget gate starts open

    def _norm_fn(self):  # noqa: ANN202
        """The per-gate norm as a function of (B, k·H) pre-activations. Without hooks on the slot, a norm of
        the features-last layout is called past its module wrapper (its shape check and layout dispatch,
        which cost more than the norm itself at H = 128, once per step and gate); the shape is the cell's."""
        n, hdim = self.norm, self.hidden
        plain = not (n._forward_hooks or n._forward_pre_hooks) and getattr(n, "native_layout", None) == "last"
        call = n._forward if plain else n

        def normed(a: torch.Tensor) -> torch.Tensor:
            b = a.shape[0]
            return call(a.view(b, -1, hdim)).reshape(b, -1)

        return normed

    def _fused_applies(self) -> bool:
        """No norm, a cell torch has, and no hook on the norm slot (probes must see every step)."""
        n = self.norm
        return (
            isinstance(n, Identity)
            and not (n._forward_hooks or n._forward_pre_hooks)
            and (self.kind != "rnn" or self.act.name in ("tanh", "relu"))
        )

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        """torch's recurrence with our parameters: b_ih = our bias, b_hh = 0 (the candidate's bias of a GRU
        then sits outside r ⊙ (U_n h), as in our cell)."""
        h0 = x.new_zeros(1, x.shape[0], self.hidden)
        params = [self.w_x.weight, self.w_h.weight, self.bias, torch.zeros_like(self.bias)]
        args = (
            params,
            True,
            1,
            0.0,
            self.training,
            False,
            True,
        )  # biases, layers, dropout, train, bidir, batch_first
        if self.kind == "lstm":
            return torch.lstm(x, (h0, h0), *args)[0]
        if self.kind == "gru":
            return torch.gru(x, h0, *args)[0]
        fn = torch.rnn_tanh if self.act.name == "tanh" else torch.rnn_relu
        return fn(x, h0, *args)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, F_in) → hidden states (B, T, H)."""
        if self._fused_applies():
            return self._fused(x.contiguous())
        return self.step_loop(x)

    def step_loop(self, x: torch.Tensor, compiled_gates: bool = True) -> torch.Tensor:
        """The cell written step by step (any norm; the reference the fused path is tested against). An LSTM's
        or GRU's gate arithmetic after the norm runs in the compiled kernel (`csrc/recurrent_gates.cpp`: one
        autograd node per step and part instead of about a dozen) when it is available and `compiled_gates`;
        else in torch ops, the same formulas (tested equal)."""
        b, steps, _ = x.shape
        hdim = self.hidden
        # all steps' input projections in one matmul, split into per-step views by unbind: its backward
        # stacks the T step gradients once (indexing each step would scatter it into a zero (B, T, G·H))
        xw = self.w_x(x)  # (B, T, G·H)
        normed, bias = self._norm_fn(), self.bias
        # graph capture (torch.compile, jit.trace) sees torch ops only: no extension calls then
        capturing = torch.compiler.is_compiling() or torch.jit.is_tracing()
        fusable = compiled_gates and not capturing and cpu_kernel.applies_to(xw)
        kernel = cpu_kernel.extension() if fusable else None
        h = x.new_zeros(b, hdim)
        c = x.new_zeros(b, hdim)
        outputs = []
        if self.kind == "gru":
            x_rz, x_n = (part.unbind(1) for part in xw.split([2 * hdim, hdim], dim=-1))
            b_rz, b_n = bias.split([2 * hdim, hdim])
            for t in range(steps):
                hw_rz, hw_n = self.w_h(h).split([2 * hdim, hdim], dim=-1)  # (B, 2H), (B, H)
                a_rz = normed(x_rz[t] + hw_rz)
                if kernel is not None:
                    z, pre_n = kernel.gru_reset(a_rz, b_rz, hw_n, x_n[t])
                    h = kernel.gru_update(normed(pre_n), b_n, z, h)
                else:
                    r, z = torch.sigmoid(a_rz + b_rz).split(hdim, dim=-1)
                    n = torch.tanh(normed(x_n[t] + r * hw_n) + b_n)
                    h = (1 - z) * n + z * h
                outputs.append(h)
            return torch.stack(outputs, dim=1)
        xs = xw.unbind(1)
        for t in range(steps):
            if self.kind == "rnn":
                h = self.act(normed(xs[t] + self.w_h(h)) + bias)
            elif kernel is not None:  # lstm
                h, c = kernel.lstm_gates(normed(xs[t] + self.w_h(h)), bias, c)
            else:  # lstm
                a = normed(xs[t] + self.w_h(h)) + bias  # (B, 4H): i f g o
                i, f, g, o = a.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1)  # (B, T, H)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, hidden={self.hidden}"


class RecurrentClassifier(nn.Module):
    """depth stacked cells of one kind, then Linear on the last hidden state of the top cell."""

    def __init__(
        self,
        kind: str,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        width: int,
        depth: int,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        self.steps, self.features = sequence_shape(input_shape)
        sizes = [self.features] + [width] * depth
        self.cells = nn.ModuleList(
            NormRecurrentCell(kind, sizes[k], width, norm, activation) for k in range(depth)
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = as_sequence(x, self.steps, self.features)  # (B, T, F)
        for cell in self.cells:
            h = cell(h)  # (B, T, H)
        return self.head(h[:, -1])  # (B, classes)
