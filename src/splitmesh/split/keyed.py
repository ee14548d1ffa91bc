"""Mesh parties: domains that hold their own keyed tables and align them by PSI.

``KeyedDomain``: a domain with its own row order and its own subset of the entities.
``LabelDomain``: the domain that also owns the label column; it is a domain and the label
owner at once, each half with its own state. ``Scorer``: the label domain's side when a
saved model scores new rows (it alone can name the rows by key).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from splitmesh.data.features import FeaturePrep
from splitmesh.data.sources import DomainTable
from splitmesh.errors import ConfigError, DataError, ProtocolError
from splitmesh.io import atomic_write_json, atomic_write_text
from splitmesh.split import protocol as proto
from splitmesh.split.checkpoint import digest
from splitmesh.split.common import check_mode, from_wire
from splitmesh.split.domain import DomainParty
from splitmesh.split.head import HeadHolder, ScoreBook
from splitmesh.split.label_owner import LabelOwner
from splitmesh.split.party import Party, handles
from splitmesh.split.peer_alignment import AlignsKeys, Peers, SignedAlignment
from splitmesh.split.saved import load_bottom, load_module, read_json, save_module
from splitmesh.split.tasks import Labels, Task, encode_labels
from splitmesh.transport.messages import (
    Ack,
    AlignDone,
    Head,
    HeadReply,
    Hello,
    LoadModel,
    Message,
    SaveModel,
    Scores,
    SetupDomain,
    SetupHead,
    WriteScores,
)

PREDICT = "predict"  # the partition a saved model scores: every aligned row


class KeyedDomain(AlignsKeys, DomainParty):
    """A domain over its own keyed table; rows become aligned positions after PSI between
    domains (split/peer_alignment.py), which the coordinator relays but cannot drive."""

    def __init__(
        self,
        table: DomainTable,
        *,
        peers: Peers | None = None,
        state_dir: str | Path | None = None,
        model_dir: str | Path | None = None,
        product=None,
    ) -> None:
        super().__init__(
            table.domain,
            table.numeric,
            table.numeric_names,
            categorical=table.categorical,
            categorical_names=table.categorical_names,
            state_dir=state_dir,
            model_dir=model_dir,
            product=product,
            source=table,
        )
        self.alignment = SignedAlignment(table.domain, table.key_items(), peers)
        self._fingerprint = super().fingerprint()  # of the table as read, before alignment
        self.rows_: np.ndarray | None = None  # aligned position -> own row

    def fingerprint(self) -> dict:
        return self._fingerprint

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        ack = super().on_hello(msg)
        ack.info.update(key_type=self.source.key_type, notes=list(self.source.notes))
        return ack

    def aligned(self) -> None:
        self.table = self.source.numeric[self.rows_]
        self.categorical = self.source.categorical[self.rows_]

    def _aligned(self, what: str) -> None:
        if self.rows_ is None:
            raise ProtocolError(f"domain {self.name!r} got {what} before its keys were aligned")

    @handles(SetupDomain)
    def on_setup_domain(self, msg: SetupDomain) -> Ack:
        self._aligned("SetupDomain")
        return super().on_setup_domain(msg)

    def model_facts(self, msg: SaveModel) -> dict:
        return {**super().model_facts(msg), "key": self.source.key}

    @handles(LoadModel)
    def on_load_model(self, msg: LoadModel) -> Ack:
        self._aligned("LoadModel")
        folder, who = self._folder(), f"domain {self.name!r}"
        meta = read_json(folder / "model.json", who)
        for kind, have in (("numeric", self.columns), ("categorical", self.categorical_names)):
            if meta[kind] != have:
                lost = [c for c in meta[kind] if c not in have] or have
                raise DataError(
                    f"{who}: the model was trained on {kind} columns {meta[kind]}, the table "
                    f"gives {have}",
                    path=self.source.source,
                    column=lost[0] if lost else None,
                )
        self.prep_ = FeaturePrep.from_dict(read_json(folder / "prep.json", who))
        self.bottom_ = load_bottom(folder, meta, who)
        self.optimizer_ = None
        self._set_partition(PREDICT, *self.prep_.transform(self.table, self.categorical))
        return Ack(info={"rows": len(self.table), "cut_width": meta["cut_width"]})


# messages the label domain's label-owner half serves; the rest go to its domain half
_LABEL_SIDE = {
    "PlanSplit",
    "PlanResample",
    "FinishResample",
    "GetLabels",
    "SetupHead",
    "Head",
    "Evaluate",
    "Scores",
    "WriteScores",
}
_BOTH_SIDES = {"Snapshot", "Restore", "Checkpoint", "LoadCheckpoint", "SaveModel", "LoadModel"}


def label_serves(label_only: bool) -> set[str]:
    """What the label domain's node serves: no bottom model when it holds labels alone."""
    return {proto.KEYS, proto.LABELS} | (set() if label_only else {proto.BOTTOM})


