"""The step protocol's messages. A message type that could carry raw rows does not exist.

Every message is a frozen dataclass whose fields are JSON scalars (and lists / dicts of
them) or numpy arrays. Arrays travel as raw bytes with dtype and shape; everything else in
a small JSON header. ``encode`` / ``decode`` are the only way a message crosses a boundary.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar

import numpy as np

from splitmesh.errors import ProtocolError
from splitmesh.transport.codec import (
    decode_frame,
    encode_frame,
    from_envelope,
    to_envelope,
)

_REGISTRY: dict[str, type[Message]] = {}


@dataclasses.dataclass(frozen=True)
class Message:
    """Base of all protocol messages."""

    _tensor_fields: ClassVar[tuple[str, ...]] = ()
    _field_types: ClassVar[dict[str, tuple[type, ...]]] = {}


def message(cls: type) -> type:
    """Register a message dataclass; fields annotated ``np.ndarray`` travel as tensors."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    hints = typing.get_type_hints(cls)

    def is_tensor(hint: Any) -> bool:
        if hint is np.ndarray:
            return True
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            return np.ndarray in typing.get_args(hint)
        return False

    cls._tensor_fields = tuple(f.name for f in dataclasses.fields(cls) if is_tensor(hints[f.name]))
    cls._field_types = {f.name: _accepted(hints[f.name]) for f in dataclasses.fields(cls)}
    _REGISTRY[cls.__name__] = cls
    return cls


def _accepted(hint: Any) -> tuple[type, ...]:
    """The Python types a field may hold once decoded (what a hostile sender is held to)."""
    args = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    out: list[type] = []
    for a in args:
        a = typing.get_origin(a) or a
        out += [int, float] if a is float else [a]  # JSON writes 1.0 as 1
    return tuple(type(None) if a is None else a for a in out)


def _check_types(cls: type[Message], values: dict[str, Any]) -> None:
    for name, value in values.items():
        accepted = cls._field_types.get(name, ())
        ok = isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted)
        if not ok:
            want = " or ".join(sorted({t.__name__ for t in accepted}))
            raise ProtocolError(
                f"malformed {cls.__name__}: field {name!r} must be {want}, got "
                f"{type(value).__name__}"
            )


def to_parts(msg: Message) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A message as (type name, scalar header, tensors): what every wire format carries."""
    header: dict[str, Any] = {}
    tensors: dict[str, Any] = {}
    for name in msg._field_types:  # in declaration order
        value = getattr(msg, name)
        if value is not None and name in msg._tensor_fields:
            tensors[name] = value
        else:
            header[name] = value
    return type(msg).__name__, header, tensors


def from_parts(type_name: str, header: dict[str, Any], tensors: dict[str, np.ndarray]) -> Message:
    """The inverse of :func:`to_parts`; unknown types and fields are protocol errors."""
    cls = _REGISTRY.get(type_name)
    if cls is None:
        raise ProtocolError(f"unknown message type {type_name[:64]!r}")
    if not isinstance(header, dict):
        raise ProtocolError(f"malformed {type_name}: its header is not a JSON object")
    unknown = [k for k in (*header, *tensors) if k not in cls._field_types]
    if unknown:
        raise ProtocolError(f"malformed {type_name}: unknown field {str(unknown[0])[:64]!r}")
    misplaced = [k for k in header if k in cls._tensor_fields and header[k] is not None]
    misplaced += [k for k in tensors if k not in cls._tensor_fields]
    if misplaced:
        raise ProtocolError(f"malformed {type_name}: field {misplaced[0]!r} in the wrong part")
    _check_types(cls, {**header, **tensors})
    try:
        return cls(**header, **tensors)
    except TypeError as exc:
        raise ProtocolError(f"malformed {type_name}: {exc}") from exc


def encode(msg: Message) -> bytes:
    """Message -> bytes."""
    return encode_frame(*to_parts(msg))


def decode(data: bytes, check=None) -> Message:
    """Bytes -> message; ``check`` sees each tensor's shape before it is allocated."""
    return from_parts(*decode_frame(data, check))


