"""The coordinator's steps for a mesh of keyed tables (binary, multiclass, regression):
rows aligned by PSI between the domains, split and resampled by the label domain, every
epoch over the same training rows. Its trained model is saved part by part, each on its
owner's disk, and scores new rows through the same parties."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from splitmesh.config import Resample
from splitmesh.data.features import missing_notes
from splitmesh.errors import ConfigError, ProtocolError
from splitmesh.io import atomic_write_json
from splitmesh.nn import network
from splitmesh.split.common import PARTITIONS, eval_batches, to_wire
from splitmesh.split.head import ScoreBook
from splitmesh.split.keyed import PREDICT
from splitmesh.split.relay import expect, expect_matrix, expect_metrics, relay_alignment
from splitmesh.split.saved import load_module, read_json, save_module
from splitmesh.split.tasks import Task
from splitmesh.transport.messages import (
    Ack,
    AlignDone,
    Augment,
    Distances,
    Evaluate,
    FinishResample,
    GetLabels,
    Head,
    HeadReply,
    Labels,
    LoadModel,
    Metrics,
    PartialDistances,
    PlanResample,
    PlanSplit,
    ResampleNeeds,
    Scores,
    SetupDomain,
    SetupHead,
    SplitPlan,
    WriteScores,
)

if TYPE_CHECKING:
    from splitmesh.split.coordinator import Coordinator

COORDINATOR = "coordinator"  # the coordinator's folder among the saved parts


class KeyedSteps:
    """``c.label_owner`` is the label domain (one of ``c.domains`` unless it holds labels
    alone)."""

    def __init__(self, c: Coordinator) -> None:
        self.c = c

    # -- alignment -------------------------------------------------------------------------
    def align(self) -> dict | None:
        """PSI (data/alignment.py): the label domain intersects with every other domain in
        turn, then names each one's common keys; the coordinator relays blinded points and
        learns counts. Parties that announce no key are aligned already (in-process tables)."""
        c = self.c
        if not any(info.get("aligns_keys") for info in c.nodes_.values()):
            return None
        types = {p: info.get("key_type") for p, info in c.nodes_.items()}
        if len(set(types.values())) > 1:
            listed = ", ".join(f"{p!r} has {t} keys" for p, t in types.items())
            raise ConfigError(
                f"the domains' keys are of different types: {listed}",
                hint="cast the key in a {sql: ...} source, e.g. CAST(id AS VARCHAR) AS id",
            )
        t, lo = c.t, c.label_owner
        others = [d for d in c.domains if d != lo]
        sizes = {p: info.get("data", {}).get("rows") for p, info in c.nodes_.items()}
        steps = relay_alignment(t, lo, others, c.on_step)
        common = steps[-1]["left"] if steps else sizes.get(lo)
        done = t.request_many(dict.fromkeys([lo, *others], AlignDone()))
        rows = {p: expect(r, Ack, p).info["rows"] for p, r in done.items()}
        if not common:
            raise ConfigError(
                "the domains have no key in common: nothing to train on",
                hint="check that every domain's key column names the same entities",
            )
        return {"rows_per_domain": sizes, "aligned": rows[lo], "steps": steps}

    # -- preparation: split, scaling (in each domain), resampling across the boundary -------
    def prepare(self, *, test: float, validation: float, resample: Resample | None = None) -> dict:
        c, lo = self.c, self.c.label_owner
        resample = resample or Resample()
        plan = expect(c.t.request(lo, PlanSplit(test, validation, c.seed)), SplitPlan, lo)
        setup = SetupDomain(
            train=plan.train,
            val=plan.val,
            test=plan.test,
            model=network.bottom_wire(c.spec),
            optim=c.optim.wire(),
            seed=c.seed,
            wire_dtype=c.wire_dtype,
        )
        replies = c.t.request_many(dict.fromkeys(c.domains, setup))
        infos = {d: expect(r, Ack, d).info for d, r in replies.items()}
        ask = PlanResample(resample.smote_ratio, resample.under_ratio, resample.k_neighbors, c.seed)
        needs = expect(c.t.request(lo, ask), ResampleNeeds, lo)
        total = np.zeros((0, 0))
        if needs.positions.size:
            asks = {d: PartialDistances("train", needs.positions) for d in c.domains}
            k = len(needs.positions)
            parts = [
                expect_matrix(expect(r, Distances, d).values, d, "PartialDistances", k, k)
                for d, r in c.t.request_many(asks).items()
            ]
            total = np.sum(parts, axis=0)  # squared distances add up across disjoint columns
        aug = expect(c.t.request(lo, FinishResample(total)), Augment, lo)
        c.t.request_many({d: aug for d in c.domains})
        c.sizes_ = {"train": len(aug.order), "val": len(plan.val), "test": len(plan.test)}
        width = c.spec.bottom[-1]  # what the top model reads from each domain
        for d in c.domains:
            w = infos[d].get("cut_width")
            if w != width or isinstance(w, bool):
                raise ProtocolError(
                    f"domain {d!r} announced a cut layer of width {str(w)[:20]}; this run's "
                    f"bottom models end at width {width}"
                )
        c.cut_widths = dict.fromkeys(c.domains, width)
        missing = {d: infos[d].get("missing", {}) for d in c.domains}
        notes = [n for info in c.nodes_.values() for n in info.get("notes", [])]
        return {
            "rows": {"original": {p: len(getattr(plan, p)) for p in PARTITIONS}, **c.sizes_},
            "resample_notes": list(aug.notes),
            "cut_widths": c.cut_widths,
            "missing": missing,
            "notes": notes + missing_notes(missing, "training"),
        }

    def build(self) -> list[torch.nn.Parameter]:
        """Top model; with label sharing, the head and the labels too."""
        c, n = self.c, len(self.c.domains)
        c.aggregator = c.make_aggregator()
        c.top_ = network.build_top(c.spec, n, c.seed)
        params = list(c.top_.parameters())
        head_in = network.head_in(c.spec, n)
        lo = c.label_owner
        if c.mode == "label-sharing":
            asks = {p: c.t.request(lo, GetLabels(p)) for p in PARTITIONS}
            self.labels = labels = {p: expect(r, Labels, lo).values for p, r in asks.items()}
            for p, v in labels.items():
                if v.shape != (c.sizes_[p],) or (v.dtype.kind == "f" and not np.isfinite(v).all()):
                    raise ProtocolError(
                        f"{lo!r} sent {v.dtype} labels of shape {v.shape} for {p!r}, where the "
                        f"run holds {c.sizes_[p]} rows (finite values, one per row)"
                    )
            classes = c.nodes_.get(lo, {}).get("data", {}).get("classes", 2)
            c.task_ = Task(c.task, n_classes=classes).fit(labels["train"])
            c.head_ = network.build_head(head_in, c.task_.out_features, c.seed)
            params += list(c.head_.parameters())
            c._y_train = c.task_.target(labels["train"])
            self.book = ScoreBook(c.task_)
        else:
            setup = SetupHead(head_in, c.optim.wire(), c.seed, c.wire_dtype, c.pos_weight, c.task)
            expect(c.t.request(lo, setup), Ack, lo)
        return params

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int] | None:
        return None  # every epoch trains on the same rows, held all along

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        """Every epoch trains on the same rows; nothing to plan."""

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, partitions: list[str], select_on: str) -> dict:
        c, lo = self.c, self.c.label_owner
        c.top_.eval()
        for p in dict.fromkeys([select_on, *partitions]):
            for i, pos in enumerate(eval_batches(c.sizes_[p], c.eval_batch)):
                hs = c.embed(p, pos, i)
                with torch.no_grad():
                    out = c.top_(c.aggregator(hs))
                    if c.mode == "label-sharing":
                        if i == 0:
                            self.book.start(p, c.sizes_[p])
                        self.book.record(p, pos, c.head_(out))
                if c.mode == "label-preserving":
                    msg = Head(p, pos, i, False, to_wire(out, c.wire_dtype))
                    expect(c.t.request(lo, msg), HeadReply, lo)
        if c.mode == "label-sharing":
            return self.book.evaluate(self.labels, select_on, list(partitions))
        reply = c.t.request(lo, Evaluate(select_on, list(partitions)))
        return expect_metrics(expect(reply, Metrics, lo).values, lo, list(partitions))

    # -- the trained model, each part on its owner's disk -------------------------------------
    def save_model(self, folder: str | Path, meta: dict) -> dict[str, dict]:
        """Every party saves its own part (where its node keeps models); the coordinator
        writes only its top (and, with label sharing, the head) under ``folder/coordinator``.
        What each domain published, by domain."""
        c = self.c
        label_meta = dict(meta)
        if c.mode == "label-sharing":
            label_meta.update(label_task=c.task_.as_dict(), threshold=self.book.threshold_)
        # the label domain saves its labels' side too (a label-only one nothing else)
        parties = list(dict.fromkeys([*c.domains, c.label_owner]))
        products = c.publish_products(meta, parties, meta_for={c.label_owner: label_meta})
        out = Path(folder) / COORDINATOR
        save_module(out / "top.pt", c.top_)
        if c.mode == "label-sharing":
            save_module(out / "head.pt", c.head_)
        if len(products) == len(c.domains):  # every part it needs is a product
            from splitmesh.mesh.export import sha256_file
            from splitmesh.mesh.products import publish_composite

            facts = {"runId": c.run_id, "mode": c.mode, "topSha256": sha256_file(out / "top.pt")}
            publish_composite(out, meta.get("mesh", c.run), products, facts)
        atomic_write_json(
            out / "model.json",
            {
                "run": c.run,
                "mode": c.mode,
                "task": c.task_.as_dict() if c.mode == "label-sharing" else c.task,
                "domains": c.domains,
                "label_owner": c.label_owner,
                "spec": c.spec.model_dump(),
                "cut_widths": c.cut_widths,
                **meta,
            },
        )
        return products

    # -- scoring new rows -----------------------------------------------------------------
    def predict(self, folder: str | Path) -> dict:
        """Align the parties' (new) tables, load every part, score every common row; the
        label domain writes the scores, keyed by its key, to its own output file."""
        c, lo = self.c, self.c.label_owner
        folder = Path(folder) / COORDINATOR
        meta = read_json(folder / "model.json", "the coordinator")
        if meta["mode"] != c.mode:
            raise ConfigError(f"the model in {folder} was trained in {meta['mode']} mode")
        if meta["domains"] != c.domains:
            raise ConfigError(f"the model in {folder} was trained on domains {meta['domains']}")
        step = c.on_step or (lambda _: None)
        step("opening the domains' tables")
        c.hello("predict")
        c.align()
        step("loading the trained parts")
        loaded = c.t.request_many(dict.fromkeys([*c.domains, lo], LoadModel()))
        n = expect(loaded[lo], Ack, lo).info.get("rows")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ProtocolError(f"{lo!r} counts {str(n)[:20]} rows to score")
        widths = [meta["cut_widths"][d] for d in c.domains]
        spec = c.spec
        if widths != [spec.bottom[-1]] * len(widths):
            raise ConfigError(f"the saved cut widths {widths} do not match the model settings")
        c.cut_widths = dict(zip(c.domains, widths, strict=True))
        c.aggregator = c.make_aggregator()
        top = network.build_top(spec, len(c.domains), 0)
        c.top_ = load_module(folder / "top.pt", top, "the coordinator").eval()
        task = None
        if c.mode == "label-sharing":
            task = Task(**meta["task"])
            head = network.build_head(network.head_in(spec, len(c.domains)), task.out_features, 0)
            c.head_ = load_module(folder / "head.pt", head, "the coordinator").eval()
        step(f"scoring {n} rows")
        for i, pos in enumerate(eval_batches(n, c.eval_batch)):
            hs = c.embed(PREDICT, pos, i)
            with torch.no_grad():
                act = c.top_(c.aggregator(hs))
                if task is not None:
                    logits = c.head_(act)
                    expect(c.t.request(lo, Scores(PREDICT, pos, logits.numpy())), Ack, lo)
            if task is None:
                msg = Head(PREDICT, pos, i, False, to_wire(act, c.wire_dtype))
                expect(c.t.request(lo, msg), HeadReply, lo)
        step("writing the scores")
        done = expect(c.t.request(lo, WriteScores(PREDICT)), Ack, lo)
        return {"rows": n, "alignment": c.alignment_, **done.info}
