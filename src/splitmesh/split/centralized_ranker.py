"""The recommender's centralized baseline: every domain's table in one place, the same
network (same parts, same seeds), the same examples and the same ranking passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from splitmesh.config import Model, Optim, Ranking
from splitmesh.data.interactions import PreparedFeatures, RecsysData, prepare_features
from splitmesh.errors import ConfigError, NotFittedError
from splitmesh.nn import neumf
from splitmesh.split.centralized import OneProcessLearner
from splitmesh.split.common import binary_loss, set_mode
from splitmesh.split.ranking import RankingTask, chunk_rows, pair_chunks, pairs_input

# the recommender's usual dimensions (a star mesh names its own: MeshSpec.dimensions)
SIDE = {"customers": "users", "products": "items"}


class CentralizedRanker(OneProcessLearner):
    """Same interface as the split coordinator (the trainer's Learner)."""

    def __init__(
        self,
        data: RecsysData,
        domains: list[str],
        *,
        spec: Model,
        optim: Optim,
        seed: int,
        ranking: Ranking,
        run: str = "run",
        checkpoint_dir: str | Path | None = None,
        sides: dict[str, str] | None = None,
        prepared: dict[str, PreparedFeatures] | None = None,
    ) -> None:
        self.data, self.domains = data, list(domains)
        # domains[0] holds the ids; each other domain describes users or items
        self.sides = {d: (sides or SIDE)[d] for d in self.domains[1:]}
        # a dimension's rows as its own domain prepares them (one per entity index)
        self.prepared = dict(prepared or {})
        self.spec, self.optim, self.seed, self.ranking = spec, optim, seed, ranking
        super().__init__(run, checkpoint_dir)
        self.task: RankingTask | None = None
        self._places: np.ndarray | None = None  # the epoch part's places (with a history)

    @property
    def default_metric(self) -> str:
        return f"ndcg@{self.ranking.ks[0]}"

    def prepare(self, resume: bool = False) -> dict:
        self.task = RankingTask(self.data, self.ranking, self.seed, history=self.spec.history)
        self.features = {}
        for d in self.domains[1:]:
            table = getattr(self.data, self.sides[d])
            if table is None:
                raise ConfigError(f"{self.data.name!r} has no {self.sides[d]} table for {d!r}")
            f = self.prepared.get(d) or prepare_features(table)
            self.features[d] = (torch.from_numpy(f.numeric), torch.from_numpy(f.categorical), f)
        return {"train_examples": self.task.n_train}

    def build(self) -> None:
        if self.task is None:
            raise NotFittedError("call prepare() before build()")
        s, seed, layout = self.spec, self.seed, []
        ids = self.domains[0]
        parts = {ids: neumf.build_ids(s, ids, self.data.n_users, self.data.n_items, seed)}
        layout.append(parts[ids].widths)
        for d in self.domains[1:]:
            f = self.features[d][2]
            parts[d] = neumf.build_features(s, d, f.numeric.shape[1], f.cardinalities, seed)
            w = parts[d].out_features
            layout.append((w, 0) if self.sides[d] == "users" else (0, w))
        self.net_ = nn.ModuleDict(
            {
                "bottoms": nn.ModuleDict(parts),
                "top": neumf.build_top(s, layout, seed, neumf.alpha(self.ranking.pretrain)),
                "head": neumf.build_head(s, seed),
            }
        )
        self.optimizer_ = self.optim.build(self.net_.parameters())

    @property
    def n_train(self) -> int:
        if self.task is None:
            raise NotFittedError("call prepare() first")
        return self.task.n_train

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int] | None:
        if self.task is None:
            raise NotFittedError("call prepare() first")
        return self.task.parts(batch_size, min_batch)

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        u, i, y, places = self.task.epoch(epoch, part)
        self._ex = (torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(y))
        self._places = places

    def pretraining(self) -> list[tuple[str, int]]:
        return neumf.pretraining(self.ranking.pretrain)

    def set_phase(self, phase: str) -> None:
        self.net_["top"].phase = phase

    def _embed(
        self, d: str, users: torch.Tensor, items: torch.Tensor, recent: torch.Tensor | None = None
    ) -> torch.Tensor:
        m = self.net_["bottoms"][d]
        if d == self.domains[0]:
            return m(users, items, recent)
        rows = users if self.sides[d] == "users" else items
        num, cat, _ = self.features[d]
        return m(num.index_select(0, rows), cat.index_select(0, rows))

    def train_step(
        self, positions: np.ndarray, step: int, upcoming: np.ndarray | None = None
    ) -> float:
        idx = torch.from_numpy(positions)
        u, i, y = (t.index_select(0, idx) for t in self._ex)
        places = None if self._places is None else self._places[positions]
        recent = self.task.recent(u.numpy(), places)
        set_mode(self.net_, True)
        x = torch.cat([self._embed(d, u, i, recent) for d in self.domains], dim=1)
        loss = binary_loss(self.net_["head"](self.net_["top"](x)), y, None)
        self.optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_.step()
        return loss.item()

    def evaluate(self, partitions: list[str], *, select_on: str = "val") -> dict:
        self.net_.eval()
        out = {}
        for p in dict.fromkeys([select_on, *partitions]):
            plan, book = self.task.plan(p), self.task.book(p)
            users, items = torch.from_numpy(plan.users), torch.from_numpy(plan.items)
            recent = self.task.recent_at(p, plan.users)
            with torch.no_grad():
                user_parts, item_parts = [], []
                for d in self.domains:
                    m = self.net_["bottoms"][d]
                    if d == self.domains[0]:
                        u, i = m.sides(users, items, recent)
                    elif self.sides[d] == "users":
                        u, i = self._embed(d, users, users), None
                    else:
                        u, i = None, self._embed(d, items, items)
                    user_parts.append(u)
                    item_parts.append(i)
                width = book.scores.shape[1]
                for rows in pair_chunks(book.scores.shape, chunk_rows(width)):
                    x = pairs_input(user_parts, item_parts, plan.candidates, len(plan.items), rows)
                    logits = self.net_["head"](self.net_["top"](x))
                    book.record(rows, logits.numpy())
            out[p] = book.report(self.ranking.ks)
        return {p: out[p] for p in partitions}
