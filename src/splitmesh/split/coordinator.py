"""The coordinator: aggregator and top model; in label-sharing mode also the head and loss.

It drives the step protocol through a Transport and never knows how messages travel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from splitmesh.config import Model, Optim, Privacy, Ranking, Training
from splitmesh.errors import ConfigError, NotFittedError, ProtocolError, SplitmeshError
from splitmesh.metrics import DEFAULT_SELECT
from splitmesh.nn.aggregators import Aggregator, Summed, make_aggregator
from splitmesh.privacy.protections import noisy_gradient, party_key
from splitmesh.privacy.secure_sum import add_up, decode
from splitmesh.split.checkpoint import (
    RunCheckpoints,
    check_same_data,
    epoch_tag,
    restore_states,
    snapshot_states,
)
from splitmesh.split.common import (
    backward_from,
    check_mode,
    from_wire,
    set_mode,
    take,
    to_wire,
)
from splitmesh.split.keyed_steps import KeyedSteps
from splitmesh.split.relay import expect, expect_matrix, refused
from splitmesh.split.star_steps import StarSteps
from splitmesh.split.tasks import check_task
from splitmesh.transport.base import Pending, Transport
from splitmesh.transport.messages import (
    Ack,
    Backward,
    Bye,
    Checkpoint,
    Embedding,
    Forward,
    Head,
    HeadReply,
    Hello,
    LoadCheckpoint,
    MaskPeers,
    Message,
    Restore,
    SaveModel,
    Snapshot,
)

RANKING = "ranking"  # the task of a star mesh: examples planned by its fact domain


class TaskSteps(Protocol):
    """What differs by task, from the coordinator's seat (KeyedSteps, StarSteps): how
    keys are aligned, how examples are split and planned each epoch, how a model is
    evaluated and saved. Everything else (the step, snapshots, checkpoints) is shared."""

    def align(self) -> dict | None:
        """Relay the domains' key alignment; what the coordinator learned (counts)."""

    def prepare(self, **split: Any) -> dict:
        """Split and set every party up; sets the coordinator's ``sizes_``."""

    def build(self) -> list[torch.nn.Parameter]:
        """The coordinator's own parts (top, and head with label sharing)."""

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int] | None:
        """Examples per part of every epoch (None: one part)."""

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        """Before the first step of each part of an epoch (a ranking mesh draws fresh
        negatives for the part)."""

    def evaluate(self, partitions: list[str], select_on: str) -> dict:
        """Metrics per partition."""

    def save_model(self, folder: str | Path, meta: dict) -> dict[str, dict]:
        """Every party saves its part; the products they published."""


class Outbox(Transport):
    """The coordinator's transport, holding the gradients it owes the domains.

    A domain's gradient rides on its next ``Forward`` (one round trip per step instead of
    two); any other message to that domain, or a newer gradient for it, first delivers
    the owed one alone as a ``Backward``. So no caller has to remember to flush: every
    message a domain gets finds its model up to date.
    """

    def __init__(self, transport: Transport) -> None:
        self.t, self.stats = transport, transport.stats
        self.owed: dict[str, tuple[int, np.ndarray]] = {}

    @property
    def parties(self) -> list[str]:
        return self.t.parties

    def owe(self, grads: dict[str, tuple[int, np.ndarray]]) -> None:
        self.settle(list(grads))  # an older gradient goes first: steps apply in order
        self.owed.update(grads)

    def drop(self) -> None:
        """Forget what is owed (the steps it belongs to were rolled back)."""
        self.owed = {}

    def settle(self, parties: list[str] | None = None) -> None:
        """Deliver what is owed to ``parties`` (default: all) now, as Backward messages."""
        names = list(self.owed) if parties is None else [p for p in parties if p in self.owed]
        due = {p: self.owed.pop(p) for p in names}
        if due:
            replies = self.t.request_many({p: Backward(s, g) for p, (s, g) in due.items()})
            for p, r in replies.items():
                expect(r, Ack, p)

    def _carry(self, requests: Mapping[str, Message]) -> dict[str, Message]:
        out = {}
        for p, msg in requests.items():
            if isinstance(msg, Forward) and msg.grad is None and p in self.owed:
                step, grad = self.owed.pop(p)
                msg = dataclasses.replace(msg, grad=grad, grad_step=step)
            out[p] = msg
        self.settle(list(out))
        return out

    def request(self, party: str, msg: Message) -> Message:
        return self.t.request(party, self._carry({party: msg})[party])

    def request_many(self, requests: Mapping[str, Message]) -> dict[str, Message]:
        return self.t.request_many(self._carry(requests))

    def submit_many(self, requests: Mapping[str, Message]) -> Pending:
        return self.t.submit_many(self._carry(requests))

    def close(self) -> None:
        self.t.close()


