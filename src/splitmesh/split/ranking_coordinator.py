"""The coordinator of a recommender star: the same training step as every split run
(inherited), plus relaying the interactions owner's sealed row plans and ranking passes
in which each domain embeds each user and item once.

It never learns which user or item an example is about: examples are positions, ranking
candidates are slots in an order drawn for that pass, and row plans are sealed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splitmesh.errors import NotFittedError, ProtocolError
from splitmesh.nn.aggregators import make_aggregator
from splitmesh.nn.neumf import RecsysSpec
from splitmesh.split.common import OptimConfig, from_wire, to_wire
from splitmesh.split.coordinator import Coordinator, _expect
from splitmesh.split.mesh_coordinator import relay_psi
from splitmesh.split.ranking import RankingConfig, chunk_rows, pair_chunks, pairs_input
from splitmesh.split.tasks import Task
from splitmesh.split.trainer import TrainConfig
from splitmesh.transport.base import Transport
from splitmesh.transport.messages import (
    Ack,
    AlignDone,
    AssignRows,
    EmbedSlots,
    Evaluate,
    GetLabels,
    Head,
    HeadReply,
    Labels,
    Metrics,
    PlanEpoch,
    PlanRanking,
    Plans,
    Scores,
    SetupEntity,
    SetupHead,
    SetupRanking,
    SlotEmbeddings,
)


class RankingCoordinator(Coordinator):
    """``domains[0]`` is the interactions owner (and label owner); the others describe
    users or items."""

    def __init__(
        self,
        transport: Transport,
        domains: list[str],
        *,
        mode: str,
        spec: RecsysSpec,
        optim: OptimConfig,
        seed: int,
        ranking: RankingConfig,
        wire_dtype: str = "float32",
        run: str = "run",
        checkpoint_dir: str | Path | None = None,
        pipeline: bool = False,
        train: TrainConfig | None = None,
        eval_batch: int = 65536,  # pairs per ranking chunk: a node's default batch limit
        star: bool = False,
    ) -> None:
        super().__init__(
            transport,
            domains,
            domains[0],
            mode=mode,
            spec=spec,
            optim=optim,
            seed=seed,
            wire_dtype=wire_dtype,
            run=run,
            checkpoint_dir=checkpoint_dir,
            pipeline=pipeline,
            train=train,
            eval_batch=eval_batch,
        )
        self.ranking = ranking
        self.star = star  # a star mesh: each dimension aligns its keys with the fact domain
        self.info_: dict = {}
        self.alignment_: dict | None = None

    @property
    def owner(self) -> str:
        return self.domains[0]

    def prepare(self, resume: bool = False) -> dict:
        self.hello(resume=resume)
        if resume:
            self._check_same_data()
        self.align()
        model = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.spec).items()}
        optim = vars(self.optim)
        r = self.ranking
        setup = {
            self.owner: SetupRanking(
                r.holdout,
                r.negatives,
                r.eval_negatives,
                list(r.ks),
                model,
                optim,
                self.seed,
                self.wire_dtype,
            ),
            **{d: SetupEntity(model, optim, self.seed, self.wire_dtype) for d in self.domains[1:]},
        }
        infos = {d: _expect(rep, Ack, d).info for d, rep in self.t.request_many(setup).items()}
        self.info_ = infos
        self.peers = {}
        for d in self.domains[1:]:
            side, key = infos[d]["side"], self.nodes_[d].get("seal_key")
            if not key:
                raise ProtocolError(f"domain {d!r} announced no sealing key in its Hello")
            self.peers[d] = [side, key]
        self.layout = [tuple(infos[self.owner]["widths"])]
        for d in self.domains[1:]:
            w = infos[d]["cut_width"]
            self.layout.append((w, 0) if infos[d]["side"] == "users" else (0, w))
        self.sizes_ = {"train": infos[self.owner]["train_examples"]}
        return {
            "alignment": self.alignment_,
            "interactions": infos[self.owner]["interactions"],
            "train_examples": self.sizes_["train"],
            "missing": {d: infos[d].get("missing", {}) for d in self.domains[1:]},
        }

    def build(self) -> None:
        if self.sizes_ is None:
            raise NotFittedError("call prepare() before build()")
        self.aggregator = make_aggregator("concat")
        self.top_ = self.spec.build_top(self.layout, self.seed)
        params = list(self.top_.parameters())
        if self.mode == "label-sharing":
            self.head_ = self.spec.build_head(self.seed)
            self.task_ = Task()  # a purchase or not
            params += list(self.head_.parameters())
        else:
            setup = SetupHead(self.spec.head_in(), vars(self.optim), self.seed, self.wire_dtype)
            _expect(self.t.request(self.owner, setup), Ack, self.owner)
        self.optimizer_ = self.optim.build(params)

    def align(self) -> None:
        """A star mesh: each dimension and the fact domain intersect their keys by signed
        PSI, both ways (split/star.py); the coordinator relays and learns the counts."""
        if not self.star:
            return
        fact, steps = self.owner, []
        for d in self.domains[1:]:
            held = relay_psi(self.t, fact, d)  # the fact's keys the dimension holds
            got = relay_psi(self.t, d, fact)  # the dimension's rows among them
            if got != held:
                raise ProtocolError(f"domain {d!r} found {got} common keys, {fact!r} {held}")
            steps.append({"with": d, "common": held})
        done = self.t.request_many(dict.fromkeys(self.domains, AlignDone()))
        for p, r in done.items():
            _expect(r, Ack, p)
        common = " / ".join(str(s["common"]) for s in steps)  # keys held by each dimension
        self.alignment_ = {"steps": steps, "aligned": common or "-"}

    # -- relaying sealed row plans -----------------------------------------------------
    def _relay(self, plans: Plans, partition: str, context: str) -> None:
        key = self.nodes_[self.owner].get("seal_key", "")
        offsets = np.cumsum([0, *plans.sizes])
        asks = {
            d: AssignRows(
                partition, context, self.owner, key, plans.sealed[offsets[k] : offsets[k + 1]]
            )
            for k, d in enumerate(plans.recipients)
        }
        if set(asks) != set(self.domains[1:]):
            raise ProtocolError(
                f"{self.owner!r} sealed plans for {sorted(asks)}, not {self.domains[1:]}"
            )
        for d, rep in self.t.request_many(asks).items():
            _expect(rep, Ack, d)

    def start_epoch(self, epoch: int) -> None:
        """Fresh negatives: the owner plans the epoch, each domain gets its sealed rows."""
        plans = _expect(self.t.request(self.owner, PlanEpoch(epoch, self.peers)), Plans, self.owner)
        if plans.examples != self.n_train:
            raise ProtocolError(
                f"{self.owner!r} planned {plans.examples} examples, not {self.n_train}"
            )
        self._relay(plans, "train", f"{self.run_id}/train/epoch-{epoch}")
        if self.mode == "label-sharing":
            labels = _expect(self.t.request(self.owner, GetLabels("train")), Labels, self.owner)
            self._y_train = torch.from_numpy(np.asarray(labels.values, dtype=np.float32))

    # -- ranking passes -----------------------------------------------------------------
    def _evaluate(self, partitions: list[str], batch_size: int, select_on: str) -> dict:
        self.top_.eval()
        wanted = list(dict.fromkeys([select_on, *partitions]))
        for p in wanted:
            self._rank(p)
        reply = self.t.request(self.owner, Evaluate(select_on, wanted))
        values = _expect(reply, Metrics, self.owner).values
        return {p: values[p] for p in partitions}

    def _rank(self, partition: str) -> None:
        plans = _expect(
            self.t.request(self.owner, PlanRanking(partition, self.peers)), Plans, self.owner
        )
        self._relay(plans, partition, f"{self.run_id}/{partition}")
        replies = self.t.request_many({d: EmbedSlots(partition) for d in self.domains})
        user_parts, item_parts = [], []
        for d in self.domains:
            rep = _expect(replies[d], SlotEmbeddings, d)
            user_parts.append(None if rep.users is None else from_wire(rep.users))
            item_parts.append(None if rep.items is None else from_wire(rep.items))
        cands = None if plans.candidates is None else plans.candidates.astype(np.int64)
        width = plans.item_slots if cands is None else cands.shape[1]
        # chunks of at most eval_batch pairs (one user's row at least): what the nodes accept
        chunks = pair_chunks((plans.examples, width), chunk_rows(width, self.eval_batch))
        for step, rows in enumerate(chunks):
            x = pairs_input(user_parts, item_parts, cands, plans.item_slots, rows)
            with torch.no_grad():
                out = self.top_(x)
                if self.mode == "label-sharing":
                    msg = Scores(partition, rows, self.head_(out).numpy().reshape(len(rows), width))
                else:
                    msg = Head(partition, rows, step, False, to_wire(out, self.wire_dtype))
            reply = self.t.request(self.owner, msg)
            _expect(reply, Ack if self.mode == "label-sharing" else HeadReply, self.owner)
