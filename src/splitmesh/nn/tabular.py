"""A bottom model over one table's features: numeric columns as they are, categorical
columns through learned embeddings, then an MLP up to the cut layer."""

from __future__ import annotations

import torch
from torch import nn

from splitmesh.errors import ConfigError
from splitmesh.nn.mlp import make_mlp


def embedding_width(cardinality: int) -> int:
    """A common rule of thumb (fastai's): grows slowly with the number of categories."""
    return max(2, min(16, round(1.6 * cardinality**0.56)))


class TabularBottom(nn.Module):
    def __init__(
        self,
        n_numeric: int,
        cardinalities: tuple[int, ...] | list[int],
        hidden: list[int],
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_numeric + len(cardinalities) == 0:
            raise ConfigError("a feature bottom model needs at least one column")
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_width(c)) for c in cardinalities)
        width = n_numeric + sum(e.embedding_dim for e in self.embeddings)
        self.mlp = make_mlp(width, hidden, activation=activation, dropout=dropout)
        self.out_features = hidden[-1]

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric, *(e(categorical[:, j]) for j, e in enumerate(self.embeddings))]
        return self.mlp(torch.cat(parts, dim=1))
