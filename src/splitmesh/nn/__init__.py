"""Bottom models, top models, heads and aggregators: the pieces every mode stitches."""

from splitmesh.nn.aggregators import AGGREGATORS, Aggregator, make_aggregator
from splitmesh.nn.mlp import make_mlp
from splitmesh.nn.network import SplitNetwork, part_seed

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "SplitNetwork",
    "make_aggregator",
    "make_mlp",
    "part_seed",
]
