"""How the coordinator merges the domains' cut-layer embeddings."""

from __future__ import annotations

import torch
from torch import nn

from splitmesh.errors import ConfigError


class Aggregator(nn.Module):
    """Merge a list of (batch, width_i) embeddings into one (batch, out_width) tensor."""

    def out_width(self, widths: list[int]) -> int:
        raise NotImplementedError


class Concat(Aggregator):
    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts, dim=1)

    def out_width(self, widths: list[int]) -> int:
        return sum(widths)


class _SameWidth(Aggregator):
    def out_width(self, widths: list[int]) -> int:
        if len(set(widths)) != 1:
            raise ConfigError(
                f"{type(self).__name__.lower()} aggregation needs every domain's cut layer to "
                f"have the same width. Got {widths} instead."
            )
        return widths[0]


class Sum(_SameWidth):
    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(parts).sum(dim=0)


class Mean(_SameWidth):
    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(parts).mean(dim=0)


class Summed(Aggregator):
    """The domains' embeddings already summed (secure aggregation hands the coordinator one
    sum, never the parts); for ``mean``, divided by how many there are."""

    def __init__(self, n_domains: int, *, mean: bool) -> None:
        super().__init__()
        self.n, self.mean = n_domains, mean

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        (total,) = parts
        return total / self.n if self.mean else total

    def out_width(self, widths: list[int]) -> int:
        return widths[0]


AGGREGATORS: dict[str, type[Aggregator]] = {"concat": Concat, "sum": Sum, "mean": Mean}


def make_aggregator(name: str) -> Aggregator:
    if name not in AGGREGATORS:
        raise ConfigError(
            f"The 'aggregation' parameter must be one of {sorted(AGGREGATORS)}. "
            f"Got {name!r} instead."
        )
    return AGGREGATORS[name]()
