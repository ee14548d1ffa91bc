"""The one network every mode trains: bottoms -> aggregator -> top -> head.

Each part is initialised from its own seed (``part_seed``), so the parts a split run
builds in separate parties are bit-identical to the ones the centralized baseline builds
in one module: same network, same initial weights, same seed.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

from splitmesh.config import Model, from_message
from splitmesh.errors import ProtocolError
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


def bottom_wire(model: Model) -> dict:
    """A bottom model's settings as SetupDomain carries them and model.json records them."""
    return {"hidden": list(model.bottom), "activation": model.activation, "dropout": model.dropout}


def bottom_model(wire: dict, who: str) -> Model:
    """The bottom settings of a SetupDomain (or a saved model.json), validated as a mesh
    file's ``model:`` block would be."""
    if not isinstance(wire, dict):
        raise ProtocolError(f"{who}: a bottom model's settings are a mapping")
    keys = {"hidden": "bottom", "activation": "activation", "dropout": "dropout"}
    unknown = sorted(set(wire) - set(keys))
    if unknown:
        raise ProtocolError(f"{who}: a bottom model has no setting {str(unknown[0])[:40]!r}")
    return from_message(Model, {keys[k]: v for k, v in wire.items()}, who)


def build_bottom(
    model: Model, domain: str, in_features: int, seed: int, cardinalities: tuple[int, ...] = ()
) -> nn.Module:
    """Numeric inputs as they are, categorical codes through embeddings, up to the cut."""
    return seeded(
        seed,
        f"bottom/{domain}",
        lambda: TabularBottom(
            in_features,
            cardinalities,
            list(model.bottom),
            activation=model.activation,
            dropout=model.dropout,
        ),
    )


def top_in(model: Model, n_domains: int) -> int:
    return make_aggregator(model.aggregation).out_width([model.bottom[-1]] * n_domains)


def build_top(model: Model, n_domains: int, seed: int) -> nn.Module:
    return seeded(
        seed,
        "top",
        lambda: make_mlp(
            top_in(model, n_domains),
            list(model.top),
            activation=model.activation,
            dropout=model.dropout,
        ),
    )


def head_in(model: Model, n_domains: int) -> int:
    return model.top[-1] if model.top else top_in(model, n_domains)


def build_head(in_features: int, out_features: int, seed: int) -> nn.Module:
    """The last layer: 1 logit (binary, regression) or one per class."""
    return seeded(seed, "head", lambda: nn.Linear(in_features, out_features))


class SplitNetwork(nn.Module):
    """All parts stitched in one module: the centralized baseline (and the reference in tests).

    ``in_features``: per domain, its numeric input width, or (width, category cardinalities).
    """

    def __init__(
        self,
        model: Model,
        in_features: dict[str, int | tuple],
        seed: int,
        out_features: int = 1,
    ) -> None:
        super().__init__()
        self.domains = list(in_features)
        shapes = {d: v if isinstance(v, tuple) else (v, ()) for d, v in in_features.items()}
        self.bottoms = nn.ModuleDict(
            {d: build_bottom(model, d, n, seed, tuple(c)) for d, (n, c) in shapes.items()}
        )
        self.aggregator = make_aggregator(model.aggregation)
        self.top = build_top(model, len(in_features), seed)
        self.head = build_head(head_in(model, len(in_features)), out_features, seed)

    def forward(self, xs: dict[str, tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """``xs``: per domain, its bottom model's inputs (numeric, category codes)."""
        parts = [self.bottoms[d](*xs[d]) for d in self.domains]
        return self.head(self.top(self.aggregator(parts)))
