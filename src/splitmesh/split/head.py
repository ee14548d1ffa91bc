"""What the holder of the labels does: loss, scores and metrics.

In label-sharing mode the coordinator holds this; in label-preserving mode the label
owner does, together with the head (the network's last layer).
"""

from __future__ import annotations

import numpy as np
import torch

from splitmesh.errors import NotFittedError, ProtocolError
from splitmesh.metrics import binary_report


class ScoreBook:
    """Scores of the latest evaluation pass per partition, and metrics from them."""

    def __init__(self) -> None:
        self._scores: dict[str, np.ndarray] = {}

    def start(self, partition: str, n_rows: int) -> None:
        self._scores[partition] = np.full(n_rows, np.nan)

    def record(self, partition: str, positions: np.ndarray, logits: torch.Tensor) -> None:
        if partition not in self._scores:
            raise ProtocolError(f"no evaluation pass started for partition {partition!r}")
        self._scores[partition][positions] = torch.sigmoid(logits.squeeze(1)).numpy()

    def scores(self, partition: str) -> np.ndarray:
        s = self._scores.get(partition)
        if s is None or np.isnan(s).any():
            raise NotFittedError(f"partition {partition!r} has not been fully scored")
        return s

    def evaluate(self, labels: dict[str, np.ndarray], select_on: str, partitions: list) -> dict:
        """Threshold chosen on ``select_on`` (max F1), then metrics on each partition."""
        threshold = binary_report(labels[select_on], self.scores(select_on))["threshold"]
        return {
            p: binary_report(labels[p], self.scores(p), threshold=threshold) for p in partitions
        }
