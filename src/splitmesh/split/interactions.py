"""The recommender's interactions owner (the sales domain): it owns the fact table and
its labels (a purchase is a positive).

As a domain it holds the user and item id embeddings (its bottom model). As the fact
owner it plans: the leave-latest-out split, every epoch's examples with fresh negatives,
and the ranking passes; it tells each dimension domain, sealed, only which of that
domain's rows each example uses. As the label owner it scores rankings, and in
label-preserving mode it also holds the head and the loss.
"""

from __future__ import annotations

import numpy as np
import torch

from splitmesh.config import GradientNoise, Model, Optim, Ranking, from_message
from splitmesh.data.interactions import RecsysData
from splitmesh.errors import NotFittedError, ProtocolError
from splitmesh.nn import neumf
from splitmesh.privacy.protections import clip_rows
from splitmesh.split.bottom import BottomParty
from splitmesh.split.checkpoint import digest_rows
from splitmesh.split.common import check_mode, take, to_wire
from splitmesh.split.head import HeadHolder
from splitmesh.split.party import handles
from splitmesh.split.ranking import RankBook, RankingPlan, RankingTask
from splitmesh.split.sealing import SealBox, seal_context
from splitmesh.transport.messages import (
    Ack,
    EmbedSlots,
    Evaluate,
    GetLabels,
    Head,
    HeadReply,
    Hello,
    Labels,
    Metrics,
    PlanEpoch,
    PlanRanking,
    Plans,
    Scores,
    SetupHead,
    SetupRanking,
    SlotEmbeddings,
)

# the current part of an epoch: users, items, labels, and the places whose history each
# example reads (None without a history)
Examples = tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray | None]


