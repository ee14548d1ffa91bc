"""The plain PyTorch loops the benchmarks train beside splitmesh: the whole network under
one optimizer (``vs plain``), or arranged as a split mode's parties, each with its own
backward pass and its own Adam (``vs floor``: what any split of the network costs)."""

from __future__ import annotations


def optimizers(parties: str | None, domains: dict, top, head, lr: float) -> dict:
    """Fused Adam by party: ``"all"`` when ``parties`` is None; else one per domain (its
    modules in ``domains``), and ``"top"`` with the head, or ``"top"`` and ``"head"`` apart
    when the label owner holds it (label-preserving)."""
    import torch

    def adam(*modules):
        return torch.optim.Adam([p for m in modules for p in m.parameters()], lr=lr, fused=True)

    if parties is None:
        return {"all": adam(*(m for ms in domains.values() for m in ms), top, head)}
    opts = {d: adam(*ms) for d, ms in domains.items()}
    if parties == "label-preserving":
        return opts | {"top": adam(top), "head": adam(head)}
    return opts | {"top": adam(top, head)}


def step(opts: dict, name: str, out, grad=None) -> None:
    """One party's step: backward from its loss (or from the gradient at its cut), Adam."""
    opts[name].zero_grad(set_to_none=True)
    out.backward(grad)
    opts[name].step()
