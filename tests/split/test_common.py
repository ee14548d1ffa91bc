"""Pieces every party shares: backpropagating a gradient that arrived over the wire, and
taking a batch's rows at positions that did."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitmesh.split.common import backward_from, take
from tests.conftest import fresh_python


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5), torch.nn.Tanh()
    )


def _grads(step) -> list[torch.Tensor]:
    net, x = _net(), torch.randn(64, 7, generator=torch.Generator().manual_seed(1))
    g = torch.randn(64, 5, generator=torch.Generator().manual_seed(2))
    step(net(x), g)
    return [p.grad.clone() for p in net.parameters()]


def test_the_same_gradients_to_the_bit_as_backward_with_a_gradient():
    ours = _grads(backward_from)
    torchs = _grads(lambda out, g: out.backward(g))
    assert all(torch.equal(a, b) for a, b in zip(ours, torchs, strict=True))


def test_a_local_scalar_term_adds_its_own_gradient():
    def penalty(out):
        return 0.3 * out.pow(2).mean()

    ours = _grads(lambda out, g: backward_from(out, g, penalty(out)))
    torchs = _grads(lambda out, g: torch.autograd.backward([out, penalty(out)], [g, None]))
    plain = _grads(backward_from)
    for a, b, c in zip(ours, torchs, plain, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, c)


def test_backpropagating_a_received_gradient_does_not_import_sympy():
    """torch checks an explicit gradient's shape through torch.fx, which imports sympy:
    0.85 s of CPU at the first step of every party's process."""
    code = (
        "import sys, torch\n"
        "from splitmesh.split.common import backward_from\n"
        "net = torch.nn.Linear(3, 2)\n"
        "backward_from(net(torch.ones(4, 3)), torch.ones(4, 2))\n"
        "print('sympy' in sys.modules)\n"
    )
    assert fresh_python(code).strip() == "False"


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8])
def test_positions_of_any_wire_integer_width_are_rows_never_a_mask(dtype):
    # positions may travel as any integer dtype; torch reads a uint8 index tensor as a mask
    x = torch.arange(12.0).reshape(6, 2)
    got = take(x, np.array([5, 0, 5], dtype=dtype))
    assert torch.equal(got, torch.tensor([[10.0, 11.0], [0.0, 1.0], [10.0, 11.0]]))