def envelope(msg: Message):
    """Message -> the protobuf envelope gRPC carries (the same bytes as ``encode``)."""
    return to_envelope(*to_parts(msg))


def open_envelope(env, check=None) -> Message:
    """A protobuf envelope -> message; ``check`` as for ``decode``."""
    return from_parts(*from_envelope(env, check))


# --- replies shared by every party -------------------------------------------------------


@message
class Ack(Message):
    """Generic success reply, with optional metadata (counts, shapes; never rows)."""

    info: dict = dataclasses.field(default_factory=dict)


@message
class ErrorReply(Message):
    """A party could not serve a request; travels back instead of the reply."""

    kind: str
    detail: str


@message
class Hello(Message):
    """Opens a run: the node starts a fresh party for ``mode`` and says who it is.

    ``run`` is a fresh run id (32 hex digits) for a new run; with ``resume`` it names the
    interrupted run to reopen. The training plan (batch sizes, epochs) is what the node's
    own policy and limits judge before anything else is served.

    The reply's ``info`` holds the node's name, role and data fingerprint (row count,
    columns, content hash; never values), which a resumed run checks against its manifest.
    """

    run: str
    mode: str
    purpose: str = "train"  # or "predict": score new rows with a saved model
    resume: bool = False
    batch_size: int = 256  # training batches: at most batch_size + min_batch - 1 rows
    min_batch: int = 1  # the coordinator merges a smaller last batch into the one before
    eval_batch: int = 4096  # evaluation and scoring batches: at most this many rows
    epochs: int = 1


@message
class Bye(Message):
    """Closes the run: the node serves a new one from now on. ``done``: the run finished,
    so the node deletes the checkpoints it wrote for it (a run that did not finish keeps
    them, for --resume)."""

    done: bool = False


@message
class Checkpoint(Message):
    """Write model and optimizer state (and snapshots) to the party's own disk for ``epoch``.

    ``keep``: older epochs of this run to keep; the party deletes its other checkpoints of
    this run (and only those: files it wrote itself, under its own run folder).
    """

    epoch: int
    keep: list = dataclasses.field(default_factory=list)


@message
class LoadCheckpoint(Message):
    """Reload the state written for ``epoch``, refusing if the party's data has changed."""

    epoch: int


# --- domain party ------------------------------------------------------------------------


@message
class SetupDomain(Message):
    """Assign partitions (aligned positions) and the bottom model's settings."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    model: dict  # hidden sizes, activation, dropout
    optim: dict  # name, lr, weight_decay
    seed: int
    wire_dtype: str = "float32"


@message
class PartialDistances(Message):
    """Ask for squared Euclidean distances between rows, over this domain's columns only."""

    partition: str
    positions: np.ndarray


@message
class Distances(Message):
    values: np.ndarray


@message
class Augment(Message):
    """SMOTE plan from shared (row, neighbour, gap) choices, then the resampled row order.

    Synthetic row s = x[base[rows[s]]] + gaps[s] * (x[base[neighbours[s]]] - x[base[rows[s]]]),
    computed by each domain on its own columns; then the partition becomes
    concat(original rows, synthetic rows)[order].
    """

    partition: str
    base: np.ndarray
    rows: np.ndarray
    neighbours: np.ndarray
    gaps: np.ndarray
    order: np.ndarray
    notes: list = dataclasses.field(default_factory=list)  # why a step did not apply


@message
class Forward(Message):
    """Run the bottom model on these rows of a partition.

    ``grad`` may carry the gradient for the previous training step (``grad_step``): the
    domain applies it before this forward, exactly as a separate Backward would, with
    half the messages.
    """

    partition: str
    positions: np.ndarray
    step: int
    train: bool
    grad: np.ndarray | None = None
    grad_step: int = -1