def labeled_rows(table: DomainTable, task: str) -> tuple[DomainTable, Labels]:
    """The label domain's rows that carry a label, and their encoded labels (what the
    label domain trains on, and the centralized reference too)."""
    if table.label is None:
        raise ConfigError(f"domain {table.domain!r} holds no label column")
    notes = []
    missing = pd.isna(table.label)
    if missing.any():
        notes.append(
            f"{table.domain}.{table.label_name}: {int(missing.sum())} row(s) without a "
            "label left out of training"
        )
        table = table.take(np.flatnonzero(~missing))
    where = f"domain {table.domain!r}, label column {table.label_name!r}"
    labels = encode_labels(task, table.label, where=where)
    return table, dataclasses.replace(labels, notes=(*notes, *labels.notes))


class LabelDomain(Party):
    """The domain that owns the label column: a ``KeyedDomain`` for its features and, once
    aligned, a ``LabelOwner`` (training) or a ``Scorer`` (prediction) for its labels."""

    role = "label domain"

    def __init__(
        self,
        table: DomainTable,
        mode: str,
        task: str,
        *,
        purpose: str = "train",
        peers: Peers | None = None,
        state_dir: str | Path | None = None,
        model_dir: str | Path | None = None,
        product=None,
        scores: Path | None = None,
    ) -> None:
        super().__init__(table.domain)
        self.mode, self.task_name, self.purpose = check_mode(mode), task, purpose
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self._state = Path(state_dir) if state_dir is not None else None
        self.notes = list(table.notes)
        self.labels = None
        if purpose == "train":
            table, self.labels = labeled_rows(table, task)
            self.notes += self.labels.notes
        self.scores_path = scores  # where a scoring run writes: its owner's choice
        self.domain = KeyedDomain(
            table,
            peers=peers,
            state_dir=self._state and self._state / "domain",
            model_dir=model_dir,
            product=product,
        )
        self.side: Party | None = None  # LabelOwner or Scorer, once aligned
        # labels and keys only: no bottom model (its node does not serve one)
        self.label_only = not table.features

    def _task(self) -> Task:
        classes = len(self.labels.classes) if self.task_name == "multiclass" else 2
        return Task(self.task_name, n_classes=classes)

    def fingerprint(self) -> dict:
        fp = dict(self.domain.fingerprint())
        if self.labels is not None:
            fp.update(task=self.task_name, label_sha256=digest(self.labels.y))
            if self.task_name == "multiclass":
                fp["classes"] = len(self.labels.classes)
        return fp

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        self.run_id = msg.run
        info = self.domain.on_hello(msg).info
        info.update(role=self.role, data=self.fingerprint(), notes=self.notes)
        return Ack(info=info)

    @handles(AlignDone)
    def on_align_done(self, msg: AlignDone) -> Ack:
        reply = self.domain.handle(msg)
        rows = self.domain.rows_
        if self.purpose == "train":
            self.side = LabelOwner(
                self.name,
                self.labels.y[rows],
                self.mode,
                task=self._task(),
                state_dir=self._state and self._state / "labels",
            )
        else:
            keys = self.domain.source.keys[rows]
            self.side = Scorer(
                self.name, keys, self.domain.source.key, self.mode, self.model_dir,
                scores=self.scores_path,
            )  # fmt: skip
        self.side.run_id = self.run_id
        return reply

    def handle(self, msg: Message) -> Message:
        kind = type(msg).__name__
        if kind in ("Hello", "AlignDone"):
            return super().handle(msg)
        if (kind in _LABEL_SIDE or kind in _BOTH_SIDES) and self.side is None:
            raise ProtocolError(f"domain {self.name!r} got {kind} before its keys were aligned")
        if kind in _LABEL_SIDE:
            return self.side.handle(msg)
        if kind == "SaveModel":
            reply = Ack() if self.label_only else self.domain.handle(msg)
            self._save_labels(msg)
            return reply
        if kind in _BOTH_SIDES:  # a label-only domain has no bottom model to keep
            halves = [self.side] if self.label_only else [self.domain, self.side]
            replies = [half.handle(msg) for half in halves]
            return Ack(info={k: v for r in replies for k, v in r.info.items()})
        return self.domain.handle(msg)

    def forget_run(self) -> None:
        self.domain.forget_run()
        if self.side is not None:
            self.side.forget_run()

    def _save_labels(self, msg: SaveModel) -> None:
        """What scoring needs on the label side: the task, class values, the threshold
        chosen on validation rows, and (label preserving) the head."""
        owner = self.side
        assert isinstance(owner, LabelOwner)
        folder = self.domain._folder()
        # label sharing: the coordinator held the head, so it says how scores read
        task = msg.meta.get("label_task") or owner.book.task.as_dict()
        threshold = msg.meta.get("threshold", owner.book.threshold_)
        label = {
            "task": task,
            "classes": [_jsonable(c) for c in self.labels.classes],
            "threshold": threshold,
            "mode": self.mode,
            "key": self.domain.source.key,
            "label_column": self.domain.source.label_name,
        }
        if owner.head_ is not None:
            label["head_in"] = owner.head_.head.in_features
            save_module(folder / "head.pt", owner.head_.head)
        atomic_write_json(folder / "labels.json", label)


