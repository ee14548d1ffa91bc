"""Key alignment between domains that the coordinator relays but cannot drive.

Alignment runs in protocol order, each step once per run, between domains only: the label
domain, as PSI client, intersects with every other domain (shrink), then serves each of
them once (share). Every request and reply is signed by the domain that made it and names
the run, its sender and receiver, the set size and the hash of what it carries, so the
relay can neither forge one (to learn a domain's keys), redirect one, nor replay one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from splitmesh.data.alignment import KeyAligner, request_size
from splitmesh.errors import ProtocolError
from splitmesh.split.party import handles
from splitmesh.transport.identity import Identity, Signed
from splitmesh.transport.messages import (
    Ack,
    AlignDone,
    Hello,
    PsiBlob,
    PsiFinish,
    PsiReply,
    PsiRequest,
    PsiServe,
)


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
        h.update(np.ascontiguousarray(p, dtype=np.uint8).tobytes())
    return h.hexdigest()


def claimed_sender(msg: PsiServe, who: str) -> str:
    """The sender a signed PSI request names (checked against its signature later)."""
    try:
        sender = json.loads(msg.claim).get("from")
    except (ValueError, AttributeError):
        sender = None
    if not isinstance(sender, str):
        raise ProtocolError(f"domain {who!r}: a signed PSI message that names no sender is refused")
    return sender


def _signed(msg: PsiServe | PsiFinish) -> Signed:
    return Signed(msg.claim, msg.cert, np.ascontiguousarray(msg.signature, np.uint8).tobytes())


class SignedAlignment:
    """One domain's side of a run's alignment: its keys, what it has asked, answered and
    applied, and the checks that hold every step to the protocol."""

    def __init__(self, name: str, keys: list[str], peers: Peers | None) -> None:
        self.name, self.peers = name, peers
        self.aligner = KeyAligner(keys)
        self.run: str | None = None  # set at Hello
        self.asked: dict | None = None  # the open request: {"to": peer, "sha256": ...}
        self._finished: set[str] = set()  # peers whose reply this party has applied
        self._served: set[str] = set()  # peers this party has answered

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

    def _sign(self, claim: dict) -> tuple[str, str, np.ndarray]:
        signed = self._peers().identity.sign({**claim, "run": self.run, "from": self.name})
        return signed.claim, signed.cert, np.frombuffer(signed.signature, np.uint8)

    def _check(self, msg: PsiServe | PsiFinish, kind: str, sender: str) -> dict:
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

    # -- the order of the protocol ---------------------------------------------------------
    def _may_request(self, peer: str) -> None:
        p = self._peers()
        if self.asked is not None:
            raise ProtocolError(f"{self.who} has a PSI request to {self.asked['to']!r} still open")
        if self.name == p.label:
            if peer not in p.others or peer in self._finished:
                raise ProtocolError(
                    f"{self.who} intersects once with each other domain; not with {peer!r} now"
                )
        elif peer != p.label or self._finished or p.label not in self._served:
            raise ProtocolError(
                f"{self.who} asks the label domain {p.label!r} once, after serving it; "
                f"not {peer!r} now"
            )

    def _may_serve(self, peer: str) -> None:
        p = self._peers()
        if peer in self._served:
            raise ProtocolError(
                f"{self.who} has already served {peer!r} in this run: PSI is served once"
            )
        if self.name == p.label:
            if peer not in p.others:
                raise ProtocolError(
                    f"{self.who} serves PSI only to the mesh's domains, not {peer!r}"
                )
            if self._finished != set(p.others):
                raise ProtocolError(
                    f"{self.who} serves {peer!r} only after intersecting with every other domain"
                )
        elif peer != p.label:
            raise ProtocolError(
                f"{self.who} serves PSI only to the label domain {p.label!r}, not {peer!r}"
            )

    # -- the steps ----------------------------------------------------------------------------
    def request(self, peer: str) -> PsiBlob:
        """As PSI client: a request over the current candidates, signed for ``peer``."""
        self._may_request(peer)
        request = self.aligner.request()
        size = len(self.aligner.candidates)
        digest = _sha256(request)
        claim = self._sign({"kind": "psi-request", "to": peer, "size": size, "sha256": digest})
        self.asked = {"to": peer, "sha256": digest}
        return PsiBlob(request, size, *claim)

    def serve(self, msg: PsiServe) -> PsiReply:
        """As PSI server: answer a request its peer signed, once, in protocol order."""
        sender = claimed_sender(msg, self.name)
        claim = self._check(msg, "psi-request", sender)
        self._may_serve(sender)
        if claim.get("sha256") != _sha256(msg.request):
            raise ProtocolError(f"{self.who}: the PSI request is not the one signed")
        size = request_size(msg.request)
        if not claim.get("size") == msg.size == size:
            raise ProtocolError(
                f"{self.who}: a PSI request of {size} keys from {sender!r}, which declared "
                f"{claim.get('size')}: refused"
            )
        setup, response = self.aligner.serve(msg.request, size)
        self._served.add(sender)
        reply = {"kind": "psi-reply", "to": sender, "request": claim["sha256"]}
        return PsiReply(setup, response, *self._sign({**reply, "sha256": _sha256(setup, response)}))

    def finish(self, msg: PsiFinish) -> int:
        """As PSI client: apply the reply of the peer it asked; how many candidates remain."""
        asked = self.asked
        if asked is None:
            raise ProtocolError(f"{self.who} got a PSI reply but has no request open")
        claim = self._check(msg, "psi-reply", asked["to"])
        if claim.get("request") != asked["sha256"]:
            raise ProtocolError(f"{self.who}: the PSI reply answers another request")
        if claim.get("sha256") != _sha256(msg.setup, msg.response):
            raise ProtocolError(f"{self.who}: the PSI reply is not the one signed")
        size = self.aligner.finish(msg.setup, msg.response)
        self.asked = None
        self._finished.add(asked["to"])
        return size

    def done(self) -> np.ndarray:
        """The aligned order (position -> own row), once every intersection is done."""
        p = self._peers()
        need = set(p.others) if self.name == p.label else {p.label}
        if self._finished != need:
            missing = sorted(need - self._finished)
            raise ProtocolError(
                f"{self.who} cannot end alignment: no intersection with {missing} yet"
            )
        return self.aligner.done()


class AlignsKeys:
    """A party's side of key alignment: the PSI handlers over its ``alignment``; once
    every intersection is done, ``rows_`` maps aligned positions to its own rows."""

    alignment: SignedAlignment
    rows_: np.ndarray | None = None

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        self.alignment.run = msg.run  # every PSI message it signs or checks names this run
        ack = super().on_hello(msg)
        ack.info["aligns_keys"] = True  # the coordinator relays PSI before any setup
        return ack

    @handles(PsiRequest)
    def on_psi_request(self, msg: PsiRequest) -> PsiBlob:
        return self.alignment.request(msg.peer)

    @handles(PsiServe)
    def on_psi_serve(self, msg: PsiServe) -> PsiReply:
        return self.alignment.serve(msg)

    @handles(PsiFinish)
    def on_psi_finish(self, msg: PsiFinish) -> Ack:
        return Ack(info={"size": self.alignment.finish(msg)})

    @handles(AlignDone)
    def on_align_done(self, msg: AlignDone) -> Ack:
        self.rows_ = self.alignment.done()
        self.aligned()
        return Ack(info={"rows": len(self.rows_)})

    def aligned(self) -> None:
        """Called once the aligned order (``rows_``) is known."""
