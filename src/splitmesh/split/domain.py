"""A domain of a mesh as its node hosts it: one party for every kind of mesh entry.

A domain is made of the parts its own mesh entry gives it, each with its own state:
- its **rows**: a ``KeyedDomain`` (a keyed mesh: its columns over rows aligned by PSI),
  a ``FactDomain`` (a star's fact table: it plans examples and holds their labels) or a
  ``DimensionDomain`` (a star's dimension: its columns over rows a sealed plan names);
- its **labels**, when it owns a keyed mesh's label column: a ``LabelOwner`` (training) or
  a ``Scorer`` (prediction), made once its keys are aligned.

``mesh_domain`` builds the domain a mesh file describes, the same way in process and on a
node; what its node serves (split/protocol.py) follows from the same entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from splitmesh.config import Privacy
from splitmesh.data.sources import DomainTable, FactTable
from splitmesh.errors import ConfigError, ProtocolError
from splitmesh.io import atomic_write_json
from splitmesh.privacy.secure_sum import Masker
from splitmesh.split import protocol as proto
from splitmesh.split.checkpoint import digest
from splitmesh.split.common import check_mode
from splitmesh.split.keyed import KeyedDomain, Scorer, labeled_rows
from splitmesh.split.label_owner import LabelOwner
from splitmesh.split.party import Party, handles
from splitmesh.split.peer_alignment import Peers
from splitmesh.split.saved import save_module
from splitmesh.split.star import DimensionDomain, FactDomain, star_peers
from splitmesh.split.tasks import Labels, Task
from splitmesh.transport.identity import Identity
from splitmesh.transport.messages import Ack, AlignDone, Hello, Message, SaveModel

if TYPE_CHECKING:
    from splitmesh.mesh.spec import MeshSpec

# messages a keyed label domain's labels serve; the rest go to its rows
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


class Domain(Party):
    """One domain: its rows' part and, for a keyed mesh's label domain, its labels' part.
    ``task`` and ``labels``: the label task and its encoded labels (training) when it owns
    a keyed mesh's label column; ``scores``: where a scoring run writes its scores."""

    role = "domain"
    routes = frozenset(_LABEL_SIDE | _BOTH_SIDES)  # what it hands its labels' part

    def __init__(
        self,
        rows: KeyedDomain | FactDomain | DimensionDomain,
        *,
        mode: str,
        purpose: str = "train",
        task: str | None = None,
        labels: Labels | None = None,
        state_dir: str | Path | None = None,
        scores: Path | None = None,
        privacy: Privacy | None = None,
        secret: bytes | None = None,
        mask_group: list[str] | None = None,
    ) -> None:
        super().__init__(rows.name)
        self.privacy = privacy or Privacy()
        rows.protection = self.privacy.embeddings  # what it releases, its own file's word
        rows.nopeek = self.privacy.nopeek
        # secure aggregation: the domains whose embeddings are summed, per its own file
        self.mask_group = list(mask_group or [])
        if secret is not None:  # keys its noise and randomized response: never sent
            rows.secret = secret
        self.secret = rows.secret
        self.rows, self.mode, self.purpose = rows, check_mode(mode), purpose
        self.task_name, self.labels, self.scores_path = task, labels, scores
        self._state = Path(state_dir) if state_dir is not None else None
        self.side: LabelOwner | Scorer | None = None  # its labels' part, once aligned
        self.notes = list(getattr(getattr(rows, "source", None), "notes", ()))
        if labels is not None:
            self.notes += labels.notes
        if task is not None:
            self.role = "label domain"
        # labels and keys only: no bottom model (its node does not serve one)
        self.label_only = isinstance(rows, KeyedDomain) and not rows.source.features

    @classmethod
    def keyed(
        cls,
        table: DomainTable,
        *,
        mode: str,
        task: str | None = None,
        purpose: str = "train",
        peers: Peers | None = None,
        state_dir: Path | None = None,
        model_dir: Path | None = None,
        product=None,
        scores: Path | None = None,
        privacy: Privacy | None = None,
        secret: bytes | None = None,
        mask_group: list[str] | None = None,
    ) -> Domain:
        """A keyed mesh's domain over its table; ``task``: it owns the table's label column
        (training drops the rows without a label)."""
        labels = None
        if task is not None and purpose == "train":
            table, labels = labeled_rows(table, task)
        rows = KeyedDomain(
            table,
            peers=peers,
            state_dir=(state_dir / "domain") if (state_dir and task) else state_dir,
            model_dir=model_dir,
            product=product,
        )
        return cls(
            rows, mode=mode, purpose=purpose, task=task, labels=labels, state_dir=state_dir,
            scores=scores, privacy=privacy, secret=secret, mask_group=mask_group,
        )  # fmt: skip

    def _task(self) -> Task:
        classes = len(self.labels.classes) if self.task_name == "multiclass" else 2
        return Task(self.task_name, n_classes=classes)

    def fingerprint(self) -> dict:
        fp = dict(self.rows.fingerprint())
        if self.labels is not None:
            fp.update(task=self.task_name, label_sha256=digest(self.labels.y))
            if self.task_name == "multiclass":
                fp["classes"] = len(self.labels.classes)
        return fp

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        self.run_id = msg.run
        info = self.rows.handle(msg).info
        if self.task_name is not None:
            info.update(role=self.role, data=self.fingerprint(), notes=self.notes)
        applied = self.applied()
        if applied:
            info["privacy"] = applied
        if "secure_aggregation" in applied:  # a fresh key pair per run, signed
            sa, peers = self.privacy.secure_aggregation, getattr(self.rows.alignment, "peers", None)
            self.rows.masker = Masker(
                self.name, self.mask_group, peers and peers.identity, sa.precision_bits
            )
            info["mask_key"] = self.rows.masker.announce(msg.run)
        return Ack(info=info)

    def applied(self) -> dict:
        """The protections this domain applies (from its own mesh file): embeddings when
        it releases any, labels and gradients when it holds the labels."""
        p, out = self.privacy, {}
        releases = not self.label_only  # it has a bottom model whose embeddings leave
        for kind in ("embeddings", "nopeek"):
            if getattr(p, kind) is not None and releases:
                out[kind] = getattr(p, kind).model_dump()
        if p.secure_aggregation is not None and releases and isinstance(self.rows, KeyedDomain):
            out["secure_aggregation"] = p.secure_aggregation.model_dump()
        holds_labels = self.task_name is not None or isinstance(self.rows, FactDomain)
        if holds_labels and p.labels is not None and self.task_name in ("binary", "multiclass"):
            out["labels"] = p.labels.model_dump()
        if holds_labels and p.gradients is not None and self.mode == "label-preserving":
            out["gradients"] = p.gradients.model_dump()
        return out

    @handles(AlignDone)
    def on_align_done(self, msg: AlignDone) -> Ack:
        reply = self.rows.handle(msg)
        if self.task_name is None:
            return reply
        rows, state = self.rows.rows_, self._state
        if self.purpose == "train":
            self.side = LabelOwner(
                self.name,
                self.labels.y[rows],
                self.mode,
                task=self._task(),
                state_dir=state and state / "labels",
                privacy=self.privacy,
                secret=self.secret,
            )
        else:
            keys = self.rows.source.keys[rows]
            self.side = Scorer(
                self.name, keys, self.rows.source.key, self.mode, self.rows.model_dir,
                scores=self.scores_path,
            )  # fmt: skip
        self.side.run_id = self.run_id
        return reply

    def handle(self, msg: Message) -> Message:
        kind = type(msg).__name__
        if kind in ("Hello", "AlignDone"):
            return super().handle(msg)
        if self.task_name is None:
            return self.rows.handle(msg)
        if (kind in _LABEL_SIDE or kind in _BOTH_SIDES) and self.side is None:
            raise ProtocolError(f"domain {self.name!r} got {kind} before its keys were aligned")
        if kind in _LABEL_SIDE:
            return self.side.handle(msg)
        if kind == "SaveModel":
            reply = Ack() if self.label_only else self.rows.handle(msg)
            self._save_labels(msg)
            return reply
        if kind in _BOTH_SIDES:  # a label-only domain has no bottom model to keep
            parts = [self.side] if self.label_only else [self.rows, self.side]
            replies = [part.handle(msg) for part in parts]
            return Ack(info={k: v for r in replies for k, v in r.info.items()})
        return self.rows.handle(msg)

    def forget_run(self) -> None:
        self.rows.forget_run()
        if self.side is not None:
            self.side.forget_run()

    def _save_labels(self, msg: SaveModel) -> None:
        """What scoring needs on the label side: the task, class values, the threshold
        chosen on validation rows, and (label preserving) the head."""
        owner = self.side
        assert isinstance(owner, LabelOwner)
        folder = self.rows._folder()
        # label sharing: the coordinator held the head, so it says how scores read
        task = msg.meta.get("label_task") or owner.book.task.as_dict()
        threshold = msg.meta.get("threshold", owner.book.threshold_)
        label = {
            "task": task,
            "classes": [_jsonable(c) for c in self.labels.classes],
            "threshold": threshold,
            "mode": self.mode,
            "key": self.rows.source.key,
            "label_column": self.rows.source.label_name,
        }
        if owner.head_ is not None:
            label["head_in"] = owner.head_.head.in_features
            save_module(folder / "head.pt", owner.head_.head)
        atomic_write_json(folder / "labels.json", label)


