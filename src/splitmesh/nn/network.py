"""The one network every mode trains: bottoms -> aggregator -> top -> head.

Each part is initialised from its own seed (``part_seed``), so the parts a split run
builds in separate parties are bit-identical to the ones the centralized baseline builds
in one module: same network, same initial weights, same seed.
"""

from __future__ import annotations

import dataclasses
import zlib

import torch
from torch import nn

from splitmesh.errors import ConfigError
from splitmesh.nn.aggregators import make_aggregator
from splitmesh.nn.mlp import make_mlp
from splitmesh.nn.tabular import TabularBottom


def part_seed(seed: int, part: str) -> int:
    """A stable per-part seed: independent of party order, process and host."""
    return (seed * 1_000_003 + zlib.crc32(part.encode())) % (2**31)


def seeded(seed: int, part: str, build):
    """Build a module with torch's RNG seeded for this part, without disturbing the caller's."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(part_seed(seed, part))
        return build()


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Widths of every part. ``bottom[-1]`` is the cut layer's width."""

    bottom: tuple[int, ...] = (32, 16)
    top: tuple[int, ...] = (32,)
    out_features: int = 1  # 1 logit for binary tasks
    aggregation: str = "concat"
    activation: str = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.bottom:
            raise ConfigError("The 'bottom' widths must name at least the cut layer. Got ().")
        make_aggregator(self.aggregation)  # validates the name

    def bottom_dict(self) -> dict:
        return {"hidden": list(self.bottom), "activation": self.activation, "dropout": self.dropout}

    def build_bottom(
        self, domain: str, in_features: int, seed: int, cardinalities: tuple[int, ...] = ()
    ) -> nn.Module:
        """Numeric inputs as they are, categorical codes through embeddings, up to the cut."""
        kw = self.bottom_dict()
        return seeded(
            seed,
            f"bottom/{domain}",
            lambda: TabularBottom(in_features, cardinalities, kw.pop("hidden"), **kw),
        )

    def top_in(self, n_domains: int) -> int:
        return make_aggregator(self.aggregation).out_width([self.bottom[-1]] * n_domains)

    def build_top(self, n_domains: int, seed: int) -> nn.Module:
        return seeded(
            seed,
            "top",
            lambda: make_mlp(
                self.top_in(n_domains),
                list(self.top),
                activation=self.activation,
                dropout=self.dropout,
            ),
        )

    def head_in(self, n_domains: int) -> int:
        return self.top[-1] if self.top else self.top_in(n_domains)

    def build_head(self, in_features: int, seed: int) -> nn.Module:
        return seeded(seed, "head", lambda: nn.Linear(in_features, self.out_features))


class SplitNetwork(nn.Module):
    """All parts stitched in one module: the centralized baseline (and the reference in tests).

    ``in_features``: per domain, its numeric input width, or (width, category cardinalities).
    """

    def __init__(self, spec: NetworkSpec, in_features: dict[str, int | tuple], seed: int) -> None:
        super().__init__()
        self.domains = list(in_features)
        shapes = {d: v if isinstance(v, tuple) else (v, ()) for d, v in in_features.items()}
        self.bottoms = nn.ModuleDict(
            {d: spec.build_bottom(d, n, seed, tuple(c)) for d, (n, c) in shapes.items()}
        )
        self.aggregator = make_aggregator(spec.aggregation)
        self.top = spec.build_top(len(in_features), seed)
        self.head = spec.build_head(spec.head_in(len(in_features)), seed)

    def forward(self, xs: dict[str, tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """``xs``: per domain, its bottom model's inputs (numeric, category codes)."""
        parts = [self.bottoms[d](*xs[d]) for d in self.domains]
        return self.head(self.top(self.aggregator(parts)))