class Coordinator:
    """Split learning from the coordinator's seat, for every task: one step protocol,
    checkpoints and snapshots; what differs by task (how rows are aligned, split and
    planned each epoch, how a model is evaluated and saved) is its steps: ``KeyedSteps``
    (binary, multiclass, regression) or ``StarSteps`` (ranking).

    ``domains``: the parties with a bottom model (a ranking mesh's fact domain first);
    ``label_owner``: who holds the labels (a ranking mesh's fact domain)."""

    def __init__(
        self,
        transport: Transport,
        domains: list[str],
        label_owner: str,
        *,
        mode: str,
        spec: Model,
        optim: Optim,
        seed: int,
        task: str = "binary",
        ranking: Ranking | None = None,
        wire_dtype: str = "float32",
        pos_weight: float | None = None,
        run: str = "run",
        checkpoint_dir: str | Path | None = None,
        pipeline: bool = False,
        embedding_contracts: dict | None = None,
        train: Training | None = None,
        eval_batch: int | None = None,
        privacy: Privacy | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.mode = check_mode(mode)
        self.task = task if task == RANKING else check_task(task)
        if mode == "centralized":
            raise ProtocolError("the coordinator runs split modes; use CentralizedLearner")
        self.t, self.domains, self.label_owner = Outbox(transport), list(domains), label_owner
        self.spec, self.optim, self.seed = spec, optim, seed
        self.wire_dtype, self.pos_weight = wire_dtype, pos_weight
        self.sizes_: dict[str, int] | None = None
        self.run = run  # the run's name: what its settings are (its checkpoint folder)
        self.run_id: str | None = None  # this run's fresh id, sent in Hello; kept on resume
        self.train = train or Training()  # the plan every node judges at Hello
        self.checkpoints = RunCheckpoints(checkpoint_dir, run) if checkpoint_dir else None
        self.nodes_: dict[str, dict] = {}  # each party's Hello: name, role, data fingerprint
        self.alignment_: dict | None = None
        self.on_step: Callable[[str], None] | None = None  # told each alignment step
        self.products_: dict[str, dict] = {}
        self.peak_rss_mb_: dict[str, float] = {}  # each node's, as its Bye reply said
        self._snapshots: dict[str, dict] = {}
        # pipelining: the next step's Forward, already sent (one step of staleness)
        self.pipeline = pipeline
        self._ahead: tuple[int, Pending] | None = None
        # each domain's output contract (mesh/contracts.py), checked on every embedding
        self.embedding_contracts = dict(embedding_contracts or {})
        # how wide each domain's embedding is, as the top model reads it (set up by the
        # steps); every embedding a domain sends is held to it
        self.cut_widths: dict[str, int] = {}
        # label sharing: the coordinator holds the labels, so it protects the gradients
        # it returns to the domains (label preserving: the label owner does)
        self.privacy = privacy or Privacy()
        # keys its noise (with the run's seed); the domains never see it
        self._noise_key = party_key(secret or os.urandom(32), seed)
        # secure aggregation (the domains mask, it sums): fixed-point bits, None when off
        self.secure_bits: int | None = None
        if self.task == RANKING:
            self.steps: TaskSteps = StarSteps(self, ranking or Ranking())
            # pairs per ranking chunk: a node's default batch limit
            self.eval_batch = eval_batch or 65_536
        else:
            self.steps = KeyedSteps(self)
            self.eval_batch = eval_batch or 4096

    # -- preparation ------------------------------------------------------------------------
    def hello(self, purpose: str = "train", *, resume: bool = False) -> dict[str, dict]:
        """Open the run on every party; each answers with its name, role and data fingerprint.
        ``purpose``: train, or predict (score new rows with a saved model). ``resume``: reopen
        the run the last committed checkpoint names, else a fresh run."""
        earlier = self.checkpoints.last_opened() if (resume and self.checkpoints) else None
        self.run_id = earlier or uuid.uuid4().hex
        if self.checkpoints is not None:
            self.checkpoints.opened(self.run_id)
        cfg = self.train
        hello = Hello(
            self.run_id,
            self.mode,
            purpose,
            resume=resume,
            batch_size=cfg.batch_size,
            min_batch=cfg.min_batch,
            eval_batch=self.eval_batch,
            epochs=cfg.epochs,
        )
        parties = list(dict.fromkeys([*self.domains, self.label_owner]))
        replies = self.t.request_many(dict.fromkeys(parties, hello))
        self.nodes_ = {p: expect(r, Ack, p).info for p, r in replies.items()}
        for p, info in self.nodes_.items():
            if info.get("name", p) != p:
                raise ProtocolError(f"the node reached as {p!r} says it is {info.get('name')!r}")
        return self.nodes_

    def prepare(self, *, resume: bool = False, **split: Any) -> dict:
        """Open the run, align keys, then the task's preparation (a keyed mesh: ``test``,
        ``validation``, ``resample``); with ``resume``, first check that every node still
        holds the data its checkpoint was trained on."""
        self.hello(resume=resume)
        if resume:
            self._check_same_data()
        self.align()
        return {**self.steps.prepare(**split), "alignment": self.alignment_}

    def align(self) -> dict | None:
        """Align the parties' keys by signed PSI, relayed; what the coordinator learned
        (counts). None when the parties hold aligned rows already."""
        t0 = time.perf_counter()
        self.alignment_ = self.steps.align()
        if self.alignment_ is not None:
            self.alignment_["seconds"] = round(time.perf_counter() - t0, 3)
        self._agree_masks()
        return self.alignment_

    def _agree_masks(self) -> None:
        """Secure aggregation, when the domains' mesh files set it: relay every summed
        domain's signed mask key to each of them (they agree pairwise keys it never sees)."""
        keys = {p: info["mask_key"] for p, info in self.nodes_.items() if "mask_key" in info}
        self.secure_bits = None
        if not keys and self.privacy.secure_aggregation is None:
            return
        plain = [d for d in self.domains if d not in keys]
        if plain:
            raise ConfigError(
                f"secure aggregation: domain(s) {plain} do not mask their embeddings "
                f"(masking: {sorted(keys)})",
                hint="every domain's mesh file sets privacy.secure_aggregation, or none does",
            )
        stray = [p for p in keys if p not in self.domains]
        if stray:
            raise ProtocolError(f"party {stray[0]!r} sent a mask key but embeds nothing")
        if self.spec.aggregation == "concat":
            raise ConfigError(
                "secure aggregation hands the coordinator the sum of the embeddings: "
                "set model.aggregation to sum or mean"
            )
        bits = {
            d: self.nodes_[d].get("privacy", {}).get("secure_aggregation", {}).get("precision_bits")
            for d in self.domains
        }
        if len(set(bits.values())) != 1 or not isinstance(bits[self.domains[0]], int):
            raise ConfigError(f"secure aggregation: the domains' precision_bits differ: {bits}")
        body = json.dumps(keys, sort_keys=True)
        for d, r in self.t.request_many(dict.fromkeys(self.domains, MaskPeers(body))).items():
            expect(r, Ack, d)
        self.secure_bits = bits[self.domains[0]]

    def make_aggregator(self) -> Aggregator:
        """How this run merges the domains' embeddings (secure aggregation: already summed)."""
        if self.secure_bits is not None:
            return Summed(len(self.domains), mean=self.spec.aggregation == "mean")
        return make_aggregator(self.spec.aggregation)

    def build(self) -> None:
        """Top model (and, with label sharing, head and labels) once preparation is done."""
        if self.sizes_ is None:
            raise NotFittedError("call prepare() before build()")
        self.optimizer_ = self.optim.build(self.steps.build())

    @property
    def default_metric(self) -> str:
        if isinstance(self.steps, StarSteps):
            return f"ndcg@{self.steps.ranking.ks[0]}"
        return DEFAULT_SELECT[self.task]

    @property
    def n_train(self) -> int:
        if self.sizes_ is None:
            raise NotFittedError("call prepare() first")
        return self.sizes_["train"]

    # -- one training step (DESIGN.md, "One training step") --------------------------------
    def _forwards(self, partition: str, positions: np.ndarray, step: int, train: bool) -> dict:
        """One Forward per domain (the outbox adds the gradient each is owed)."""
        return {d: Forward(partition, positions, step, train) for d in self.domains}

    def publish_products(
        self, meta: dict, domains: list[str] | None = None, meta_for: dict | None = None
    ) -> dict[str, dict]:
        """Every domain (or those named) saves its trained bottom model as a data product on
        its own disk; what each published (mesh/products.py), by domain. ``meta_for``: a
        party's own meta instead of ``meta``."""
        asked = self.domains if domains is None else domains
        own = meta_for or {}
        replies = self.t.request_many({d: SaveModel(own.get(d, meta)) for d in asked})
        infos = {d: expect(r, Ack, d).info for d, r in replies.items()}
        return {d: info["product"] for d, info in infos.items() if info.get("product")}

    def _embeddings(self, replies: dict, rows: int) -> list[torch.Tensor]:
        """The domains' embeddings of a batch of ``rows`` rows, each checked first."""
        if self.secure_bits is not None:
            return [self._masked_sum(replies, rows)]
        out = []
        for d in self.domains:
            values = expect(replies[d], Embedding, d).values
            expect_matrix(values, d, "Forward", rows, self.cut_widths.get(d))
            contract = self.embedding_contracts.get(d)
            if contract is not None:
                contract.check(values, wire=self.wire_dtype)
            out.append(from_wire(values))
        return out

    def _masked_sum(self, replies: dict, rows: int) -> torch.Tensor:
        """The domains' masked embeddings added up: their sum, the masks cancelled (no
        embedding contract can be checked on a part it never sees)."""
        parts, width = [], self.spec.bottom[-1]
        for d in self.domains:
            v = expect(replies[d], Embedding, d).values
            if v.dtype != np.int64 or v.shape != (rows, width):
                raise ProtocolError(
                    f"domain {d!r} sent a {v.dtype} embedding of shape {v.shape}, not the "
                    f"masked fixed point (int64, {rows} x {width}) secure aggregation sums"
                )
            parts.append(v)
        return torch.from_numpy(decode(add_up(parts), self.secure_bits))

    def embed(self, partition: str, positions: np.ndarray, step: int) -> list[torch.Tensor]:
        """Every domain's embedding of these rows, for evaluation (no gradient follows)."""
        return self._embeddings(
            self.t.request_many(self._forwards(partition, positions, step, False)),
            len(positions),
        )

    def _train_embeddings(self, positions: np.ndarray, step: int, upcoming: np.ndarray | None):
        """This step's embeddings; pipelined, also send the next step's Forward now, so the
        domains compute it while this step's top model runs."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == step:
            replies = ahead[1].result()
        else:
            replies = self.t.request_many(self._forwards("train", positions, step, True))
        if self.pipeline and upcoming is not None:
            pending = self.t.submit_many(self._forwards("train", upcoming, step + 1, True))
            self._ahead = (step + 1, pending)
        return self._embeddings(replies, len(positions))

    def train_step(
        self, positions: np.ndarray, step: int, upcoming: np.ndarray | None = None
    ) -> float:
        """One step. ``upcoming``: the next batch's positions, used when pipelining."""
        # 1. every domain embeds its rows of the batch
        hs = [h.requires_grad_(True) for h in self._train_embeddings(positions, step, upcoming)]
        # 2. aggregate and run the top model
        set_mode(self.top_, True)
        out = self.top_(self.aggregator(hs))
        self.optimizer_.zero_grad(set_to_none=True)
        if self.mode == "label-sharing":
            target = take(self._y_train, positions)
            loss_t = self.task_.loss(self.head_(out), target, self.pos_weight)
            loss_t.backward()
            loss = loss_t.item()
        else:  # label-preserving: the label owner runs head and loss, returns d loss / d out
            lo = self.label_owner
            rep = expect(
                self.t.request(
                    lo, Head("train", positions, step, True, to_wire(out, self.wire_dtype))
                ),
                HeadReply,
                lo,
            )
            grad = expect_matrix(rep.grad, lo, "Head", *out.shape)
            if not math.isfinite(rep.loss):
                raise refused(lo, "Head", f"sent a loss of {rep.loss}")
            backward_from(out, from_wire(grad))
            loss = rep.loss
        self.optimizer_.step()
        # 3. each domain gets the gradient of its embedding and steps its own optimizer; the
        #    gradient rides on the domain's next message (the outbox)
        grads = [h.grad for h in hs]
        if self.secure_bits is not None:  # one sum: each domain's part gets its gradient
            grads = grads * len(self.domains)
        noise = self.privacy.gradients
        if self.mode == "label-sharing" and noise is not None:
            grads = [
                noisy_gradient(g, noise, self._noise_key, "coordinator", d, step)
                for d, g in zip(self.domains, grads, strict=True)
            ]
        self.t.owe(
            {
                d: (step, to_wire(g, self.wire_dtype))
                for d, g in zip(self.domains, grads, strict=True)
            }
        )
        return loss

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int] | None:
        return self.steps.epoch_parts(batch_size, min_batch)

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        self.steps.start_epoch(epoch, part)

    def pretraining(self) -> list[tuple[str, int]]:
        """Phases before the model's own (a ranking mesh's ``ranking.pretrain``)."""
        if isinstance(self.steps, StarSteps):
            return self.steps.pretraining()
        return []

    def set_phase(self, phase: str) -> None:
        """The phase only changes the top (split/trainer.py); the domains see the zero
        gradients of a part left out, which leave it where it is."""
        self.top_.phase = phase

    def flush(self) -> None:
        """Deliver owed gradients now (the outbox delivers them before any other message
        anyway); a Forward sent ahead is dropped with its step."""
        if self._ahead is not None:
            self._ahead[1].result()
            self._ahead = None
        self.t.settle()

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, partitions: list[str], *, select_on: str = "val") -> dict:
        """Metrics per partition, with the decision threshold chosen on ``select_on``."""
        with self.t.stats.phase("eval"):
            return self._evaluate(partitions, select_on)

    def _evaluate(self, partitions: list[str], select_on: str) -> dict:
        return self.steps.evaluate(partitions, select_on)

    # -- the trained model --------------------------------------------------------------------
    def save_model(self, folder: str | Path, meta: dict | None = None) -> dict[str, dict]:
        """Every party saves its own part on its own disk; what each domain published."""
        self.products_ = self.steps.save_model(folder, dict(meta or {}))
        return self.products_

    def predict(self, folder: str | Path) -> dict:
        """Score new rows with the model saved under ``folder`` (keyed meshes)."""
        if not isinstance(self.steps, KeyedSteps):
            raise ConfigError("a ranking mesh ranks in its training run; it has no predict")
        return self.steps.predict(folder)

    # -- snapshots: every party keeps its own copy, nothing travels but the tag -------------
    def _parties_with_models(self) -> list[str]:
        lo = [self.label_owner] if self.mode == "label-preserving" else []
        return list(dict.fromkeys(self.domains + lo))  # the label owner may be a domain too

    def _own_state(self) -> dict:
        own = {"top": self.top_, "optimizer": self.optimizer_}
        if self.mode == "label-sharing":
            own["head"] = self.head_
        return own

    def snapshot(self, tag: str) -> None:
        self.t.request_many({p: Snapshot(tag) for p in self._parties_with_models()})
        self._snapshots[tag] = snapshot_states(self._own_state())

    def restore(self, tag: str) -> None:
        self.t.drop()  # gradients of steps after the snapshot are dropped with those steps
        self.t.request_many({p: Restore(tag) for p in self._parties_with_models()})
        restore_states(self._own_state(), self._snapshots[tag])

    # -- checkpoints: every party writes its own, the coordinator's manifest commits them ---
    def save_checkpoint(self, trainer: dict[str, Any]) -> None:
        if self.checkpoints is None:
            return
        epoch = trainer["epoch"]
        before = self.checkpoints.committed()
        keep = [before["epoch"]] if before else []  # in force until this epoch is committed
        self.t.request_many({p: Checkpoint(epoch, keep) for p in self._parties_with_models()})
        parties = {p: info.get("data", {}) for p, info in self.nodes_.items()}
        meta = {"mode": self.mode, "parties": parties, "run_id": self.run_id}
        tag = epoch_tag(epoch)
        self.checkpoints.save(tag, self._own_state(), self._snapshots, trainer, meta)

    def _check_same_data(self) -> None:
        manifest = self.checkpoints.manifest() if self.checkpoints else None
        for p, saved in (manifest or {}).get("parties", {}).items():
            check_same_data(f"node {p!r}", saved, self.nodes_.get(p, {}).get("data", {}))

    def load_checkpoint(self) -> dict[str, Any] | None:
        """Return every party to the last committed checkpoint; its trainer state, or None."""
        manifest = self.checkpoints.committed() if self.checkpoints else None
        if manifest is None:
            return None
        self._check_same_data()
        self.t.request_many(
            {p: LoadCheckpoint(manifest["epoch"]) for p in self._parties_with_models()}
        )
        self._snapshots, trainer = self.checkpoints.load(manifest["tag"], self._own_state())
        self.t.drop()
        return trainer

    # -- the end of a run ---------------------------------------------------------------------
    def close(self, *, done: bool = False) -> None:
        """Close the run on every party that still answers (its nodes serve the next run
        from now on); a party that is down or refuses is left to its idle timeout.
        ``done``: the run finished, so the parties may delete its checkpoints."""
        if self.run_id is None:
            return
        self.t.drop()  # a run that ends here needs no more steps
        parties = list(dict.fromkeys([*self.domains, self.label_owner]))
        for p in parties:
            with contextlib.suppress(SplitmeshError):
                peak = reported_peak_mb(self.t.request(p, Bye(done)))
                if peak is not None:
                    self.peak_rss_mb_[p] = peak
        self.run_id = None


def reported_peak_mb(reply: object) -> float | None:
    """A node's word on its own peak memory in its Bye reply: a number from 0 to 1e9 MB
    (larger ones capped), or None for anything else it sends."""
    peak = reply.info.get("peak_rss_mb") if isinstance(reply, Ack) else None
    if isinstance(peak, int | float) and not isinstance(peak, bool) and peak >= 0:
        return float(min(peak, 1e9))
    return None