class InteractionsParty(BottomParty):
    role = "interactions owner"
    setup_message = "SetupRanking"

    def __init__(
        self, name: str, data: RecsysData, mode: str, *, state_dir: str | None = None
    ) -> None:
        super().__init__(name, state_dir=state_dir)
        # only the fact table: the feature tables belong to other domains
        self.data = RecsysData(
            data.name, data.user, data.item, data.time, data.n_users, data.n_items
        )
        self.mode = check_mode(mode)
        self.task: RankingTask | None = None
        self.head_: HeadHolder | None = None
        self.noise: GradientNoise | None = None  # protects the gradients its head returns
        self._examples: Examples | None = None
        self._plans: dict[str, RankingPlan] = {}
        self._books: dict[str, RankBook] = {}
        self.run = "run"
        self.batches = (256, 1)

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        if msg.mode != self.mode:
            raise ProtocolError(
                f"{self.role} {self.name!r} runs in {self.mode} mode, not {msg.mode}"
            )
        self.run, self.seal = msg.run, SealBox(self.name, msg.run)
        self.batches = (msg.batch_size, msg.min_batch)  # how the epoch's parts are cut
        reply = super().on_hello(msg)
        return Ack(info={**reply.info, "seal_key": self.seal.public})

    def fingerprint(self) -> dict:
        d = self.data
        return {
            "rows": len(d),
            "users": d.n_users,
            "items": d.n_items,
            "sha256": digest_rows(d.user, d.item, d.time),
        }

    def _task(self) -> RankingTask:
        if self.task is None:
            raise NotFittedError(f"{self.role} {self.name!r} got a request before SetupRanking")
        return self.task

    # -- setup -----------------------------------------------------------------------------
    @handles(SetupRanking)
    def on_setup_ranking(self, msg: SetupRanking) -> Ack:
        who = f"{self.role} {self.name!r}"
        fields = ("holdout", "negatives", "eval_negatives", "ks", "part_examples", "eval_users")
        ranking = {k: getattr(msg, k) for k in fields}
        cfg = from_message(Ranking, ranking, who)  # bounded: it sizes what this party draws
        model, optim = from_message(Model, msg.model, who), from_message(Optim, msg.optim, who)
        self.task = RankingTask(self.data, cfg, msg.seed, *self.batches, history=model.history)
        d = self.data
        self.bottom_ = neumf.build_ids(model, self.name, d.n_users, d.n_items, msg.seed)
        self.optimizer_ = optim.build(self.bottom_.parameters())
        self.wire_dtype, self.noise_seed = msg.wire_dtype, msg.seed
        split = self.task.split
        return Ack(
            info={
                "train_examples": self.task.n_train,
                "epoch_parts": len(self.task.counts),
                "widths": list(self.bottom_.widths),
                "interactions": {p: len(getattr(split, p)) for p in ("train", "val", "test")},
            }
        )

    def stateful(self) -> dict:
        state = super().stateful()
        if self.head_ is not None:
            state.update({f"head_{k}": v for k, v in self.head_.stateful().items()})
        return state

    # -- planning: examples and ranking passes, sealed for each dimension domain ---------
    def _sealed(self, peers: dict, context: str, users: np.ndarray, items: np.ndarray) -> dict:
        blobs = {}
        for peer, (side, key) in sorted(peers.items()):
            if side not in ("users", "items"):
                raise ProtocolError(f"peer {peer!r} has side {side!r}; expected users or items")
            blobs[peer] = self.seal.seal(peer, key, context, users if side == "users" else items)
        return blobs

    def _plans_reply(self, examples: int, item_slots: int, blobs: dict, candidates=None) -> Plans:
        names = list(blobs)
        sealed = np.concatenate([blobs[n] for n in names]) if names else np.zeros(0, np.uint8)
        return Plans(
            examples=examples,
            item_slots=item_slots,
            recipients=names,
            sizes=[len(blobs[n]) for n in names],
            sealed=sealed,
            candidates=candidates,
        )

    @handles(PlanEpoch)
    def on_plan_epoch(self, msg: PlanEpoch) -> Plans:
        task = self._task()
        if not 0 <= msg.part < len(task.counts):
            raise ProtocolError(
                f"{self.role} {self.name!r} plans epochs in parts 0..{len(task.counts) - 1}, "
                f"not part {msg.part}"
            )
        self._examples = None  # the part before goes before this one is drawn
        users, items, labels, places = task.epoch(msg.epoch, msg.part)
        self._examples = (torch.from_numpy(users), torch.from_numpy(items), labels, places)
        context = seal_context(self.run, "train", msg.epoch, msg.part)
        return self._plans_reply(len(users), 0, self._sealed(msg.peers, context, users, items))

    @handles(PlanRanking)
    def on_plan_ranking(self, msg: PlanRanking) -> Plans:
        plan = self._task().plan(msg.partition)
        self._plans[msg.partition] = plan
        self._books[msg.partition] = self._task().book(msg.partition)
        context = seal_context(self.run, msg.partition)
        blobs = self._sealed(msg.peers, context, plan.users, plan.items)
        cands = None if plan.candidates is None else plan.candidates.astype(np.int32, copy=False)
        return self._plans_reply(len(plan.users), len(plan.items), blobs, cands)

    # -- the bottom model ------------------------------------------------------------------
    def _inputs(self, partition: str, positions: np.ndarray) -> tuple[torch.Tensor, ...]:
        if partition != "train" or self._examples is None:
            raise ProtocolError(
                f"{self.role} {self.name!r} embeds training examples after PlanEpoch; "
                f"ranking passes use EmbedSlots (got Forward for {partition!r})"
            )
        users, items, _, places = self._examples
        self.check_positions(partition, positions, len(users))
        u, i = take(users, positions), take(items, positions)
        if places is None:
            return u, i
        return u, i, self._task().recent(u.numpy(), places[positions])

    @handles(EmbedSlots)
    def on_embed_slots(self, msg: EmbedSlots) -> SlotEmbeddings:
        plan = self._plans.get(msg.partition)
        if plan is None or self.bottom_ is None:
            raise NotFittedError(
                f"{self.role} {self.name!r} has no ranking plan for {msg.partition!r}"
            )
        self.bottom_.eval()
        recent = self._task().recent_at(msg.partition, plan.users)
        with torch.no_grad():
            u, i = self.bottom_.sides(
                torch.from_numpy(plan.users), torch.from_numpy(plan.items), recent
            )
            if self.protection is not None:  # each side is what one id embedding releases
                clip = self.protection.clip
                u = self.release(clip_rows(u, clip), msg.partition, "users")
                i = self.release(clip_rows(i, clip), msg.partition, "items")
        return SlotEmbeddings(users=to_wire(u, self.wire_dtype), items=to_wire(i, self.wire_dtype))

    # -- labels: shared (label-sharing) or kept with the head (label-preserving) ----------
    def _labels(self) -> np.ndarray:
        if self._examples is None:
            raise NotFittedError(f"{self.role} {self.name!r} has planned no epoch yet")
        return self._examples[2]

    @handles(GetLabels)
    def on_get_labels(self, msg: GetLabels) -> Labels:
        if self.mode != "label-sharing" or msg.partition != "train":
            raise ProtocolError(
                f"{self.role} {self.name!r} shares only the current epoch's training labels, "
                f"and only in label-sharing mode (asked for {msg.partition!r} in {self.mode})"
            )
        return Labels(values=self._labels())

    @handles(SetupHead)
    def on_setup_head(self, msg: SetupHead) -> Ack:
        self.head_ = HeadHolder.setup(
            self.role, self.name, self.mode, msg, None, self.noise, self.secret
        )
        return Ack()

    def _book(self, partition: str) -> RankBook:
        book = self._books.get(partition)
        if book is None:
            raise ProtocolError(f"no ranking pass planned over {partition!r}")
        return book

    @handles(Head)
    def on_head(self, msg: Head) -> HeadReply:
        if self.head_ is None:
            raise NotFittedError(f"{self.role} {self.name!r} got Head before SetupHead")
        if msg.train:
            return self.head_.train(msg.activations, self._labels()[msg.positions], msg.step)
        self._book(msg.partition).record(msg.positions, self.head_.logits(msg.activations).numpy())
        return HeadReply(loss=0.0)

    @handles(Scores)
    def on_scores(self, msg: Scores) -> Ack:
        if self.mode != "label-sharing":
            raise ProtocolError(
                f"{self.role} {self.name!r} scores with its own head in {self.mode}"
            )
        self._book(msg.partition).record(msg.rows, msg.values)
        return Ack()

    @handles(Evaluate)
    def on_evaluate(self, msg: Evaluate) -> Metrics:
        ks = self._task().cfg.ks
        return Metrics(values={p: self._book(p).report(ks) for p in msg.partitions})
