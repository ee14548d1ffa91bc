"""The coordinator's steps for a ranking mesh (a star schema, split/star.py): each
dimension aligns its keys with the fact domain, the fact domain plans every epoch's
examples and every ranking pass, and the coordinator relays its sealed row plans; in a
ranking pass each domain embeds each user and item once.

The coordinator never learns which user or item an example is about: examples are
positions, ranking candidates are slots in an order drawn for that pass, and row plans
are sealed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from splitmesh.config import Ranking
from splitmesh.data.interactions import epoch_parts
from splitmesh.errors import ProtocolError
from splitmesh.nn import neumf
from splitmesh.nn.aggregators import make_aggregator
from splitmesh.split.common import from_wire, to_wire
from splitmesh.split.ranking import chunk_rows, pair_chunks, pairs_input
from splitmesh.split.relay import (
    expect,
    expect_matrix,
    expect_metrics,
    refused,
    relay_alignment,
)
from splitmesh.split.sealing import seal_context
from splitmesh.split.tasks import Task
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

if TYPE_CHECKING:
    from splitmesh.split.coordinator import Coordinator


class StarSteps:
    """``c.domains[0]`` is the fact domain (the interactions and their labels); the others
    describe users or items."""

    def __init__(self, c: Coordinator, ranking: Ranking) -> None:
        self.c, self.ranking = c, ranking
        self.owner = c.domains[0]
        self.parts: list[int] = []  # examples per part of every epoch (epoch_parts)
        self.dimensions = c.domains[1:]

    def align(self) -> dict | None:
        """Each dimension and the fact domain intersect their keys by signed PSI (the fact
        domain as client, which then names the dimension's common keys); the coordinator
        relays and learns the counts. Dimensions that announce no key hold one row per
        entity already (in-process tables)."""
        c, fact, steps = self.c, self.owner, []
        if not any(info.get("aligns_keys") for info in c.nodes_.values()):
            return None
        for d in self.dimensions:  # each pair on its own: the fact's users, or its items
            held = relay_alignment(c.t, fact, [d], c.on_step)[0]["left"]
            steps.append({"with": d, "common": held})
        for p, r in c.t.request_many(dict.fromkeys(c.domains, AlignDone())).items():
            expect(r, Ack, p)
        common = " / ".join(str(s["common"]) for s in steps)  # keys held by each dimension
        return {"steps": steps, "aligned": common or "-"}

    def prepare(self) -> dict:
        c, r = self.c, self.ranking
        model = c.spec.model_dump()
        optim = c.optim.wire()
        fact = SetupRanking(
            r.holdout, r.negatives, r.eval_negatives, list(r.ks), model, optim, c.seed,
            c.wire_dtype, r.part_examples, r.eval_users,
        )  # fmt: skip
        setup = {
            self.owner: fact,
            **{d: SetupEntity(model, optim, c.seed, c.wire_dtype) for d in self.dimensions},
        }
        infos = {d: expect(rep, Ack, d).info for d, rep in c.t.request_many(setup).items()}
        self.peers = {}
        for d in self.dimensions:
            side, key = infos[d]["side"], c.nodes_[d].get("seal_key")
            if not key:
                raise ProtocolError(f"domain {d!r} announced no sealing key in its Hello")
            self.peers[d] = [side, key]
        ids = c.spec.gmf + c.spec.mlp  # each side of the fact domain's id embeddings
        if infos[self.owner].get("widths") != [ids, ids]:
            raise ProtocolError(
                f"{self.owner!r} announced id embeddings of widths "
                f"{str(infos[self.owner].get('widths'))[:40]}; this run's are [{ids}, {ids}]"
            )
        self.layout = [(ids, ids)]
        for d in self.dimensions:
            w, side = infos[d].get("cut_width"), infos[d]["side"]
            if w != c.spec.bottom[-1] or isinstance(w, bool) or side not in ("users", "items"):
                raise ProtocolError(
                    f"domain {d!r} announced a cut layer of width {str(w)[:20]} for "
                    f"{str(side)[:20]}; this run's feature bottoms end at width "
                    f"{c.spec.bottom[-1]}, for users or items"
                )
            self.layout.append((w, 0) if side == "users" else (0, w))
        c.cut_widths = {d: u + i for d, (u, i) in zip(c.domains, self.layout, strict=True)}
        c.sizes_ = {"train": infos[self.owner]["train_examples"]}
        self.parts = self._parts(c.sizes_["train"], c.train.batch_size, c.train.min_batch)
        told = infos[self.owner].get("epoch_parts")
        if told != len(self.parts):
            raise ProtocolError(
                f"{self.owner!r} cuts each epoch into {str(told)[:20]} parts; this run's "
                f"sizes make {len(self.parts)}"
            )
        return {
            "interactions": infos[self.owner]["interactions"],
            "train_examples": c.sizes_["train"],
            "missing": {d: infos[d].get("missing", {}) for d in self.dimensions},
        }

    def _parts(self, n_train: int, batch_size: int, min_batch: int) -> list[int]:
        width = 1 + self.ranking.negatives
        if n_train % width:
            raise ProtocolError(
                f"{self.owner!r} counts {n_train} training examples, not a multiple of {width} "
                f"(a positive and its {width - 1} negatives)"
            )
        counts = epoch_parts(
            n_train // width, width - 1, self.ranking.part_examples, batch_size, min_batch
        )
        return [k * width for k in counts]

    def build(self) -> list[torch.nn.Parameter]:
        c = self.c
        c.aggregator = make_aggregator("concat")
        c.top_ = neumf.build_top(c.spec, self.layout, c.seed, neumf.alpha(self.ranking.pretrain))
        params = list(c.top_.parameters())
        if c.mode == "label-sharing":
            c.head_ = neumf.build_head(c.spec, c.seed)
            c.task_ = Task()  # a purchase or not
            params += list(c.head_.parameters())
        else:
            setup = SetupHead(neumf.head_in(c.spec), c.optim.wire(), c.seed, c.wire_dtype)
            expect(c.t.request(self.owner, setup), Ack, self.owner)
        return params

    def pretraining(self) -> list[tuple[str, int]]:
        return neumf.pretraining(self.ranking.pretrain)

    # -- relaying sealed row plans -----------------------------------------------------
    def _relay(self, plans: Plans, partition: str, context: str) -> None:
        c = self.c
        key = c.nodes_[self.owner].get("seal_key", "")
        offsets = np.cumsum([0, *plans.sizes])
        asks = {
            d: AssignRows(
                partition, context, self.owner, key, plans.sealed[offsets[k] : offsets[k + 1]]
            )
            for k, d in enumerate(plans.recipients)
        }
        if set(asks) != set(self.dimensions):
            raise ProtocolError(
                f"{self.owner!r} sealed plans for {sorted(asks)}, not {self.dimensions}"
            )
        for d, rep in c.t.request_many(asks).items():
            expect(rep, Ack, d)

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int]:
        """Examples per part of every epoch, cut as the owner cuts them (from the same
        sizes and the batches it was told in Hello; each part's plan is checked)."""
        self.parts = self._parts(self.c.n_train, batch_size, min_batch)
        return self.parts

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        """Fresh negatives: the owner plans a part of the epoch, each domain gets its
        sealed rows for it."""
        c, owner = self.c, self.owner
        plans = expect(c.t.request(owner, PlanEpoch(epoch, self.peers, part)), Plans, owner)
        if plans.examples != self.parts[part]:
            raise ProtocolError(
                f"{owner!r} planned {plans.examples} examples for part {part} of epoch "
                f"{epoch}, not {self.parts[part]}"
            )
        self._relay(plans, "train", seal_context(c.run_id, "train", epoch, part))
        if c.mode == "label-sharing":
            y = expect(c.t.request(owner, GetLabels("train")), Labels, owner).values
            if y.shape != (plans.examples,) or not np.isin(y, (0, 1)).all():
                raise ProtocolError(
                    f"{owner!r} sent {y.dtype} labels of shape {y.shape} for part {part} of "
                    f"epoch {epoch}, not {plans.examples} zeros and ones"
                )
            c._y_train = torch.from_numpy(y.astype(np.float32))

    # -- ranking passes -----------------------------------------------------------------
    def evaluate(self, partitions: list[str], select_on: str) -> dict:
        c = self.c
        c.top_.eval()
        wanted = list(dict.fromkeys([select_on, *partitions]))
        for p in wanted:
            self._rank(p)
        reply = c.t.request(self.owner, Evaluate(select_on, wanted))
        return expect_metrics(expect(reply, Metrics, self.owner).values, self.owner, partitions)

    def _rank(self, partition: str) -> None:
        c, owner = self.c, self.owner
        plans = expect(c.t.request(owner, PlanRanking(partition, self.peers)), Plans, owner)
        self._relay(plans, partition, seal_context(c.run_id, partition))
        replies = c.t.request_many({d: EmbedSlots(partition) for d in c.domains})
        user_parts, item_parts = [], []
        for d, (uw, iw) in zip(c.domains, self.layout, strict=True):
            rep = expect(replies[d], SlotEmbeddings, d)
            user_parts.append(_slots(rep.users, d, plans.examples, uw))
            item_parts.append(_slots(rep.items, d, plans.item_slots, iw))
        cands = plans.candidates  # int32: a copy in int64 would double it at 1.4M users
        if cands is not None and not (
            cands.dtype.kind in "iu"
            and cands.ndim == 2
            and len(cands) == plans.examples
            and (cands.size == 0 or (cands.min() >= 0 and cands.max() < plans.item_slots))
        ):
            raise ProtocolError(
                f"{owner!r} planned ranking candidates ({cands.dtype}, shape {cands.shape}) "
                f"that are not item slots 0..{plans.item_slots - 1} for {plans.examples} users"
            )
        width = plans.item_slots if cands is None else cands.shape[1]
        # chunks of at most eval_batch pairs (one user's row at least): what the nodes accept
        chunks = pair_chunks((plans.examples, width), chunk_rows(width, c.eval_batch))
        sharing = c.mode == "label-sharing"
        for step, rows in enumerate(chunks):
            x = pairs_input(user_parts, item_parts, cands, plans.item_slots, rows)
            with torch.no_grad():
                out = c.top_(x)
                if sharing:
                    msg = Scores(partition, rows, c.head_(out).numpy().reshape(len(rows), width))
                else:
                    msg = Head(partition, rows, step, False, to_wire(out, c.wire_dtype))
            expect(c.t.request(owner, msg), Ack if sharing else HeadReply, owner)

    def save_model(self, folder: str | Path, meta: dict) -> dict[str, dict]:
        """The dimensions publish their feature bottoms as data products; ids are none."""
        return self.c.publish_products(meta, self.dimensions)


def _slots(values: np.ndarray | None, party: str, rows: int, width: int) -> torch.Tensor | None:
    """One side of a domain's slot embeddings, held to the layout (width 0: a side the
    domain does not describe, which it must not send)."""
    if width == 0:
        if values is not None:
            raise refused(party, "EmbedSlots", "sent embeddings for a side it does not describe")
        return None
    return from_wire(expect_matrix(values, party, "EmbedSlots", rows, width))
