"""Pieces every party uses the same way: optimizers, the loss, wire dtypes, batch plans."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from splitmesh.config import MODES, check_mode  # noqa: F401 (the split package's names)
from splitmesh.errors import ConfigError
from splitmesh.transport.codec import Int8Tensor

try:  # what torch.autograd.backward calls once it has checked its arguments
    from torch.autograd.graph import _engine_run_backward as _run_backward
except ImportError:  # a torch without it: backward_from takes the public path
    _run_backward = None

PARTITIONS = ("train", "val", "test")
# How embeddings and gradients travel: int8 is quantized with one scale per tensor.
WIRE_DTYPES = ("float32", "float16", "int8")


def check_wire_dtype(wire_dtype: str) -> str:
    if wire_dtype not in WIRE_DTYPES:
        raise ConfigError(
            f"The 'wire_dtype' parameter must be one of {list(WIRE_DTYPES)}. "
            f"Got {wire_dtype!r} instead."
        )
    return wire_dtype


def to_wire(t: torch.Tensor, wire_dtype: str) -> np.ndarray | Int8Tensor:
    """A float tensor as it travels: float16 halves the bytes, int8 quarters them."""
    a = t.detach().numpy()
    if check_wire_dtype(wire_dtype) == "int8":
        return Int8Tensor.quantize(a)
    return a.astype(np.float16 if wire_dtype == "float16" else np.float32, copy=False)


def take(t: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    """The rows of ``t`` at ``positions`` (checked against its length by the caller):
    ``index_select``, which costs half of ``t[idx]`` per batch, on int64 indices, so that
    narrow integers that came over the wire (uint8 included) are never read as a mask."""
    return t.index_select(0, torch.from_numpy(positions.astype(np.int64, copy=False)))


def from_wire(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a if a.dtype == np.float32 else a.astype(np.float32))


def backward_from(out: torch.Tensor, grad: torch.Tensor, extra: torch.Tensor | None = None) -> None:
    """Backpropagate a gradient d loss / d ``out`` that arrived (plus a scalar term of this
    party's own, ``extra``): ``out.backward(grad)`` to the bit.

    Not through ``out.backward(grad)`` itself: given an explicit gradient, torch checks its
    shape through torch.fx, which imports sympy (0.85 s of CPU in every process at its
    first training step). The shape is checked here instead and the engine run as
    ``torch.autograd.backward`` runs it; with ``extra``, through the scalar
    sum(out * grad) + extra, whose gradient with respect to ``out`` is exactly ``grad``
    (the engine call is a fifth cheaper than that detour on a small bottom model)."""
    if grad.shape != out.shape or grad.dtype != out.dtype:
        raise ValueError(
            f"a gradient of {grad.dtype} {tuple(grad.shape)} for an output of "
            f"{out.dtype} {tuple(out.shape)}"
        )
    if extra is None and _run_backward is not None:
        # (outputs, gradients, retain_graph, create_graph, inputs): no graph kept
        _run_backward(
            (out,), (grad,), False, False, (), allow_unreachable=True, accumulate_grad=True
        )
        return
    total = (out * grad).sum()
    (total if extra is None else total + extra).backward()


def binary_loss(logits: torch.Tensor, y: torch.Tensor, pos_weight: float | None) -> torch.Tensor:
    """Mean binary cross-entropy on logits; ``pos_weight`` up-weights the positive class."""
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=logits.dtype)
    return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), y, pos_weight=pw)


class BatchPlan:
    """Per-epoch shuffled batches of positions. One party plans; every mode uses the same plan.

    An epoch in ``parts`` (their sizes: a recommender's epoch is drawn a part at a time) is
    shuffled within each part, and positions count from the start of their part.
    """

    def __init__(
        self,
        n_rows: int,
        batch_size: int,
        seed: int,
        *,
        shuffle: bool = True,
        min_batch: int = 1,
        parts: list[int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"The 'batch_size' parameter must be >= 1. Got {batch_size}.")
        self.n_rows, self.batch_size, self.seed, self.shuffle = n_rows, batch_size, seed, shuffle
        self.min_batch = min_batch  # a smaller last batch joins the one before (governance)
        self.parts = list(parts) if parts else [n_rows]
        if sum(self.parts) != n_rows or min(self.parts) < 1:
            raise ConfigError(f"epoch parts {self.parts[:8]} do not cover {n_rows} rows")

    def _starts(self, n_rows: int) -> list[int]:
        starts = list(range(0, n_rows, self.batch_size))
        if len(starts) > 1 and n_rows - starts[-1] < self.min_batch:
            starts.pop()
        return starts

    def __len__(self) -> int:
        return sum(len(self._starts(n)) for n in self.parts)

    def epoch(self, epoch: int) -> Iterator[tuple[int, np.ndarray]]:
        """(part, positions in that part) for every batch of ``epoch``."""
        for k, n_rows in enumerate(self.parts):
            if not self.shuffle:
                order = np.arange(n_rows)
            else:  # an epoch of one part keeps the generator it always had
                seq = [self.seed, epoch] if len(self.parts) == 1 else [self.seed, epoch, 1, k]
                order = np.random.default_rng(seq).permutation(n_rows)
            starts = self._starts(n_rows)
            for i, start in enumerate(starts):
                end = starts[i + 1] if i + 1 < len(starts) else n_rows
                yield k, order[start:end]


def set_mode(module: nn.Module, training: bool) -> None:
    """``module.train(training)`` only when it is not already so: ``train()`` walks every
    submodule, which costs a NeuMF step more than its loss (modes are only ever set on
    the whole module, so the root's flag speaks for all of it)."""
    if module.training != training:
        module.train(training)


def eval_batches(n_rows: int, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, n_rows, batch_size):
        yield np.arange(start, min(start + batch_size, n_rows))
