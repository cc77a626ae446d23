"""Gradients of a formula as a differentiable graph: the double backward (create_graph=True) of the hand-written
kernels' autograd nodes, which differentiate their plain formula instead of their own backward."""

from __future__ import annotations

from collections.abc import Callable

import torch


def partial_grads(formula: Callable[..., torch.Tensor], inputs: tuple, need: tuple, g: torch.Tensor) -> list:
    """∂formula(*inputs)/∂inputs · g as a differentiable graph (create_graph: double backward), None where not
    needed. The formula runs on aliases of the inputs (one view node each), so that each gradient is the
    partial derivative alone: the inputs a node saved are nodes of the caller's graph and may depend on one
    another (a matrix pool's W on the input y through ψ; a recurrent cell's input on the layer's own γ), and
    differentiating with respect to them directly would add those paths once more than autograd does."""
    with torch.enable_grad():
        aliases = tuple(None if t is None else t.view_as(t) for t in inputs)
        out = formula(*aliases)
    wanted = [i for i, t in enumerate(inputs) if need[i] and t is not None]
    for i in wanted:
        if not inputs[i].requires_grad:
            raise RuntimeError(
                f"double backward: saved input #{i} does not require grad (a node saved a copy of its input, "
                "not the input itself): make the input contiguous before the node"
            )
    grads = torch.autograd.grad(out, [aliases[i] for i in wanted], g, create_graph=True, allow_unused=True)
    result: list = [None] * len(inputs)
    for i, gr in zip(wanted, grads):
        result[i] = gr
    return result
