"""What the coordinator does with what parties send: check a reply's type and the shape
of the tensors it reads, relay signed PSI messages it can neither read nor forge."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from splitmesh.errors import PartyError, ProtocolError
from splitmesh.transport.base import Transport
from splitmesh.transport.messages import (
    Ack,
    PsiApply,
    PsiBlob,
    PsiFinish,
    PsiMatches,
    PsiReply,
    PsiRequest,
    PsiRows,
    PsiServe,
    PsiTake,
)

R = TypeVar("R")


def expect(reply: object, cls: type[R], party: str) -> R:
    """``reply`` if it is a ``cls``; a ProtocolError naming the party otherwise."""
    if not isinstance(reply, cls):
        raise ProtocolError(f"{party!r} answered {type(reply).__name__}, expected {cls.__name__}")
    return reply


def refused(party: str, call: str, why: str) -> PartyError:
    """A reply the coordinator will not read: a protocol error of the party that sent it."""
    return PartyError(party, call, why, kind=ProtocolError.__name__)


def expect_matrix(
    values: object, party: str, call: str, rows: int, width: int | None
) -> np.ndarray:
    """A float matrix a party sent (embeddings, a gradient): refused, naming the party and
    the call, unless it is ``rows`` x ``width`` (any width when None) and finite. A wrong
    shape would fail deep inside the top model; a NaN would spread to every weight."""
    if not (
        isinstance(values, np.ndarray)
        and values.dtype.kind == "f"
        and values.ndim == 2
        and values.shape[0] == rows
        and (width is None or values.shape[1] == width)
    ):
        got = (
            f"{values.dtype} array of shape {values.shape}"
            if isinstance(values, np.ndarray)
            else type(values).__name__
        )
        want = f"({rows}, {'any' if width is None else width})"
        raise refused(party, call, f"sent a {got} where the run reads floats of shape {want}")
    if not np.isfinite(values).all():
        raise refused(party, call, "sent values that are not finite (NaN or infinity)")
    return values


def expect_metrics(values: object, party: str, partitions: list[str]) -> dict:
    """Metrics a party computed, refused naming it unless they are a mapping from each
    partition asked about to its own mapping of named figures."""
    if not isinstance(values, dict) or not all(
        isinstance(values.get(p), dict) and all(isinstance(k, str) for k in values[p])
        for p in partitions
    ):
        got = sorted(map(str, values))[:8] if isinstance(values, dict) else type(values).__name__
        why = f"sent metrics for {got}, not named figures for {partitions}"
        raise refused(party, "Evaluate", why)
    return {p: values[p] for p in partitions}


def relayed(cls: type, msg: PsiBlob | PsiReply | PsiRows):
    """Pass a signed PSI message on unchanged: the relay can neither read nor forge it."""
    if isinstance(msg, PsiBlob):
        return cls(msg.points, msg.size, msg.claim, msg.cert, msg.signature)
    if isinstance(msg, PsiRows):
        return cls(msg.positions, msg.claim, msg.cert, msg.signature)
    return cls(msg.points, msg.claim, msg.cert, msg.signature)


def relay_alignment(
    t: Transport, label: str, others: list[str], step: Callable[[str], None] | None = None
) -> list[dict]:
    """Relay the signed PSI of data/alignment.py: ``label`` intersects with each of
    ``others`` in turn, then names each one's common keys. Both sides of a pair compute at
    the same time. Returns, per peer, how many of the label domain's keys were left after
    it; ``step(what)`` is told each step as it starts."""
    step = step or (lambda what: None)
    if not others:
        return []
    step(f"blinding keys ({label}, {', '.join(others)})")
    asks = {label: PsiRequest(others[0]), **{d: PsiRequest(label) for d in others}}
    sets = {p: expect(r, PsiBlob, p) for p, r in t.request_many(asks).items()}
    steps = []
    for i, d in enumerate(others):
        mine = sets[label] if i == 0 else expect(t.request(label, PsiRequest(d)), PsiBlob, label)
        step(f"intersecting {label} ({mine.size} keys) with {d} ({sets[d].size})")
        both = t.request_many({d: relayed(PsiServe, mine), label: relayed(PsiTake, sets[d])})
        expect(both[label], Ack, label)
        reply = expect(both[d], PsiReply, d)
        left = expect(t.request(label, relayed(PsiFinish, reply)), Ack, label).info["size"]
        steps.append({"with": d, "left": left})
    step("sharing the common keys")
    rows = {d: expect(t.request(label, PsiMatches(d)), PsiRows, label) for d in others}
    got = t.request_many({d: relayed(PsiApply, rows[d]) for d in others})
    common = steps[-1]["left"]
    for d, r in got.items():
        size = expect(r, Ack, d).info["size"]
        if size != common:
            raise ProtocolError(f"domain {d!r} found {size} common keys, {label!r} {common}")
    return steps
