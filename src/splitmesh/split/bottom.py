"""What every party with a bottom model does in a training step: embed its rows of a
batch, keep the graph until the gradient comes back, step its own optimizer.

Subclasses say how a batch's positions become model inputs (``_inputs``): a fraud domain
indexes its aligned rows, a recommender domain resolves each example's foreign key.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from splitmesh.config import EmbeddingDP, NoPeek
from splitmesh.errors import NotFittedError, ProtocolError
from splitmesh.privacy.protections import (
    clip_rows,
    distance_correlation,
    embedding_noise,
    party_key,
)
from splitmesh.privacy.secure_sum import Masker
from splitmesh.split.common import backward_from, from_wire, set_mode, to_wire
from splitmesh.split.party import Party, handles
from splitmesh.transport.messages import Ack, Backward, Embedding, Forward, MaskPeers


class BottomParty(Party):
    role = "domain"
    setup_message = "its setup"  # named in errors about steps that come too early

    def __init__(self, name: str, *, state_dir: str | None = None) -> None:
        super().__init__(name, state_dir=state_dir)
        self.bottom_: torch.nn.Module | None = None
        self.wire_dtype = "float32"
        # training forwards awaiting their gradient: step -> (inputs, output, update count).
        # One at a time normally; two when the coordinator pipelines.
        self._pending: dict[int, tuple[tuple[torch.Tensor, ...], torch.Tensor, int]] = {}
        self._updates = 0
        # embedding DP from this party's own mesh file (None: released as computed); noise
        # is keyed by a secret only this party holds (its factory passes one derived from
        # its private key; fresh random otherwise) and the run's seed from its setup
        self.protection: EmbeddingDP | None = None
        self.secret = os.urandom(32)
        self.noise_seed = 0
        # NoPeek: a distance-correlation penalty between its inputs and its embeddings
        self.nopeek: NoPeek | None = None
        # secure aggregation: what it releases is masked for the sum (set per run at Hello)
        self.masker: Masker | None = None

    def _inputs(self, partition: str, positions: np.ndarray) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def check_positions(self, partition: str, positions: np.ndarray, n: int) -> None:
        if positions.ndim != 1 or (
            len(positions) and (positions.min() < 0 or positions.max() >= n)
        ):
            raise ProtocolError(
                f"{self.role} {self.name!r}: positions for {partition!r} fall outside its {n} rows"
            )

    def cut(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The bottom model's output, clipped per row when embeddings are protected."""
        out = self.bottom_(*inputs)
        return out if self.protection is None else clip_rows(out, self.protection.clip)

    def release(self, out: torch.Tensor, *where: object) -> torch.Tensor:
        """What leaves this party for an embedding: with protection, plus Gaussian noise."""
        if self.protection is None:
            return out
        key = party_key(self.secret, self.noise_seed)
        return embedding_noise(out.detach(), self.protection, key, self.name, *where)

    def protections(self) -> dict:
        """What it applies to what it releases (its own mesh file's), by kind."""
        out = {}
        if self.protection is not None:
            out["embeddings"] = self.protection.model_dump()
        if self.nopeek is not None:
            out["nopeek"] = self.nopeek.model_dump()
        if self.masker is not None:
            out["secure_aggregation"] = {"precision_bits": self.masker.bits}
        return out

    def stateful(self) -> dict:
        if self.bottom_ is None:
            return {}
        return {"bottom": self.bottom_, "optimizer": self.optimizer_}

    @handles(Forward)
    def on_forward(self, msg: Forward) -> Embedding:
        if self.bottom_ is None:
            raise NotFittedError(
                f"{self.role} {self.name!r} got Forward before {self.setup_message}"
            )
        if msg.grad is not None:
            self._apply_grad(msg.grad_step, msg.grad)
        inputs = self._inputs(msg.partition, msg.positions)
        if msg.train:
            set_mode(self.bottom_, True)
            out = self.cut(*inputs)
            self._pending[msg.step] = (inputs, out, self._updates)
        else:
            set_mode(self.bottom_, False)
            with torch.no_grad():
                out = self.cut(*inputs)
        sent = self.release(out, msg.partition, msg.train, msg.step)
        if self.masker is not None:  # fixed point, masked: only the domains' sum reads
            values = self.masker.mask(
                sent.detach().numpy(), msg.partition, msg.train, msg.positions
            )
            return Embedding(step=msg.step, values=values)
        return Embedding(step=msg.step, values=to_wire(sent, self.wire_dtype))

    @handles(MaskPeers)
    def on_mask_peers(self, msg: MaskPeers) -> Ack:
        if self.masker is None:
            raise ProtocolError(
                f"{self.role} {self.name!r} does not mask its embeddings: its mesh file "
                "sets no privacy.secure_aggregation"
            )
        self.masker.agree(msg.keys)
        return Ack()

    @handles(Backward)
    def on_backward(self, msg: Backward) -> Ack:
        self._apply_grad(msg.step, msg.grad)
        return Ack()

    def _apply_grad(self, step: int, wire_grad: np.ndarray) -> None:
        entry = self._pending.pop(step, None)
        if entry is None:
            pending = ", ".join(f"step {s}" for s in sorted(self._pending)) or "none"
            raise ProtocolError(
                f"{self.role} {self.name!r} got a gradient for step {step}, but has no training "
                f"forward of that step awaiting one (pending: {pending})"
            )
        # forwards older than this step will never get their gradient (a restore dropped them)
        self._pending = {s: e for s, e in self._pending.items() if s > step}
        inputs, out, updates = entry
        grad = from_wire(wire_grad)
        if tuple(grad.shape) != tuple(out.shape):
            raise ProtocolError(
                f"{self.role} {self.name!r}: gradient shape {tuple(grad.shape)} does not match "
                f"its embedding {tuple(out.shape)}"
            )
        if updates != self._updates:
            # Pipelined: the weights moved since this forward. Its graph saved the old ones,
            # so recompute it with the current weights (one step of staleness, by design).
            out = self.cut(*inputs)
        self.optimizer_.zero_grad(set_to_none=True)
        if self.nopeek is None:
            backward_from(out, grad)
        else:  # its own term, added here: nothing about it leaves the domain
            penalty = self.nopeek.weight * distance_correlation(_flat(inputs), out)
            backward_from(out, grad, penalty)
        self.optimizer_.step()
        self._updates += 1


def _flat(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """A batch's inputs as one float matrix (category codes as numbers)."""
    return torch.cat([t.reshape(len(t), -1).to(torch.float32) for t in inputs], dim=1)
