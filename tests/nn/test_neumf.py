"""NeuMF's top: the GMF product of the interactions domain's GMF parts, the MLP over the rest."""

import pytest
import torch

from splitmesh.nn.neumf import NeuMFTop


@pytest.mark.parametrize(
    ("layout", "gmf"),
    [([(48, 48), (16, 0), (0, 16)], 16), ([(40, 40), (0, 8)], 8), ([(24, 24)], 8)],
)
def test_top_reads_the_gmf_columns_and_the_rest_as_neumf_defines_them(layout, gmf) -> None:
    torch.manual_seed(0)
    top = NeuMFTop(layout, gmf, (32, 16), "relu", 0.0)
    x = torch.randn(64, sum(u + i for u, i in layout), requires_grad=True)
    user_w = layout[0][0]
    # the definition, column by column: user GMF [0, gmf), item GMF from the item side's
    # start; everything else (MLP parts, the dimension domains) feeds the tower
    gmf_u, gmf_i = list(range(gmf)), list(range(user_w, user_w + gmf))
    rest = [c for c in range(x.shape[1]) if c not in gmf_u + gmf_i]
    want = torch.cat([x[:, gmf_u] * x[:, gmf_i], top.mlp(x[:, rest])], dim=1)
    (grad_want,) = torch.autograd.grad(want.sum(), x)
    got = top(x)
    (grad_got,) = torch.autograd.grad(got.sum(), x)
    assert torch.equal(got, want)
    assert torch.equal(grad_got, grad_want)
    assert got.shape[1] == top.out_features
