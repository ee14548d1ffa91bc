"""The protocol as a state machine, in one table: every message a node serves, which party
serves it, in which phase of a run, what it replies, and the shape of every tensor in it.

A node (split/node.py) refuses a message its parties do not serve, or one that comes out
of phase, naming the phase it is in and the phases that message belongs to. A run goes

    closed --Hello--> align (parties that align keys by PSI) or setup
    align --AlignDone--> setup
    setup --(first training or scoring message)--> train | score
    any --Bye--> closed

Every message is sent by the coordinator (the only sender; parties answer, and never
call each other) and handled by the party methods registered for it (``@handles`` in
split/party.py). What a party serves is named by its capabilities: ``bottom`` (a domain's
bottom model), ``keys`` (key alignment by PSI), ``labels`` (the label owner's side),
``fact`` (a star mesh's fact domain, which plans the examples) and ``entity`` (a
dimension domain of a star). No message hands out model weights, raw values or keys.
"""

from __future__ import annotations

import dataclasses

from splitmesh.transport import messages as m

CLOSED, ALIGN, SETUP, TRAIN, SCORE = "closed", "align", "setup", "train", "score"
PHASES = (CLOSED, ALIGN, SETUP, TRAIN, SCORE)

BOTTOM, KEYS, LABELS, FACT, ENTITY = "bottom", "keys", "labels", "fact", "entity"
SPLIT_MODES = ("label-sharing", "label-preserving")
MODELS = frozenset({BOTTOM, LABELS, FACT, ENTITY})  # parties that hold a model
EMBEDS = frozenset({BOTTOM, FACT, ENTITY})  # parties that embed rows


@dataclasses.dataclass(frozen=True)
class Rule:
    """How a node serves one message type.

    ``served_by``: capabilities, any of which serves it. ``train`` / ``predict``: the phase
    transitions (from -> to) it makes in a training run and in a scoring run; a phase that
    is not a key refuses it. ``tensors``: each tensor field's dimensions, by name of the
    bound the node holds for the run (split/node.py, ``Limits``).
    """

    reply: type[m.Message]
    served_by: frozenset[str]
    train: dict[str, str]
    predict: dict[str, str] = dataclasses.field(default_factory=dict)
    tensors: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def phases(self, purpose: str) -> dict[str, str]:
        return self.train if purpose == "train" else self.predict


def _stay(*phases: str) -> dict[str, str]:
    return {p: p for p in phases}


def _enter(to: str) -> dict[str, str]:
    """Accepted in setup (which it ends) and in ``to``."""
    return {SETUP: to, to: to}


_ANY = frozenset({BOTTOM, KEYS, LABELS, FACT, ENTITY})
_PSI_SET = {"points": ("keys", "point"), "signature": ("signature",)}
_PSI_ROWS = {"positions": ("keys",), "signature": ("signature",)}

