"""create_graph=True through the hand-written kernels' nodes (their double backward differentiates the plain
formula): the first-order gradients it builds must be the same as without create_graph, also when the node's
saved inputs depend on one another (a matrix pool's W on the input through ψ; an input computed from the layer's
own γ, as in a recurrent cell). Differentiating the formula with respect to the saved tensors themselves added
those paths a second time: the cross-talk probe's Jacobian columns of matrix-κ layers were off by 10-25 %."""

from __future__ import annotations

import pytest
import torch

from lateralnorm import create_norm
from lateralnorm.norms import cpu_kernel
from lateralnorm.probes.crosstalk import _jacobian_column

pytestmark = pytest.mark.skipif(not cpu_kernel.available(), reason="the compiled CPU kernel is not built")

MATRIX = ["dn:kappa=full", "dn:kappa=full,fn=signed,center=true", "gdn", "dn:kappa=lowrank:3,alpha=2",
          "dn:kappa=gaussian,alpha=1.5,r=0.5"]  # fmt: skip


def _first_order(m: torch.nn.Module, x: torch.Tensor, create_graph: bool, feed=None) -> list[torch.Tensor]:  # noqa: ANN001
    x = x.clone().requires_grad_()
    params = list(m.parameters())
    y = x if feed is None else feed(x)
    out = m(y)
    return list(torch.autograd.grad((out * out).sum(), [x, *params], create_graph=create_graph))


@pytest.mark.parametrize("spec", MATRIX)
def test_matrix_pool_nodes_first_order_gradient_under_create_graph(spec):
    torch.manual_seed(0)
    m = create_norm(spec, 9, dtype=torch.float64)
    x = torch.randn(5, 9, dtype=torch.float64)
    plain, graphed = _first_order(m, x, False), _first_order(m, x, True)
    for i, (a, b) in enumerate(zip(plain, graphed)):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10, msg=lambda s, i=i: f"{spec} grad #{i}: {s}")


@pytest.mark.parametrize("spec", MATRIX)
def test_crosstalk_jacobian_column_of_matrix_pools_equals_the_formula(spec):
    torch.manual_seed(1)
    fused = create_norm(spec, 12, dtype=torch.float64)
    plain = create_norm(spec.replace("gdn", "gdn:fused=false") if spec == "gdn" else spec + ",fused=false", 12,
                        dtype=torch.float64)  # fmt: skip
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(4, 12, dtype=torch.float64)
    tangent = torch.zeros_like(x)
    tangent[:, 5] = 1.0
    torch.testing.assert_close(_jacobian_column(fused, x, tangent), _jacobian_column(plain, x, tangent),
                               atol=1e-12, rtol=1e-10)  # fmt: skip


@pytest.mark.parametrize("spec", ["dn", "dn:kappa=band:2,fn=signed,center=true", "dn:preset=ln"])
def test_row_node_when_the_input_depends_on_the_layers_own_gamma(spec):
    torch.manual_seed(2)
    m = create_norm(spec, 8, dtype=torch.float64)
    with torch.no_grad():
        m.weight.add_(0.3 * torch.rand_like(m.weight))
    x = torch.randn(6, 8, dtype=torch.float64)

    def feed(v: torch.Tensor) -> torch.Tensor:  # the input is a function of γ, as in a recurrence
        return v * m.weight

    plain, graphed = _first_order(m, x, False, feed), _first_order(m, x, True, feed)
    for i, (a, b) in enumerate(zip(plain, graphed)):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10, msg=lambda s, i=i: f"{spec} grad #{i}: {s}")


def test_channels_first_layernorm_when_the_input_depends_on_its_weight():
    torch.manual_seed(3)
    m = create_norm("ln", 4, layout="channels_first", dtype=torch.float64)
    with torch.no_grad():
        m.weight.add_(0.3 * torch.rand_like(m.weight))
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)

    def feed(v: torch.Tensor) -> torch.Tensor:
        return v * m.weight.view(1, -1, 1, 1)

    plain, graphed = _first_order(m, x, False, feed), _first_order(m, x, True, feed)
    for i, (a, b) in enumerate(zip(plain, graphed)):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10, msg=lambda s, i=i: f"ln_chw grad #{i}: {s}")


@pytest.mark.parametrize(
    "spec", ["dn", "dn:kappa=band:2", "dn:kappa=full", "gdn", "dn:learn_alpha=true,alpha=1.5"]
)
def test_create_graph_on_a_non_contiguous_input(spec):
    """A node must save its input itself, not a contiguous copy (a copy has no gradient history)."""
    torch.manual_seed(4)
    m = create_norm(spec, 6, dtype=torch.float64)
    x = torch.randn(6, 5, dtype=torch.float64).T.requires_grad_()  # a transposed view
    (graphed,) = torch.autograd.grad(m(x).pow(2).sum(), x, create_graph=True)
    xx = x.detach().contiguous().requires_grad_()
    (plain,) = torch.autograd.grad(m(xx).pow(2).sum(), xx)
    torch.testing.assert_close(graphed, plain, atol=1e-12, rtol=1e-10)