@message
class Embedding(Message):
    step: int
    values: np.ndarray


@message
class Backward(Message):
    """Gradient of the loss with respect to the embedding sent for ``step``."""

    step: int
    grad: np.ndarray


@message
class Snapshot(Message):
    """Keep a copy of the party's model and optimizer state under ``tag`` (e.g. best epoch)."""

    tag: str


@message
class Restore(Message):
    """Return the party's model and optimizer to the state kept under ``tag``."""

    tag: str


# --- label owner -------------------------------------------------------------------------


@message
class PlanSplit(Message):
    """Ask the label owner for a stratified train / validation / test split."""

    test: float
    validation: float
    seed: int


@message
class SplitPlan(Message):
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@message
class PlanResample(Message):
    """Step 1 of cross-boundary resampling: which rows need pairwise distances?"""

    smote_ratio: float | None
    under_ratio: float | None
    k_neighbors: int
    seed: int


@message
class ResampleNeeds(Message):
    positions: np.ndarray  # training positions whose pairwise distances are needed
    notes: list  # human-readable reasons when a step does not apply


@message
class FinishResample(Message):
    """Step 2: summed distances between the rows named in ResampleNeeds."""

    distances: np.ndarray


@message
class SetupHead(Message):
    """Label-preserving mode: the label owner builds the head (last layer) and loss."""

    in_features: int
    optim: dict
    seed: int
    wire_dtype: str = "float32"
    pos_weight: float | None = None
    task: str = "binary"  # checked against the labels the owner holds


@message
class GetLabels(Message):
    """Label-sharing mode only: the coordinator asks for a partition's labels."""

    partition: str


@message
class Labels(Message):
    values: np.ndarray


@message
class Head(Message):
    """Top-model output for a batch; the label owner runs the head and (in training) the loss.

    Evaluation passes number their steps from 0; step 0 starts a new pass over the partition.
    """

    partition: str
    positions: np.ndarray
    step: int
    train: bool
    activations: np.ndarray


@message
class HeadReply(Message):
    loss: float
    grad: np.ndarray | None = None


@message
class Evaluate(Message):
    """Compute metrics from the scores the head produced for ``partitions``."""

    select_on: str
    partitions: list


@message
class Metrics(Message):
    values: dict


# --- recommender (a star: the interactions owner plans, dimension domains follow) ------------


@message
class SetupRanking(Message):
    """To the interactions owner: split leave-latest-out, build the id embeddings."""

    holdout: int
    negatives: int  # training negatives per positive, fresh every epoch
    eval_negatives: int | None  # sampled competitors per user; None: full ranking
    ks: list
    model: dict  # a mesh file's model: block (config.Model)
    optim: dict
    seed: int
    wire_dtype: str = "float32"
    part_examples: int = 1 << 23  # examples planned at once (config.Ranking)
    eval_users: int | None = None  # users ranked per pass (None: all)


@message
class SetupEntity(Message):
    """To a dimension domain: build the bottom model over its own features."""

    model: dict
    optim: dict
    seed: int
    wire_dtype: str = "float32"


@message
class PlanEpoch(Message):
    """Ask the interactions owner for an epoch's examples (fresh negatives).

    ``peers``: dimension domain -> [side ("users" or "items"), sealing public key]. The
    reply seals, for each, which of its rows every example uses.
    """

    epoch: int
    peers: dict
    part: int = 0  # an epoch is planned a part at a time (Ranking.part_examples)


@message
class PlanRanking(Message):
    """Ask the interactions owner to plan a ranking pass over ``partition``."""

    partition: str
    peers: dict


@message
class Plans(Message):
    """A plan for the coordinator: example (or user-slot) count, ranking candidates as item
    slots (no item ids), and one sealed row list per dimension domain, concatenated."""

    examples: int
    item_slots: int
    recipients: list
    sizes: list
    sealed: np.ndarray  # uint8
    candidates: np.ndarray | None = None  # (user slots, C) int32; None: every item slot


