"""Ranking evaluation, shared by the split parties and the centralized baseline.

The interactions owner (who holds the held-out items) plans a ranking pass: users and
items get *slots* in a fresh random order, and each user's candidates are item slots in
a shuffled order, so whoever scores the pairs cannot tell the held-out item by its place.
Each domain embeds each slot once; the scorer assembles pairs; the owner turns the scores
back into ranks and metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch

from splitmesh.config import Ranking
from splitmesh.data.interactions import (
    Candidates,
    EpochExamples,
    RecsysData,
    SeenPairs,
    UserHistory,
    epoch_parts,
    leave_latest_out,
    ranking_candidates,
    time_order,
)
from splitmesh.errors import NotFittedError, ProtocolError
from splitmesh.metrics import ranking_report, ranks
from splitmesh.nn.neumf import assemble


@dataclasses.dataclass(frozen=True)
class RankingPlan:
    partition: str
    users: np.ndarray  # slot -> user index
    items: np.ndarray  # slot -> item index
    # (n_user_slots, C) item slots competing for each user; None: every item slot (full)
    candidates: np.ndarray | None
    positive: np.ndarray  # (n_user_slots, holdout): item slots of the held-out items


def plan_ranking(
    cands: Candidates, n_items: int, seed: int, partition: str, rows: int = 1 << 16
) -> RankingPlan:
    """Slots for a ranking pass: users in a fresh order, the items competing in it in
    another, each user's candidates (its held-out items among them) in a shuffled order.
    Item slots and candidates are int32; candidates are filled ``rows`` users at a time
    (the same draws as all at once), so at 1.4M users x 100 the pass holds ~0.5 GB, not
    several copies of it."""
    rng = np.random.default_rng([seed, 15485863, {"val": 1, "test": 2}.get(partition, 3)])
    order = rng.permutation(len(cands.users))
    users, positives = cands.users[order], cands.positives[order]
    if cands.negatives is None:
        items = rng.permutation(n_items)
        slot_of = np.empty(n_items, np.int64)
        slot_of[items] = np.arange(n_items)
        return RankingPlan(partition, users, items, None, slot_of[positives])
    negatives = cands.negatives
    present = np.zeros(n_items, bool)  # the items in the pass, sorted (as np.unique)
    present[positives] = True
    present[negatives] = True
    items = np.flatnonzero(present)
    items = items[rng.permutation(len(items))]  # slot k holds items[k]
    slot_of = np.full(n_items, -1, np.int32)
    slot_of[items] = np.arange(len(items), dtype=np.int32)
    width = positives.shape[1] + negatives.shape[1]
    candidates = np.empty((len(users), width), np.int32)
    for start in range(0, len(users), rows):
        at = slice(start, start + rows)
        pool = np.concatenate([positives[at], negatives[order[at]]], axis=1)
        shuffle = rng.permuted(np.tile(np.arange(width), (len(pool), 1)), axis=1)
        candidates[at] = np.take_along_axis(slot_of[pool], shuffle, axis=1)
    return RankingPlan(partition, users, items, candidates, slot_of[positives])


def pair_chunks(plan_shape: tuple[int, int], rows_per_chunk: int) -> Iterator[np.ndarray]:
    """User-slot rows in chunks of about ``rows_per_chunk`` x candidates pairs."""
    n_users, _ = plan_shape
    for start in range(0, n_users, rows_per_chunk):
        yield np.arange(start, min(start + rows_per_chunk, n_users))


def chunk_rows(n_candidates: int, pairs: int = 1 << 17) -> int:
    return max(1, pairs // max(n_candidates, 1))


def pairs_input(
    user_parts: list[torch.Tensor | None],
    item_parts: list[torch.Tensor | None],
    candidates: np.ndarray | None,
    n_item_slots: int,
    rows: np.ndarray,
) -> torch.Tensor:
    """The top's input for every (user slot in ``rows``, candidate item slot) pair."""
    if candidates is None:
        cols = np.tile(np.arange(n_item_slots), len(rows))
        width = n_item_slots
    else:
        cols = candidates[rows].reshape(-1).astype(np.int64)
        width = candidates.shape[1]
    users = torch.from_numpy(np.repeat(rows, width))
    return assemble(user_parts, item_parts, users, torch.from_numpy(cols))


class RankBook:
    """The owner's side of a ranking pass: scores in, ranks and metrics out."""

    def __init__(self, plan: RankingPlan, seen: SeenPairs) -> None:
        self.plan, self.seen = plan, seen
        width = plan.candidates.shape[1] if plan.candidates is not None else len(plan.items)
        self.scores = np.full((len(plan.users), width), np.nan, np.float32)

    def record(self, rows: np.ndarray, scores: np.ndarray) -> None:
        scores = np.asarray(scores, np.float32).reshape(len(rows), -1)
        if scores.shape[1] != self.scores.shape[1]:
            raise ProtocolError(
                f"ranking scores for {self.plan.partition!r} have {scores.shape[1]} columns, "
                f"expected {self.scores.shape[1]}"
            )
        self.scores[rows] = scores

    def ranks(self) -> np.ndarray:
        if np.isnan(self.scores).any():
            raise NotFittedError(f"ranking pass over {self.plan.partition!r} is incomplete")
        plan, out = self.plan, []
        for rows in pair_chunks(self.scores.shape, 256):
            s = self.scores[rows].astype(np.float64)
            if plan.candidates is None:  # full: map slots back to items, mask what was seen
                pos = np.take_along_axis(s, plan.positive[rows], axis=1)
                users = np.repeat(plan.users[rows], len(plan.items))
                items = np.tile(plan.items, len(rows))
                seen = self.seen.contains(users, items).reshape(len(rows), -1)
                neg = np.where(seen, -np.inf, s)
            else:
                cand = plan.candidates[rows]
                match = cand[:, :, None] == plan.positive[rows][:, None, :]  # (n, C, holdout)
                pos = np.take_along_axis(s, match.argmax(axis=1), axis=1)
                neg = np.where(match.any(axis=2), -np.inf, s)
            out.append(ranks(pos, neg))
        return np.concatenate(out)

    def report(self, ks: tuple[int, ...]) -> dict:
        return ranking_report(self.ranks(), ks)