def _jsonable(v):
    return v.item() if isinstance(v, np.generic) else v


@dataclasses.dataclass(frozen=True)
class MeshDomain:
    """Domain ``name`` of a mesh, its table read once: what its node serves, and the
    ``Domain`` made for each run (its Hello names the mode and the purpose)."""

    name: str
    table: DomainTable | FactTable
    serves: frozenset[str]
    make: Callable[[Hello], Domain]


def mesh_domain(
    spec: MeshSpec,
    name: str,
    *,
    identity: Identity | None,
    state_dir: Path | None = None,
    model_dir: Path | None = None,
    scores: Callable[[Hello], Path | None] | None = None,
    secret: bytes | None = None,
) -> MeshDomain:
    """Domain ``name`` of the mesh file, the same in process and on a node: it reads only
    its own block's source. ``identity`` signs its PSI messages (a node's own, or one of
    ``Identity.ephemeral`` for the domains of one process). ``model_dir``: where its
    trained parts go; ``scores``: where a scoring run of the label domain writes;
    ``secret``: keys the noise of its protections (derived from its own private key)."""
    if spec.task == "ranking":
        return _star_domain(spec, name, identity, state_dir, model_dir, secret)
    label = name == spec.label.domain
    table = spec.read_domain(name, predict=True)  # a scoring-only table may lack labels
    peers = Peers(spec.label.domain, tuple(spec.domain_names), identity) if identity else None
    product = spec.declared_product(name)  # its input contract is checked at every Hello
    serves = {proto.BOTTOM, proto.KEYS}
    if label:
        serves = {proto.KEYS, proto.LABELS} | (set() if spec.label_only else {proto.BOTTOM})

    def make(hello: Hello) -> Domain:
        return Domain.keyed(
            table,
            mode=hello.mode,
            task=spec.task if label else None,
            purpose=hello.purpose,
            peers=peers,
            state_dir=state_dir,
            model_dir=model_dir,
            product=product,
            scores=scores(hello) if (scores and label) else None,
            privacy=spec.privacy,
            secret=secret,
            mask_group=spec.embedding_domains,
        )

    return MeshDomain(name, table, frozenset(serves), make)


