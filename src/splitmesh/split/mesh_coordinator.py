"""The coordinator of a mesh of keyed tables: aligns them by PSI before training, saves
every party's model on its own disk, and scores new rows through the same parties."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from splitmesh.data.features import missing_notes
from splitmesh.errors import ConfigError, ProtocolError
from splitmesh.io import atomic_write_json
from splitmesh.nn.aggregators import make_aggregator
from splitmesh.split.common import eval_batches, to_wire
from splitmesh.split.coordinator import Coordinator, _expect
from splitmesh.split.keyed import PREDICT
from splitmesh.split.saved import load_module, read_json, save_module
from splitmesh.split.tasks import Task
from splitmesh.transport.base import Transport
from splitmesh.transport.messages import (
    Ack,
    AlignDone,
    Head,
    HeadReply,
    LoadModel,
    PsiBlob,
    PsiFinish,
    PsiReply,
    PsiRequest,
    PsiServe,
    Scores,
    WriteScores,
)

COORDINATOR = "coordinator"  # the coordinator's folder among the saved parts


def _relayed(cls, msg):
    """Pass a signed PSI message on unchanged: the relay can neither read nor forge it."""
    if isinstance(msg, PsiBlob):
        return cls(msg.request, msg.size, msg.claim, msg.cert, msg.signature)
    return cls(msg.setup, msg.response, msg.claim, msg.cert, msg.signature)


def relay_psi(t: Transport, client: str, server: str) -> int:
    """One PSI intersection relayed: ``client`` asks ``server`` and applies its reply;
    how many of the client's candidate keys remain."""
    blob = _expect(t.request(client, PsiRequest(server)), PsiBlob, client)
    reply = _expect(t.request(server, _relayed(PsiServe, blob)), PsiReply, server)
    return _expect(t.request(client, _relayed(PsiFinish, reply)), Ack, client).info["size"]


