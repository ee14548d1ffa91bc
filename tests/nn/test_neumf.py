"""NeuMF's top: the GMF product of the interactions domain's GMF parts, the MLP over the rest."""

import pytest
import torch

from splitmesh.nn.neumf import IdEmbeddings, NeuMFTop


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


def test_a_pretraining_phase_leaves_the_other_part_out_and_alpha_weighs_them() -> None:
    torch.manual_seed(0)
    layout, gmf = [(48, 48), (16, 0), (0, 16)], 16
    top = NeuMFTop(layout, gmf, (32, 16), "relu", 0.0, alpha=0.25)
    x = torch.randn(32, 128, requires_grad=True)
    top.phase = "gmf"
    out = top(x)
    out.sum().backward()
    # GMF alone: the tower's half is zeros, and nothing that feeds the tower (MLP id
    # parts, dimension domains) or the tower itself gets a gradient
    assert torch.equal(out[:, gmf:], torch.zeros(32, 16))
    fed = torch.zeros(128, dtype=torch.bool)
    fed[:gmf] = fed[48 : 48 + gmf] = True
    assert torch.equal(x.grad[:, ~fed], torch.zeros(32, 128 - 2 * gmf))
    assert x.grad[:, fed].abs().sum() > 0
    assert all(p.grad is None for p in top.mlp.parameters())
    x.grad = None
    top.phase = "mlp"
    out = top(x)
    out.sum().backward()
    assert torch.equal(out[:, :gmf], torch.zeros(32, gmf))
    assert torch.equal(x.grad[:, fed], torch.zeros(32, 2 * gmf))
    # the whole model, pre-trained: alpha x GMF, (1 - alpha) x MLP
    top.phase = "neumf"
    plain = NeuMFTop(layout, gmf, (32, 16), "relu", 0.0)
    plain.load_state_dict(top.state_dict())
    want = plain(x)
    got = top(x)
    assert torch.allclose(got[:, :gmf], 0.25 * want[:, :gmf])
    assert torch.allclose(got[:, gmf:], 0.75 * want[:, gmf:])


def test_id_embeddings_add_the_mean_of_the_users_recent_items() -> None:
    torch.manual_seed(0)
    ids = IdEmbeddings(5, 7, 4, 6, history=3)
    torch.manual_seed(0)
    bare = IdEmbeddings(5, 7, 4, 6)  # a history leaves the ids' initial draws as they were
    assert torch.equal(bare.user.weight, ids.user.weight)
    assert torch.equal(bare.item.weight, ids.item.weight)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    pad = 7
    recent = torch.tensor([[1, 2, 6], [4, pad, pad], [pad, pad, pad]])
    u, i = ids.sides(users, items, recent)
    r = ids.recent.weight
    assert torch.allclose(u[0], ids.user.weight[0] + (r[1] + r[2] + r[6]) / 3)
    assert torch.allclose(u[1], ids.user.weight[1] + r[4])  # the padding counts for nothing
    assert torch.equal(u[2], ids.user.weight[2])  # no history yet: the id alone
    assert torch.equal(i, ids.item.weight[items])
    ids(users, items, recent).sum().backward()
    assert torch.equal(ids.recent.weight.grad[pad], torch.zeros(10))  # padding stays zero
    with pytest.raises(ValueError, match=r"reads \(3, 3\) recent items, got None"):
        ids.sides(users, items)