def _star_domain(
    spec: MeshSpec,
    name: str,
    identity: Identity | None,
    state_dir: Path | None,
    model_dir: Path | None,
    secret: bytes | None,
) -> MeshDomain:
    """A domain of a ranking mesh (split/star.py): the fact domain, or a dimension; it
    aligns keys with the fact domain under its identity."""
    fact, dims = spec.fact.domain, spec.dimensions
    if identity is None:
        raise ConfigError(f"domain {name!r} has no identity to align keys with (tls:)")
    if name == fact:
        table, peers = spec.read_fact(), star_peers(fact, list(dims), identity)

        def make_fact(hello: Hello) -> Domain:
            rows = FactDomain(table, hello.mode, dims, peers=peers, state_dir=state_dir)
            rows.noise = spec.privacy.gradients  # its head's gradients (label preserving)
            return Domain(
                rows, mode=hello.mode, purpose=hello.purpose, privacy=spec.privacy, secret=secret
            )

        return MeshDomain(name, table, frozenset({proto.KEYS, proto.LABELS, proto.FACT}), make_fact)
    table, peer = spec.read_dimension(name), star_peers(fact, [name], identity)[name]

    def make_dimension(hello: Hello) -> Domain:
        rows = DimensionDomain(
            table,
            dims[name],
            peers=peer,
            state_dir=state_dir,
            model_dir=model_dir and model_dir / hello.mode,  # one product per mode
        )
        return Domain(
            rows, mode=hello.mode, purpose=hello.purpose, privacy=spec.privacy, secret=secret
        )

    return MeshDomain(name, table, frozenset({proto.KEYS, proto.ENTITY}), make_dimension)
