"""Mesh parties: domains that hold their own keyed tables and align them by PSI.

``KeyedDomain``: a domain with its own row order and its own subset of the entities.
``Scorer``: the label domain's side (split/domain.py) when a
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
from splitmesh.io import atomic_write_text
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.common import from_wire
from splitmesh.split.head import HeadHolder, ScoreBook
from splitmesh.split.party import Party, handles
from splitmesh.split.peer_alignment import AlignsKeys, Peers, SignedAlignment
from splitmesh.split.saved import load_bottom, load_module, read_json
from splitmesh.split.tasks import Labels, Task, encode_labels
from splitmesh.transport.messages import (
    Ack,
    Head,
    HeadReply,
    Hello,
    LoadModel,
    SaveModel,
    Scores,
    SetupDomain,
    SetupHead,
    WriteScores,
)

PREDICT = "predict"  # the partition a saved model scores: every aligned row


class KeyedDomain(AlignsKeys, ColumnsParty):
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