class MeshCoordinator(Coordinator):
    """``label_owner`` is the label domain (also one of ``domains``)."""

    alignment_: dict | None = None

    def align(self) -> None:
        """PSI (see data/alignment.py): the coordinator relays blinded points, learns counts."""
        types = {p: info.get("key_type") for p, info in self.nodes_.items()}
        if len(set(types.values())) > 1:
            listed = ", ".join(f"{p!r} has {t} keys" for p, t in types.items())
            raise ConfigError(
                f"the domains' keys are of different types: {listed}",
                hint="cast the key in a {sql: ...} source, e.g. CAST(id AS VARCHAR) AS id",
            )
        lo, others = self.label_owner, [d for d in self.domains if d != self.label_owner]
        sizes = {p: info.get("data", {}).get("rows") for p, info in self.nodes_.items()}
        steps = []
        for d in others:  # shrink: the label domain keeps the keys every domain holds
            steps.append({"with": d, "left": relay_psi(self.t, lo, d)})
        common = steps[-1]["left"] if steps else sizes.get(lo)
        blobs = {
            d: _expect(r, PsiBlob, d)
            for d, r in self.t.request_many({d: PsiRequest(lo) for d in others}).items()
        }
        finish = {}
        for d in others:  # share: each domain learns which of its rows are in the final set
            rep = _expect(self.t.request(lo, _relayed(PsiServe, blobs[d])), PsiReply, lo)
            finish[d] = _relayed(PsiFinish, rep)
        for d, r in self.t.request_many(finish).items():
            got = _expect(r, Ack, d).info["size"]
            if got != common:
                raise ProtocolError(
                    f"domain {d!r} found {got} common keys, the label domain {common}"
                )
        done = self.t.request_many(dict.fromkeys([lo, *others], AlignDone()))
        rows = {p: _expect(r, Ack, p).info["rows"] for p, r in done.items()}
        if not common:
            raise ConfigError(
                "the domains have no key in common: nothing to train on",
                hint="check that every domain's key column names the same entities",
            )
        self.alignment_ = {"rows_per_domain": sizes, "aligned": rows[lo], "steps": steps}

    # -- the trained model, each part on its owner's disk -------------------------------------
    def save_model(self, folder: str | Path, meta: dict | None = None) -> Path:
        """Every party saves its own part (where its node keeps models); the coordinator
        writes only its top (and, with label sharing, the head) under ``folder/coordinator``."""
        meta = dict(meta or {})
        label_meta = dict(meta)
        if self.mode == "label-sharing":
            label_meta.update(label_task=self.task_.as_dict(), threshold=self.book.threshold_)
        # the label domain is one of the domains: it saves its labels' side too
        parties = list(dict.fromkeys([*self.domains, self.label_owner]))  # label-only too
        self.products_ = self.publish_products(
            meta, parties, meta_for={self.label_owner: label_meta}
        )
        out = Path(folder) / COORDINATOR
        save_module(out / "top.pt", self.top_)
        if self.mode == "label-sharing":
            save_module(out / "head.pt", self.head_)
        if len(self.products_) == len(self.domains):  # every part it needs is a product
            from splitmesh.mesh.export import sha256_file
            from splitmesh.mesh.products import publish_composite

            facts = {
                "runId": self.run_id,
                "mode": self.mode,
                "topSha256": sha256_file(out / "top.pt"),
            }
            publish_composite(out, meta.get("mesh", self.run), self.products_, facts)
        atomic_write_json(
            out / "model.json",
            {
                "run": self.run,
                "mode": self.mode,
                "task": self.task_.as_dict() if self.mode == "label-sharing" else self.task,
                "domains": self.domains,
                "label_owner": self.label_owner,
                "spec": dataclasses.asdict(self.spec),
                "cut_widths": self.cut_widths_,
                **meta,
            },
        )
        return out

    def prepare(self, **kw) -> dict:
        out = super().prepare(**kw)
        self.cut_widths_ = out["cut_widths"]
        out["alignment"] = self.alignment_
        out["notes"] = [n for info in self.nodes_.values() for n in info.get("notes", [])]
        out["notes"] += missing_notes(out["missing"], "training")
        return out

    # -- scoring new rows -----------------------------------------------------------------
    def predict(self, folder: str | Path) -> dict:
        """Align the parties' (new) tables, load every part, score every common row; the
        label domain writes the scores, keyed by its key, to its own output file."""
        folder = Path(folder) / COORDINATOR
        meta = read_json(folder / "model.json", "the coordinator")
        if meta["mode"] != self.mode:
            raise ConfigError(f"the model in {folder} was trained in {meta['mode']} mode")
        if meta["domains"] != self.domains:
            raise ConfigError(f"the model in {folder} was trained on domains {meta['domains']}")
        self.hello("predict")
        self.align()
        loaded = self.t.request_many(dict.fromkeys([*self.domains, self.label_owner], LoadModel()))
        n = _expect(loaded[self.label_owner], Ack, self.label_owner).info["rows"]
        widths = [meta["cut_widths"][d] for d in self.domains]
        spec = self.spec
        self.aggregator = make_aggregator(spec.aggregation)
        top = spec.build_top(len(self.domains), 0)
        if widths != [spec.bottom[-1]] * len(widths):
            raise ConfigError(f"the saved cut widths {widths} do not match the model settings")
        self.top_ = load_module(folder / "top.pt", top, "the coordinator").eval()
        task = None
        if self.mode == "label-sharing":
            task = Task(**meta["task"])
            head_spec = dataclasses.replace(spec, out_features=task.out_features)
            head = head_spec.build_head(spec.head_in(len(self.domains)), 0)
            self.head_ = load_module(folder / "head.pt", head, "the coordinator").eval()
        lo = self.label_owner
        for i, pos in enumerate(eval_batches(n, self.eval_batch)):
            replies = self.t.request_many(self._forwards(PREDICT, pos, i, False))
            hs = self._embeddings(replies)
            with torch.no_grad():
                act = self.top_(self.aggregator(hs))
                if task is not None:
                    logits = self.head_(act)
                    _expect(self.t.request(lo, Scores(PREDICT, pos, logits.numpy())), Ack, lo)
            if task is None:
                msg = Head(PREDICT, pos, i, False, to_wire(act, self.wire_dtype))
                _expect(self.t.request(lo, msg), HeadReply, lo)
        done = _expect(self.t.request(lo, WriteScores(PREDICT)), Ack, lo)
        return {"rows": n, "alignment": self.alignment_, **done.info}
