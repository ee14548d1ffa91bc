"""What the holder of the labels does: loss, scores and metrics.

In label-sharing mode the coordinator holds this; in label-preserving mode the label
owner does, together with the head (the network's last layer).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from splitmesh.config import GradientNoise, Optim, from_message
from splitmesh.errors import NotFittedError, ProtocolError
from splitmesh.nn.network import build_head
from splitmesh.privacy.protections import noisy_gradient, party_key
from splitmesh.split.common import from_wire, to_wire
from splitmesh.split.tasks import Task
from splitmesh.transport.messages import HeadReply, SetupHead

MAX_HEAD_IN = 1 << 20


class ScoreBook:
    """Scores of the latest evaluation pass per partition, and metrics from them."""

    def __init__(self, task: Task | None = None) -> None:
        self.task = task or Task()
        self._scores: dict[str, np.ndarray] = {}
        self.threshold_: float | None = None  # binary: chosen on validation rows at evaluate

    def start(self, partition: str, n_rows: int) -> None:
        self._scores[partition] = np.full(self.task.score_shape(n_rows), np.nan)

    def record(self, partition: str, positions: np.ndarray, logits: torch.Tensor) -> None:
        if partition not in self._scores:
            raise ProtocolError(f"no evaluation pass started for partition {partition!r}")
        self._scores[partition][positions] = self.task.scores(logits)

    def scores(self, partition: str) -> np.ndarray:
        s = self._scores.get(partition)
        if s is None or np.isnan(s).any():
            raise NotFittedError(f"partition {partition!r} has not been fully scored")
        return s

    def evaluate(self, labels: dict[str, np.ndarray], select_on: str, partitions: list) -> dict:
        """Metrics on each partition; a binary threshold (max F1) is chosen on ``select_on``."""
        scores = {p: self.scores(p) for p in dict.fromkeys([select_on, *partitions])}
        values = self.task.evaluate(labels, scores, select_on, list(partitions))
        self.threshold_ = next(iter(values.values()), {}).get("threshold")
        return values


class HeadHolder:
    """The head (the network's last layer) and the loss, where the labels are: used by a
    label owner in label-preserving mode, so labels never leave it."""

    @classmethod
    def setup(
        cls,
        role: str,
        name: str,
        mode: str,
        msg: SetupHead,
        task: Task | None = None,
        noise: GradientNoise | None = None,
        secret: bytes = b"",
    ) -> HeadHolder:
        """The head for a SetupHead; only label-preserving runs keep it with the labels.
        ``noise``: how the gradients it returns are protected (its owner's mesh file)."""
        if mode != "label-preserving":
            raise ProtocolError(f"{role} {name!r} holds no head in {mode} mode")
        task = task or Task()
        if msg.task != task.name:
            raise ProtocolError(
                f"{role} {name!r} holds {task.name} labels; the run asks for a {msg.task} task"
            )
        return cls(f"{role} {name}", msg, task, noise, secret)

    def __init__(
        self,
        owner: str,
        msg: SetupHead,
        task: Task,
        noise: GradientNoise | None = None,
        secret: bytes = b"",
    ) -> None:
        self.owner, self.task, self.noise = owner, task, noise
        # the noise key: its owner's secret (never sent) and the run's seed
        self.noise_key = party_key(secret or os.urandom(32), msg.seed)
        if not 1 <= msg.in_features <= MAX_HEAD_IN:  # the coordinator sizes it: bounded
            raise ProtocolError(
                f"{owner!r}: a head of {msg.in_features} inputs; at most {MAX_HEAD_IN}"
            )
        self.head = build_head(msg.in_features, task.out_features, msg.seed)
        self.optimizer = from_message(Optim, msg.optim, owner).build(self.head.parameters())
        self.wire_dtype, self.pos_weight = msg.wire_dtype, msg.pos_weight

    def train(self, activations: np.ndarray, y: np.ndarray, step: int = 0) -> HeadReply:
        """One step on the top model's output; returns the loss and d loss / d activations
        (clipped and noised when the gradients are protected)."""
        act = from_wire(activations).requires_grad_(True)
        if len(act) != len(y):
            raise ProtocolError(f"{self.owner!r}: {len(act)} activations for {len(y)} labels")
        loss = self.task.loss(self.head(act), self.task.target(y), self.pos_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        grad = act.grad
        if self.noise is not None:
            grad = noisy_gradient(grad, self.noise, self.noise_key, self.owner, step)
        return HeadReply(loss=loss.item(), grad=to_wire(grad, self.wire_dtype))

    def logits(self, activations: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.head(from_wire(activations))

    def stateful(self) -> dict:
        return {"head": self.head, "optimizer": self.optimizer}
