"""What the coordinator does with what parties send: check a reply's type, relay signed
PSI messages it can neither read nor forge."""

from __future__ import annotations

from typing import TypeVar

from splitmesh.errors import ProtocolError
from splitmesh.transport.base import Transport
from splitmesh.transport.messages import Ack, PsiBlob, PsiFinish, PsiReply, PsiRequest, PsiServe

R = TypeVar("R")


def expect(reply: object, cls: type[R], party: str) -> R:
    """``reply`` if it is a ``cls``; a ProtocolError naming the party otherwise."""
    if not isinstance(reply, cls):
        raise ProtocolError(f"{party!r} answered {type(reply).__name__}, expected {cls.__name__}")
    return reply


def relayed(cls: type, msg: PsiBlob | PsiReply):
    """Pass a signed PSI message on unchanged: the relay can neither read nor forge it."""
    if isinstance(msg, PsiBlob):
        return cls(msg.request, msg.size, msg.claim, msg.cert, msg.signature)
    return cls(msg.setup, msg.response, msg.claim, msg.cert, msg.signature)


def relay_psi(t: Transport, client: str, server: str) -> int:
    """One PSI intersection relayed: ``client`` asks ``server`` and applies its reply;
    how many of the client's candidate keys remain."""
    blob = expect(t.request(client, PsiRequest(server)), PsiBlob, client)
    reply = expect(t.request(server, relayed(PsiServe, blob)), PsiReply, server)
    return expect(t.request(client, relayed(PsiFinish, reply)), Ack, client).info["size"]