TABLE: dict[type[m.Message], Rule] = {
    # a run: opened by Hello (see split/node.py for its checks), closed by Bye
    m.Hello: Rule(m.Ack, _ANY, {CLOSED: SETUP}, {CLOSED: SETUP}),
    m.Bye: Rule(m.Ack, _ANY, {p: CLOSED for p in PHASES}, {p: CLOSED for p in PHASES}),
    # key alignment: signed PSI between domains, relayed by the coordinator
    m.PsiRequest: Rule(m.PsiBlob, frozenset({KEYS}), _stay(ALIGN), _stay(ALIGN)),
    m.PsiServe: Rule(m.PsiReply, frozenset({KEYS}), _stay(ALIGN), _stay(ALIGN), _PSI_SET),
    m.PsiTake: Rule(m.Ack, frozenset({KEYS}), _stay(ALIGN), _stay(ALIGN), _PSI_SET),
    m.PsiFinish: Rule(m.Ack, frozenset({KEYS}), _stay(ALIGN), _stay(ALIGN), _PSI_SET),
    m.PsiMatches: Rule(m.PsiRows, frozenset({KEYS}), _stay(ALIGN), _stay(ALIGN)),
    m.PsiApply: Rule(m.Ack, frozenset({KEYS}), _stay(ALIGN), _stay(ALIGN), _PSI_ROWS),
    m.AlignDone: Rule(m.Ack, frozenset({KEYS}), {ALIGN: SETUP}, {ALIGN: SETUP}),
    # secure aggregation: the domains' signed mask keys, relayed once they are aligned
    m.MaskPeers: Rule(m.Ack, frozenset({BOTTOM}), _stay(SETUP), _stay(SETUP)),
    # setup: split, feature preparation, resampling across the boundary, the head
    m.PlanSplit: Rule(m.SplitPlan, frozenset({LABELS}), _stay(SETUP)),
    m.SetupDomain: Rule(
        m.Ack,
        frozenset({BOTTOM}),
        _stay(SETUP),
        tensors={"train": ("rows",), "val": ("rows",), "test": ("rows",)},
    ),
    m.PlanResample: Rule(m.ResampleNeeds, frozenset({LABELS}), _stay(SETUP)),
    m.PartialDistances: Rule(
        m.Distances, frozenset({BOTTOM}), _stay(SETUP), tensors={"positions": ("pairs",)}
    ),
    m.FinishResample: Rule(
        m.Augment, frozenset({LABELS}), _stay(SETUP), tensors={"distances": ("pairs", "pairs")}
    ),
    m.Augment: Rule(
        m.Ack,
        frozenset({BOTTOM}),
        _stay(SETUP),
        tensors={
            "base": ("rows",),
            "rows": ("rows",),
            "neighbours": ("rows",),
            "gaps": ("rows",),
            "order": ("rows2",),
        },
    ),
    # labels handed over for training end the holder's setup (a label-only domain that
    # shares its labels gets no other training message, yet saves its part afterwards)
    m.GetLabels: Rule(m.Labels, frozenset({LABELS}), _enter(TRAIN)),
    m.SetupHead: Rule(m.Ack, frozenset({LABELS}), _stay(SETUP)),
    m.SetupRanking: Rule(m.Ack, frozenset({FACT}), _stay(SETUP)),
    m.SetupEntity: Rule(m.Ack, frozenset({ENTITY}), _stay(SETUP)),
    # training: steps, evaluation, snapshots and checkpoints
    m.Forward: Rule(
        m.Embedding,
        EMBEDS,
        _enter(TRAIN),
        _enter(SCORE),
        {"positions": ("batch",), "grad": ("batch", "cut")},
    ),
    m.Backward: Rule(m.Ack, EMBEDS, _stay(TRAIN), tensors={"grad": ("batch", "cut")}),
    m.Head: Rule(
        m.HeadReply,
        frozenset({LABELS}),
        _enter(TRAIN),
        _enter(SCORE),
        {"positions": ("batch",), "activations": ("batch", "act")},
    ),
    m.Evaluate: Rule(m.Metrics, frozenset({LABELS}), _enter(TRAIN)),
    m.Snapshot: Rule(m.Ack, MODELS, _enter(TRAIN)),
    m.Restore: Rule(m.Ack, MODELS, _stay(TRAIN)),
    m.Checkpoint: Rule(m.Ack, MODELS, _enter(TRAIN)),
    m.LoadCheckpoint: Rule(m.Ack, MODELS, _enter(TRAIN)),
    # each saves its part: a bottom, or the label side (task, threshold, head)
    m.SaveModel: Rule(m.Ack, frozenset({BOTTOM, ENTITY, LABELS}), _stay(TRAIN)),
    # the recommender's star: plans sealed for each dimension domain, ranking passes
    m.PlanEpoch: Rule(m.Plans, frozenset({FACT}), _enter(TRAIN)),
    m.PlanRanking: Rule(m.Plans, frozenset({FACT}), _enter(TRAIN)),
    m.AssignRows: Rule(m.Ack, frozenset({ENTITY}), _enter(TRAIN), tensors={"sealed": ("bytes",)}),
    m.EmbedSlots: Rule(m.SlotEmbeddings, frozenset({FACT, ENTITY}), _enter(TRAIN)),
    m.Scores: Rule(
        m.Ack,
        frozenset({LABELS}),
        _enter(TRAIN),
        _enter(SCORE),
        {"rows": ("batch",), "values": ("batch", "any")},
    ),
    # scoring new rows with a saved model
    m.LoadModel: Rule(m.Ack, frozenset({BOTTOM, LABELS}), {}, _stay(SETUP)),
    m.WriteScores: Rule(m.Ack, frozenset({LABELS}), {}, _stay(SCORE)),
}

# What each tensor field must hold: row positions are integers, bytes are bytes, the rest
# (embeddings, gradients, activations, distances, scores) floating point or int8 (scaled).
TENSOR_KINDS = {
    **dict.fromkeys(
        ("positions", "train", "val", "test", "base", "rows", "neighbours", "order"), "iu"
    ),
    **dict.fromkeys(("points", "signature", "sealed"), "u"),
    **dict.fromkeys(("grad", "activations", "gaps", "distances", "values"), "fi"),  # int8: scaled
}

REPLIES = frozenset(rule.reply for rule in TABLE.values()) | {m.ErrorReply}


def rule_for(msg: m.Message) -> Rule | None:
    return TABLE.get(type(msg))


def expected_phases(rule: Rule, purpose: str) -> list[str]:
    return [p for p in PHASES if p in rule.phases(purpose)]
