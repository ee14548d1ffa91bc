"""splitmesh's optimizers step exactly as torch.optim's, and share its state_dict layout."""

import copy

import pytest
import torch

from splitmesh.nn.optim import SGD, Adam


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    net[2].bias.requires_grad_(False)  # a frozen parameter is skipped by both
    return net


def _train(net, opt, steps: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 7, generator=g)
        opt.zero_grad(set_to_none=True)
        net(x).pow(2).mean().backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_steps_match_torch_bit_for_bit(kind: str, weight_decay: float) -> None:
    ours_net, theirs_net = _net(0), _net(0)
    if kind == "adam":
        ours = Adam(ours_net.parameters(), lr=3e-3, weight_decay=weight_decay)
        theirs = torch.optim.Adam(
            theirs_net.parameters(), lr=3e-3, weight_decay=weight_decay, fused=True
        )
    else:
        ours = SGD(ours_net.parameters(), lr=0.05, weight_decay=weight_decay)
        theirs = torch.optim.SGD(
            theirs_net.parameters(), lr=0.05, weight_decay=weight_decay, foreach=True
        )
    a, b = _train(ours_net, ours, 25, 1), _train(theirs_net, theirs, 25, 1)
    start = [p.detach() for p in _net(0).parameters()]
    assert any(not torch.equal(p, q) for p, q in zip(a, start, strict=True))  # it trained
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p, q)


def test_adam_state_moves_between_torch_and_ours() -> None:
    """A checkpoint written by either resumes in the other with the same next steps."""
    net_a, net_b = _net(2), _net(2)
    theirs = torch.optim.Adam(net_a.parameters(), lr=1e-2, fused=True)
    _train(net_a, theirs, 5, 3)
    net_b.load_state_dict(net_a.state_dict())
    ours = Adam(net_b.parameters(), lr=1e-2)
    ours.load_state_dict(theirs.state_dict())
    for p, q in zip(_train(net_a, theirs, 5, 4), _train(net_b, ours, 5, 4), strict=True):
        assert torch.equal(p, q)
    back = torch.optim.Adam(_net(2).parameters(), lr=1e-2, fused=True)
    back.load_state_dict(ours.state_dict())  # torch accepts our layout as well
    assert back.state_dict()["state"].keys() == ours.state_dict()["state"].keys()


def test_state_for_another_model_is_refused() -> None:
    ours = Adam(_net(0).parameters())
    other = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="parameters"):
        ours.load_state_dict(other.state_dict())


def _embedding_train(sparse: bool, opt_of, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(5)
    table = torch.nn.Embedding(50, 4, sparse=sparse)
    head = torch.nn.Linear(4, 1)
    opt = opt_of([*table.parameters(), *head.parameters()])
    g = torch.Generator().manual_seed(6)
    for _ in range(steps):
        rows = torch.randint(0, 20, (16,), generator=g)  # rows 20..49 never in a batch
        opt.zero_grad(set_to_none=True)
        head(table(rows)).pow(2).mean().backward()
        opt.step()
    return table.weight.detach().clone(), head.weight.detach().clone()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_a_sparse_id_table_steps_only_the_batchs_rows_as_sparse_adam(weight_decay) -> None:
    """Sparse gradients (large id tables): Adam on the rows named, as SparseAdam (no weight
    decay there: L2 on the named rows, compared against a dense Adam's moments below);
    the rows never in a batch keep their initial values."""
    ours, ours_head = _embedding_train(True, lambda ps: Adam(ps, lr=1e-2, weight_decay=0.0))
    torch.manual_seed(5)
    start = torch.nn.Embedding(50, 4).weight.detach()
    assert torch.equal(ours[20:], start[20:]) and not torch.equal(ours[:20], start[:20])

    def theirs(params):
        table, head = params[:1], params[1:]
        sparse, dense = torch.optim.SparseAdam(table, lr=1e-2), torch.optim.Adam(head, lr=1e-2)

        class Both:
            def zero_grad(self, set_to_none=True):
                sparse.zero_grad(set_to_none), dense.zero_grad(set_to_none)

            def step(self):
                sparse.step(), dense.step()

        return Both()

    ref, ref_head = _embedding_train(True, theirs)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours_head, ref_head, rtol=1e-5, atol=1e-7)
    decayed, _ = _embedding_train(True, lambda ps: Adam(ps, lr=1e-2, weight_decay=weight_decay))
    assert torch.equal(decayed[20:], start[20:])
    assert torch.equal(decayed, ours) == (weight_decay == 0.0)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_sgd_with_a_sparse_gradient_steps_as_with_a_dense_one(weight_decay) -> None:
    """Plain SGD moves only the rows with a gradient either way (without weight decay)."""
    sparse, _ = _embedding_train(True, lambda ps: SGD(ps, lr=0.1, weight_decay=weight_decay))
    dense, _ = _embedding_train(False, lambda ps: SGD(ps, lr=0.1, weight_decay=weight_decay))
    torch.manual_seed(5)
    start = torch.nn.Embedding(50, 4).weight.detach()
    assert torch.equal(sparse[20:], start[20:])
    if weight_decay == 0.0:
        torch.testing.assert_close(sparse, dense, rtol=1e-6, atol=1e-7)
    else:  # L2 on the named rows only: a dense step shrinks the others too
        assert not torch.equal(dense[20:], start[20:])


def test_adam_counts_steps_per_parameter_when_some_get_no_gradient() -> None:
    """Step counts live in one buffer while every parameter steps together; a step that
    leaves some without a gradient (a pre-training phase) counts only the others, as
    torch does, and a checkpoint taken then resumes bit for bit."""

    def run(opt_of, steps: int, resume_at: int | None = None) -> list[torch.Tensor]:
        torch.manual_seed(9)
        a, b = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
        opt = opt_of([*a.parameters(), *b.parameters()])
        g = torch.Generator().manual_seed(10)
        for k in range(steps):
            if k == resume_at:  # as a resumed run: a fresh optimizer from a deep copy
                saved = copy.deepcopy(opt.state_dict())
                opt = opt_of([*a.parameters(), *b.parameters()])
                opt.load_state_dict(saved)
            x = torch.randn(8, 4, generator=g)
            opt.zero_grad(set_to_none=True)
            h = a(x)
            (h.pow(2).mean() if k % 3 == 1 else b(h).pow(2).mean()).backward()
            opt.step()
        steps_now = [float(s["step"]) for s in opt.state_dict()["state"].values()]
        return [*(p.detach().clone() for p in [*a.parameters(), *b.parameters()])], steps_now

    ours, ours_steps = run(lambda ps: Adam(ps, lr=1e-2), 12)
    theirs, theirs_steps = run(lambda ps: torch.optim.Adam(ps, lr=1e-2, fused=True), 12)
    assert ours_steps == theirs_steps == [12.0, 12.0, 8.0, 8.0]
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p, q)
    resumed, resumed_steps = run(lambda ps: Adam(ps, lr=1e-2), 12, resume_at=5)
    assert resumed_steps == ours_steps
    for p, q in zip(resumed, ours, strict=True):
        assert torch.equal(p, q)