class RankingTask:
    """What the owner of the interactions knows and plans: the leave-latest-out split,
    every epoch's examples (fresh negatives) and the ranking passes. Used by the split
    interactions party and the centralized baseline alike, so both see the same examples."""

    def __init__(
        self,
        data: RecsysData,
        cfg: Ranking,
        seed: int,
        batch_size: int = 256,
        min_batch: int = 1,
        history: int = 0,
    ) -> None:
        self.data, self.cfg, self.seed = data, cfg, seed
        order = time_order(data)
        self.split = leave_latest_out(data, cfg.holdout, order)
        tr = self.split.train
        self.train_user, self.train_item = data.user[tr], data.item[tr]
        # ``history``: each example carries the user's latest earlier items (nn/neumf.py)
        self.history = UserHistory(data, history, order) if history else None
        self.train_place = None if self.history is None else UserHistory.places(order, tr)
        del order
        self.all_seen = SeenPairs(data.user, data.item, data.n_items)
        self.train_seen = self.all_seen.among(self.train_user, self.train_item)
        self._epoch: EpochExamples | None = None
        self.counts: list[int] = []  # positives per part of every epoch (see ``parts``)
        self.parts(batch_size, min_batch)
        self._plans: dict[str, RankingPlan] = {}

    @property
    def n_train(self) -> int:
        return len(self.train_user) * (1 + self.cfg.negatives)

    def parts(self, batch_size: int, min_batch: int = 1) -> list[int]:
        """Examples per part of every epoch, for batches of ``batch_size`` (whole batches
        in every part but the last; ``min_batch`` as the trainer merges a last batch)."""
        r = self.cfg.negatives
        self.counts = epoch_parts(
            len(self.train_user), r, self.cfg.part_examples, batch_size, min_batch
        )
        self._epoch = None
        return [c * (1 + r) for c in self.counts]

    def epoch(
        self, epoch: int, part: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(user, item, label, place) of one part of an epoch's examples; ``place`` (None
        without a history) names the interaction whose history each example reads."""
        if self._epoch is None or self._epoch.epoch != epoch:
            self._epoch = EpochExamples(
                self.train_user, self.train_item, self.train_seen, self.cfg.negatives,
                self.seed, epoch, self.counts, self.train_place,
            )  # fmt: skip
        return self._epoch.part(part)

    def recent(self, users: np.ndarray, places: np.ndarray | None) -> torch.Tensor | None:
        """The items each example's user interacted with before its place, as the id
        embeddings read them (None: no history kept)."""
        if self.history is None:
            return None
        return torch.from_numpy(self.history.before(users, places))

    def recent_at(self, partition: str, users: np.ndarray) -> torch.Tensor | None:
        """For a ranking pass over ``partition``: each user's items before the held-out
        ones (for test, the validation interaction is among them)."""
        if self.history is None:
            return None
        return self.recent(users, self.history.held_out(users, self.cfg.holdout, partition))

    def plan(self, partition: str) -> RankingPlan:
        if partition not in ("val", "test"):
            raise ProtocolError(f"ranking passes cover 'val' or 'test', not {partition!r}")
        if partition not in self._plans:
            cands = ranking_candidates(
                self.data,
                self.split,
                partition,
                n_negatives=self.cfg.eval_negatives,
                seed=self.seed,
                seen=self.all_seen,
                n_users=self.cfg.eval_users,
            )
            self._plans[partition] = plan_ranking(cands, self.data.n_items, self.seed, partition)
        return self._plans[partition]

    def book(self, partition: str) -> RankBook:
        return RankBook(self.plan(partition), self.all_seen)

    def reference(self, kind: str, partition: str) -> dict:
        """Metrics of a model-free ranking: ``random`` or ``itempop`` (training popularity)."""
        plan, book = self.plan(partition), self.book(partition)
        if kind == "random":
            rng = np.random.default_rng([self.seed, 31337])
            book.record(np.arange(len(plan.users)), rng.random(book.scores.shape))
        elif kind == "itempop":
            pop = np.bincount(self.train_item, minlength=self.data.n_items).astype(np.float32)
            per_slot = pop[plan.items]
            scores = (
                per_slot[plan.candidates]
                if plan.candidates is not None
                else np.tile(per_slot, (len(plan.users), 1))
            )
            book.record(np.arange(len(plan.users)), scores)
        else:
            raise ProtocolError(f"unknown reference ranking {kind!r}")
        return book.report(tuple(self.cfg.ks))