@message
class AssignRows(Message):
    """Relayed to a dimension domain: its sealed rows for ``partition`` (``train``: one per
    example of the epoch; ``val`` / ``test``: one per slot of the ranking pass)."""

    partition: str
    context: str
    sender: str
    sender_key: str
    sealed: np.ndarray


@message
class EmbedSlots(Message):
    """Ranking: embed each slot of the pass once (evaluation mode)."""

    partition: str


@message
class SlotEmbeddings(Message):
    users: np.ndarray | None = None
    items: np.ndarray | None = None


@message
class Scores(Message):
    """Label sharing: the coordinator's scores (logits) for user-slot ``rows`` x candidates."""

    partition: str
    rows: np.ndarray
    values: np.ndarray


# --- key alignment (private set intersection) ----------------------------------------------


@message
class PsiRequest(Message):
    """Your blinded keys for ``peer``: the label domain's current candidates, or, from any
    other domain, its whole set in an order it shuffled (data/alignment.py)."""

    peer: str


@message
class PsiBlob(Message):
    """A party's blinded keys, signed by it: the relay can pass them on, never forge or
    redirect them (``claim`` names run, sender, receiver, set size and the points' hash)."""

    points: np.ndarray  # uint8 (size, 32): X25519 points, one per key, blinded (no keys)
    size: int  # the set's size (what the peer learns anyway)
    claim: str  # JSON, signed
    cert: str  # the signer's certificate (PEM), from the mesh CA
    signature: np.ndarray  # uint8


@message
class PsiServe(Message):
    """As PSI server: raise the label domain's signed blinded candidates (a PsiBlob's
    fields, relayed unchanged) to your own secret."""

    points: np.ndarray
    size: int
    claim: str
    cert: str
    signature: np.ndarray


@message
class PsiReply(Message):
    """The client's points raised by the server, signed by the server for the client."""

    points: np.ndarray
    claim: str
    cert: str
    signature: np.ndarray


@message
class PsiTake(Message):
    """As PSI client: raise a peer's signed blinded set (a PsiBlob's fields, relayed
    unchanged) to your own secret and keep it; nothing of it is sent back."""

    points: np.ndarray
    size: int
    claim: str
    cert: str
    signature: np.ndarray


@message
class PsiFinish(Message):
    """As PSI client: keep the candidates the server also holds (reply: how many); the
    PsiReply's fields, relayed unchanged."""

    points: np.ndarray
    claim: str
    cert: str
    signature: np.ndarray


@message
class PsiMatches(Message):
    """As the label domain, once every intersection is done: where the keys every domain
    holds sit in ``peer``'s shuffled set, signed for it."""

    peer: str


@message
class PsiRows(Message):
    """Positions in the receiver's shuffled set, signed by the label domain."""

    positions: np.ndarray  # int64
    claim: str
    cert: str
    signature: np.ndarray


@message
class PsiApply(Message):
    """Keep the rows at these positions of your shuffled set (reply: how many); the
    PsiRows' fields, relayed unchanged."""

    positions: np.ndarray
    claim: str
    cert: str
    signature: np.ndarray


@message
class AlignDone(Message):
    """Alignment is over: order the intersected rows by key (reply: how many)."""


@message
class MaskPeers(Message):
    """Secure aggregation: every summed domain's signed public mask key for this run, as
    JSON by domain (each ``{"claim", "cert", "signature"}`` from its Hello reply)."""

    keys: str


# --- trained models on each party's own disk, and prediction ---------------------------------


@message
class SaveModel(Message):
    """Write your part of the trained model (and its preparation) under your model folder."""

    meta: dict = dataclasses.field(default_factory=dict)  # run facts for the model card


@message
class LoadModel(Message):
    """Load your part of a trained model and prepare every aligned row for scoring."""


@message
class WriteScores(Message):
    """To the label owner: write the scored rows, keyed by its own key, to its own output
    file (the reply names it)."""

    partition: str
