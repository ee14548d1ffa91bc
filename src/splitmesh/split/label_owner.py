"""The label owner: plans the split and the resampling; in label-preserving mode it also
holds the head (the network's last layer) and the loss, so labels never leave it.
"""

from __future__ import annotations

import os

import numpy as np

from splitmesh.config import Privacy, Resample, Split, from_message
from splitmesh.data.resampling import (
    minority_positions,
    plan_resample,
    smote_count,
)
from splitmesh.errors import NotFittedError, ProtocolError
from splitmesh.privacy.protections import party_key, randomized_response
from splitmesh.split.checkpoint import digest
from splitmesh.split.common import check_mode
from splitmesh.split.head import HeadHolder, ScoreBook
from splitmesh.split.party import Party, handles
from splitmesh.split.tasks import Task
from splitmesh.transport.messages import (
    Ack,
    Augment,
    Evaluate,
    FinishResample,
    GetLabels,
    Head,
    HeadReply,
    Hello,
    Labels,
    Metrics,
    PlanResample,
    PlanSplit,
    ResampleNeeds,
    SetupHead,
    SplitPlan,
)


class LabelOwner(Party):
    role = "label owner"

    def __init__(
        self,
        name: str,
        labels: np.ndarray,
        mode: str,
        *,
        state_dir: str | None = None,
        task: Task | None = None,
        privacy: Privacy | None = None,
        secret: bytes | None = None,
    ) -> None:
        super().__init__(name, state_dir=state_dir)
        self.privacy = privacy or Privacy()  # from its own mesh file, never from the wire
        self.secret = secret or os.urandom(32)  # keys its randomness: never sent
        self.task = task or Task()
        dtype = np.float64 if self.task.name == "regression" else np.int64
        self.labels = np.asarray(labels).astype(dtype)
        self.mode = check_mode(mode)
        self._y: dict[str, np.ndarray] = {}
        # the settings and seed of PlanResample, and how many rows it asked distances of
        self._resample: tuple[Resample, int, int] | None = None
        self.head_: HeadHolder | None = None
        self.book = ScoreBook(self.task)

    def _partition(self, partition: str) -> np.ndarray:
        if partition not in self._y:
            raise NotFittedError(f"label owner {self.name!r} has no partition {partition!r}")
        return self._y[partition]

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        if msg.mode != self.mode:
            raise ProtocolError(
                f"label owner {self.name!r} runs in {self.mode} mode, not {msg.mode}"
            )
        return super().on_hello(msg)

    @handles(PlanSplit)
    def on_plan_split(self, msg: PlanSplit) -> SplitPlan:
        asked = {"test": msg.test, "validation": msg.validation}
        split = from_message(Split, asked, f"label owner {self.name!r}")
        parts = self.task.split(
            self.labels, test=split.test, validation=split.validation, seed=msg.seed
        )
        self._y = {p: self.labels[pos] for p, pos in parts.items()}
        return SplitPlan(**parts)

    @handles(PlanResample)
    def on_plan_resample(self, msg: PlanResample) -> ResampleNeeds:
        asked = {k: getattr(msg, k) for k in ("smote_ratio", "under_ratio", "k_neighbors")}
        cfg = from_message(Resample, asked, f"label owner {self.name!r}")
        if self.task.name != "binary":  # rebalancing is for two classes
            cfg = Resample(k_neighbors=cfg.k_neighbors)
        y = self._partition("train")
        n_new, why = smote_count(y, cfg.smote_ratio)
        positions = minority_positions(y) if n_new > 0 else np.zeros(0, np.int64)
        self._resample = (cfg, msg.seed, len(positions))
        return ResampleNeeds(positions=positions, notes=[why] if why else [])

    @handles(FinishResample)
    def on_finish_resample(self, msg: FinishResample) -> Augment:
        if self._resample is None:
            raise ProtocolError("FinishResample before PlanResample")
        cfg, seed, k = self._resample
        distances = msg.distances if msg.distances.size else None
        if k or distances is not None:  # between the k rows it asked about, and only those
            if distances is None or distances.shape != (k, k):
                got = "none" if distances is None else f"shape {distances.shape}"
                raise ProtocolError(f"FinishResample: distances must be {k} x {k}, got {got}")
            if distances.dtype.kind != "f" or not np.isfinite(distances).all():
                raise ProtocolError("FinishResample: distances must be finite floats")
        plan = plan_resample(self._partition("train"), distances, cfg, seed)
        self._y["train"] = self.clear_train_ = plan.labels  # clear_train_: never sent
        rr = self.privacy.labels
        if rr is not None and self.task.name in ("binary", "multiclass"):
            # label DP: the run trains on randomized responses (what label sharing hands
            # out, what the head's gradients derive from); evaluation keeps the true labels
            key = party_key(self.secret, seed)
            self._y["train"] = randomized_response(plan.labels, rr, self.task.n_classes, key)
        return Augment(
            partition="train",
            base=plan.base,
            rows=plan.rows,
            neighbours=plan.neighbours,
            gaps=plan.gaps,
            order=plan.order,
            notes=list(plan.notes),
        )

    @handles(GetLabels)
    def on_get_labels(self, msg: GetLabels) -> Labels:
        if self.mode != "label-sharing":
            raise ProtocolError(
                f"label owner {self.name!r} keeps its labels in {self.mode} mode; "
                "GetLabels is refused"
            )
        return Labels(values=self._partition(msg.partition))

    def fingerprint(self) -> dict:
        out = {"rows": len(self.labels), "task": self.task.name, "sha256": digest(self.labels)}
        if self.task.name == "binary":
            out["positives"] = int(self.labels.sum())
        if self.task.name == "multiclass":
            out["classes"] = self.task.n_classes
        return out

    def stateful(self) -> dict:
        return {} if self.head_ is None else self.head_.stateful()

    # -- label-preserving: the head and the loss live here ---------------------------------
    @handles(SetupHead)
    def on_setup_head(self, msg: SetupHead) -> Ack:
        task = self.task.fit(self._partition("train"))
        noise = self.privacy.gradients
        self.head_ = HeadHolder.setup(
            self.role, self.name, self.mode, msg, task, noise, self.secret
        )
        self.book = ScoreBook(task)
        return Ack()

    @handles(Head)
    def on_head(self, msg: Head) -> HeadReply:
        if self.head_ is None:
            raise NotFittedError(f"label owner {self.name!r} got Head before SetupHead")
        if msg.train:
            y = self._partition(msg.partition)[msg.positions]
            return self.head_.train(msg.activations, y, msg.step)
        if msg.step == 0:  # evaluation steps count from 0 within each pass
            self.book.start(msg.partition, len(self._partition(msg.partition)))
        self.book.record(msg.partition, msg.positions, self.head_.logits(msg.activations))
        return HeadReply(loss=0.0)

    @handles(Evaluate)
    def on_evaluate(self, msg: Evaluate) -> Metrics:
        return Metrics(values=self.book.evaluate(self._y, msg.select_on, msg.partitions))