def _jsonable(v):
    return v.item() if isinstance(v, np.generic) else v


class Scorer(Party):
    """The label side at prediction time: scores rows (running the head in label-preserving
    mode) and writes them keyed by its own key."""

    role = "label domain"

    def __init__(
        self,
        name: str,
        keys: np.ndarray,
        key: str,
        mode: str,
        model_dir: Path | None,
        *,
        scores: Path | None = None,
    ) -> None:
        super().__init__(name)
        self.keys, self.key, self.mode, self.model_dir = keys, key, mode, model_dir
        self.scores_path = scores
        self.head_: HeadHolder | None = None
        self.meta: dict = {}

    @handles(LoadModel)
    def on_load_model(self, msg: LoadModel) -> Ack:
        who = f"label domain {self.name!r}"
        if self.model_dir is None:
            raise ConfigError(f"{who} has no model folder")
        self.meta = read_json(self.model_dir / "labels.json", who)
        task = Task(**self.meta["task"])
        if self.meta["mode"] != self.mode:
            raise ConfigError(
                f"{who}: the model was trained in {self.meta['mode']} mode, not {self.mode}"
            )
        if self.mode == "label-preserving":
            setup = SetupHead(self.meta["head_in"], {}, 0, task=task.name)
            self.head_ = HeadHolder(f"{who}", setup, task)
            load_module(self.model_dir / "head.pt", self.head_.head, who)
        self.book = ScoreBook(task)
        self.book.start(PREDICT, len(self.keys))
        return Ack(info={"rows": len(self.keys)})

    @handles(Head)
    def on_head(self, msg: Head) -> HeadReply:
        if self.head_ is None or msg.train:
            raise ProtocolError(f"label domain {self.name!r} only scores at prediction time")
        self.book.record(msg.partition, msg.positions, self.head_.logits(msg.activations))
        return HeadReply(loss=0.0)

    @handles(Scores)
    def on_scores(self, msg: Scores) -> Ack:
        if self.mode != "label-sharing":
            raise ProtocolError(f"label domain {self.name!r} runs the head itself")
        self.book.record(msg.partition, msg.rows, from_wire(msg.values))
        return Ack()

    @handles(WriteScores)
    def on_write_scores(self, msg: WriteScores) -> Ack:
        frame = scores_frame(
            self.key,
            self.keys,
            self.book.task,
            self.book.scores(msg.partition),
            self.meta.get("classes", []),
            self.meta.get("threshold"),
        )
        path = self._scores_file()
        atomic_write_text(path, frame.to_csv(index=False))
        return Ack(info={"rows": len(frame), "columns": list(frame.columns), "file": path.name})

    def _scores_file(self) -> Path:
        """The party's own output file, as its owner configured it; nothing from the wire."""
        if self.scores_path is None:
            raise ConfigError(
                f"label domain {self.name!r} has no output file for scores",
                hint="give its node an outputs folder",
            )
        return self.scores_path


def scores_frame(
    key: str,
    keys: np.ndarray,
    task: Task,
    scores: np.ndarray,
    classes: list,
    threshold: float | None,
) -> pd.DataFrame:
    """Scored rows by key: binary ``score`` (P of the second class) and ``predicted`` at the
    validation threshold; multiclass ``predicted`` and ``p_<class>``; regression ``predicted``."""
    frame = pd.DataFrame({key: keys})
    if task.name == "binary":
        frame["score"] = scores
        if threshold is not None and len(classes) == 2:
            frame["predicted"] = np.where(scores >= threshold, classes[1], classes[0])
    elif task.name == "multiclass":
        frame["predicted"] = np.asarray(classes, dtype=object)[scores.argmax(axis=1)]
        for j, c in enumerate(classes):
            frame[f"p_{c}"] = scores[:, j]
    else:
        frame["predicted"] = scores
    return frame
