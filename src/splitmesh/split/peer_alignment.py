"""Key alignment between domains that the coordinator relays but cannot drive.

Alignment runs in protocol order (data/alignment.py), each step once per run, between
domains only: the label domain intersects with every other domain in turn, as PSI client,
then tells each which of its shuffled keys every domain holds. Every set, reply and list of
positions is signed by the domain that made it and names the run, its sender and receiver,
its size and the hash of what it carries, so the relay can neither forge one (to learn a
domain's keys), redirect one, nor replay one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from splitmesh.data.alignment import KeyAligner
from splitmesh.errors import ProtocolError
from splitmesh.split.party import handles
from splitmesh.transport.identity import Identity, Signed
from splitmesh.transport.messages import (
    Ack,
    AlignDone,
    Hello,
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

Relayed = PsiServe | PsiTake | PsiFinish | PsiApply


@dataclasses.dataclass(frozen=True)
class Peers:
    """Who aligns keys with whom: the label domain, every domain of the mesh (from the
    party's own copy of the mesh file), and this party's own identity, which signs its PSI
    messages and checks its peers' against the mesh CA."""

    label: str
    domains: tuple[str, ...]
    identity: Identity

    @classmethod
    def in_process(cls, label: str, domains: list[str]) -> dict[str, Peers]:
        """Every domain's peers for parties of one process, each with a throwaway identity
        from one throwaway CA: they sign and check exactly as nodes do."""
        ids = Identity.ephemeral(list(domains))
        return {d: cls(label, tuple(domains), ids[d]) for d in domains}

    @property
    def others(self) -> list[str]:
        return [d for d in self.domains if d != self.label]


def _sha256(*parts: np.ndarray) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()


def claimed_sender(msg: Relayed, who: str) -> str:
    """The sender a signed PSI message names (checked against its signature later)."""
    try:
        sender = json.loads(msg.claim).get("from")
    except (ValueError, AttributeError):
        sender = None
    if not isinstance(sender, str):
        raise ProtocolError(f"domain {who!r}: a signed PSI message that names no sender is refused")
    return sender


def _signed(msg: Relayed) -> Signed:
    return Signed(msg.claim, msg.cert, np.ascontiguousarray(msg.signature, np.uint8).tobytes())


class SignedAlignment:
    """One domain's side of a run's alignment: its keys, what it has offered, raised and
    applied, and the checks that hold every step to the protocol."""

    def __init__(self, name: str, keys: list[str], peers: Peers | None) -> None:
        self.name, self.peers = name, peers
        self.aligner = KeyAligner(keys)
        self.run: str | None = None  # set at Hello
        self.asked: dict | None = None  # the label domain's open offer: {"to", "sha256", ...}
        self._offered: dict[str, str] = {}  # peer -> hash of the set offered to it
        self._taken: dict[str, np.ndarray] = {}  # peer -> its set raised to this secret
        self._their_set: dict[str, str] = {}  # peer -> hash of the set it offered
        self._where: dict[str, np.ndarray] = {}  # peer -> own row's position in its set
        self._finished: set[str] = set()  # peers whose reply this party has applied
        self._served: set[str] = set()  # peers this party has raised a set for
        self._shared: set[str] = set()  # peers given their positions (label domain)
        self._applied = False  # positions applied (any other domain)

    @property
    def who(self) -> str:
        return f"domain {self.name!r}"

    def _peers(self) -> Peers:
        if self.peers is None:
            raise ProtocolError(
                f"{self.who} has no identity to align keys with",
                hint="give the node its certificate (tls) or an identity",
            )
        return self.peers

    @property
    def _is_label(self) -> bool:
        return self.name == self._peers().label

    def _sign(self, claim: dict) -> tuple[str, str, np.ndarray]:
        signed = self._peers().identity.sign({**claim, "run": self.run, "from": self.name})
        return signed.claim, signed.cert, np.frombuffer(signed.signature, np.uint8)

    def _check(self, msg: Relayed, kind: str, sender: str) -> dict:
        """The claim of a signed message from ``sender`` to this party, in this run."""
        claim = self._peers().identity.verify(_signed(msg), sender=sender, what=f"a {kind}")
        expect = {"kind": kind, "run": self.run, "to": self.name, "from": sender}
        wrong = [k for k, v in expect.items() if claim.get(k) != v]
        if wrong:
            raise ProtocolError(
                f"{self.who}: a {kind} whose {wrong[0]!r} is "
                f"{str(claim.get(wrong[0]))[:40]!r}, not {str(expect[wrong[0]])[:40]!r}"
            )
        return claim

    def _check_set(self, msg: PsiServe | PsiTake, sender: str) -> dict:
        """A peer's signed blinded set: its hash, and its size as signed and as sent."""
        claim = self._check(msg, "psi-set", sender)
        if claim.get("sha256") != _sha256(msg.points):
            raise ProtocolError(f"{self.who}: the PSI set from {sender!r} is not the one signed")
        if not claim.get("size") == msg.size == len(msg.points):
            raise ProtocolError(
                f"{self.who}: a PSI set of {len(msg.points)} keys from {sender!r}, which "
                f"declared {claim.get('size')}: refused"
            )
        return claim

    # -- the order of the protocol ---------------------------------------------------------
    def _may_offer(self, peer: str) -> None:
        p = self._peers()
        if self._is_label:
            if self.asked is not None:
                raise ProtocolError(
                    f"{self.who} has a PSI set offered to {self.asked['to']!r} still open"
                )
            if peer not in p.others or peer in self._finished:
                raise ProtocolError(
                    f"{self.who} intersects once with each other domain; not with {peer!r} now"
                )
        elif peer != p.label or self._offered:
            raise ProtocolError(
                f"{self.who} offers its keys once, to the label domain {p.label!r}; "
                f"not to {peer!r} now"
            )

    def _label_only(self, what: str) -> None:
        if not self._is_label:
            raise ProtocolError(f"{self.who}: only the label domain {what}")

    def _from_label(self, sender: str, what: str) -> None:
        """``what``: e.g. "serves PSI only for" (the label domain, not ``sender``)."""
        p = self._peers()
        if self._is_label or sender != p.label:
            raise ProtocolError(
                f"{self.who} {what} the label domain {p.label!r}, not {str(sender)[:40]!r}"
            )

    # -- the steps ----------------------------------------------------------------------------
    def request(self, peer: str) -> PsiBlob:
        """Own blinded keys for ``peer``, signed: the label domain's current candidates, or
        another domain's whole set, shuffled."""
        self._may_offer(peer)
        if self._is_label:
            rows, points = self.aligner.offer()
        else:
            rows, points = None, self.aligner.shuffled()
        digest = _sha256(points)
        claim = {"kind": "psi-set", "to": peer, "size": len(points), "sha256": digest}
        signed = self._sign(claim)
        self._offered[peer] = digest
        if rows is not None:
            self.asked = {"to": peer, "sha256": digest, "rows": rows}
        return PsiBlob(points, len(points), *signed)

    def serve(self, msg: PsiServe) -> PsiReply:
        """As PSI server: raise the label domain's signed candidates, once per run."""
        sender = claimed_sender(msg, self.name)
        self._check_set(msg, sender)
        self._from_label(sender, "serves PSI only for")
        if sender in self._served:
            raise ProtocolError(
                f"{self.who} has already served {sender!r} in this run: PSI is served once"
            )
        raised = self.aligner.blind(msg.points, f" from {sender!r}")
        self._served.add(sender)
        reply = {"kind": "psi-reply", "to": sender, "request": _sha256(msg.points)}
        return PsiReply(raised, *self._sign({**reply, "sha256": _sha256(raised)}))

    def take(self, msg: PsiTake) -> int:
        """As PSI client: raise the signed set of the peer it has offered its candidates to."""
        self._label_only("takes a peer's PSI set")
        asked = self.asked
        if asked is None or asked["to"] in self._taken:
            raise ProtocolError(f"{self.who} takes a PSI set only from the peer it has asked")
        claim = self._check_set(msg, asked["to"])
        self._their_set[asked["to"]] = claim["sha256"]
        self._taken[asked["to"]] = self.aligner.blind(msg.points, f" from {asked['to']!r}")
        return len(msg.points)

    def finish(self, msg: PsiFinish) -> int:
        """As PSI client: keep the candidates the peer it asked also holds; how many remain."""
        self._label_only("finishes an intersection")
        asked = self.asked
        if asked is None:
            raise ProtocolError(f"{self.who} got a PSI reply but has no request open")
        peer = asked["to"]
        claim = self._check(msg, "psi-reply", peer)
        if claim.get("request") != asked["sha256"]:
            raise ProtocolError(f"{self.who}: the PSI reply answers another request")
        if claim.get("sha256") != _sha256(msg.points):
            raise ProtocolError(f"{self.who}: the PSI reply is not the one signed")
        if len(msg.points) != len(asked["rows"]):
            raise ProtocolError(
                f"{self.who}: a PSI reply of {len(msg.points)} points for "
                f"{len(asked['rows'])} keys asked"
            )
        if peer not in self._taken:
            raise ProtocolError(f"{self.who} finishes with {peer!r} only after taking its set")
        self._where[peer] = self.aligner.intersect(asked["rows"], msg.points, self._taken.pop(peer))
        self.asked = None
        self._finished.add(peer)
        return len(self.aligner.candidates)

    def matches(self, peer: str) -> PsiRows:
        """As the label domain, once every intersection is done: where the keys every
        domain holds sit in ``peer``'s shuffled set, signed for ``peer``, once."""
        self._label_only("names a peer's common keys")
        p = self._peers()
        if self._finished != set(p.others) or peer not in p.others or peer in self._shared:
            raise ProtocolError(
                f"{self.who} names each domain's common keys once, after every intersection; "
                f"not {str(peer)[:40]!r} now"
            )
        positions = np.sort(self._where[peer][self.aligner.candidates])
        self._shared.add(peer)
        claim = {"kind": "psi-rows", "to": peer, "set": self._their_set[peer],
                 "size": len(positions), "sha256": _sha256(positions)}  # fmt: skip
        return PsiRows(positions, *self._sign(claim))

    def apply(self, msg: PsiApply) -> int:
        """Keep the rows the label domain names in the set this party offered it; how many."""
        sender = claimed_sender(msg, self.name)
        self._from_label(sender, "takes common keys only from")
        claim = self._check(msg, "psi-rows", sender)
        if self._applied:
            raise ProtocolError(f"{self.who} has applied its common keys in this run already")
        if claim.get("set") != self._offered.get(sender):
            raise ProtocolError(f"{self.who}: positions in a set it did not offer in this run")
        positions = np.ascontiguousarray(msg.positions)
        if claim.get("sha256") != _sha256(positions) or claim.get("size") != len(positions):
            raise ProtocolError(f"{self.who}: the positions are not the ones signed")
        size = self.aligner.take(positions)
        self._applied = True
        return size

    def done(self) -> np.ndarray:
        """The aligned order (position -> own row), once every intersection is done."""
        p = self._peers()
        if self._is_label and self._finished != set(p.others):
            missing = sorted(set(p.others) - self._finished)
            raise ProtocolError(
                f"{self.who} cannot end alignment: no intersection with {missing} yet"
            )
        if not self._is_label and not self._applied:
            raise ProtocolError(
                f"{self.who} cannot end alignment: the label domain {p.label!r} has not named "
                f"its common keys"
            )
        return self.aligner.done()


class AlignsKeys:
    """A party's side of key alignment: the PSI handlers over its ``alignment``; once
    every intersection is done, ``rows_`` maps aligned positions to its own rows.

    A party aligning with several peers, each on its own keys (a star's fact domain),
    overrides ``alignments``, ``by_peer`` and ``by_sender`` to pick the one a message is for.
    """

    alignment: SignedAlignment
    rows_: np.ndarray | None = None

    def alignments(self) -> list[SignedAlignment]:
        return [self.alignment]

    def by_peer(self, peer: object) -> SignedAlignment:
        """The alignment a request naming ``peer`` is for."""
        return self.alignment

    def by_sender(self, msg: Relayed) -> SignedAlignment:
        """The alignment a signed message relayed from a peer is for."""
        return self.alignment

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        for a in self.alignments():
            a.run = msg.run  # every PSI message it signs or checks names this run
        ack = super().on_hello(msg)
        ack.info["aligns_keys"] = True  # the coordinator relays PSI before any setup
        return ack

    @handles(PsiRequest)
    def on_psi_request(self, msg: PsiRequest) -> PsiBlob:
        return self.by_peer(msg.peer).request(msg.peer)

    @handles(PsiServe)
    def on_psi_serve(self, msg: PsiServe) -> PsiReply:
        return self.by_sender(msg).serve(msg)

    @handles(PsiTake)
    def on_psi_take(self, msg: PsiTake) -> Ack:
        return Ack(info={"size": self.by_sender(msg).take(msg)})

    @handles(PsiFinish)
    def on_psi_finish(self, msg: PsiFinish) -> Ack:
        return Ack(info={"size": self.by_sender(msg).finish(msg)})

    @handles(PsiMatches)
    def on_psi_matches(self, msg: PsiMatches) -> PsiRows:
        return self.by_peer(msg.peer).matches(msg.peer)

    @handles(PsiApply)
    def on_psi_apply(self, msg: PsiApply) -> Ack:
        return Ack(info={"size": self.by_sender(msg).apply(msg)})

    @handles(AlignDone)
    def on_align_done(self, msg: AlignDone) -> Ack:
        self.rows_ = self.alignment.done()
        self.aligned()
        return Ack(info={"rows": len(self.rows_)})

    def aligned(self) -> None:
        """Called once the aligned order (``rows_``) is known."""
