"""In-process transport: every message is encoded and decoded, as on the network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from splitmesh.errors import PartyError, PolicyError, ProtocolError, SplitmeshError, TransportError
from splitmesh.transport.base import Caller, Incoming, Transport
from splitmesh.transport.codec import read_envelope
from splitmesh.transport.grpc import splitmesh_pb2 as pb
from splitmesh.transport.messages import (
    ErrorReply,
    Message,
    decode,
    encode,
    envelope,
    open_envelope,
)


class Handler(Protocol):
    """Anything that serves protocol messages: a party, or a node (split/node.py), which
    also implements ``serve`` to decode under its own limits and log every call."""

    def handle(self, msg: Message) -> Message: ...


LOCAL = Caller()


class LocalTransport(Transport):
    """Calls handlers in this process; no Python object crosses between caller and party."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        super().__init__()
        self._handlers = dict(handlers)

    @property
    def parties(self) -> list[str]:
        return list(self._handlers)

    def request(self, party: str, msg: Message) -> Message:
        handler = self._handlers.get(party)
        if handler is None:
            raise TransportError(f"no party named {party!r} (known: {', '.join(self._handlers)})")
        data = encode(msg)
        self.stats.add(party, "sent", len(data))
        reply = serve(handler, data, LOCAL)
        self.stats.add(party, "received", len(reply))
        return unwrap(party, type(msg).__name__, decode(reply))


def answer(handler: Handler, incoming: Incoming, caller: Caller) -> Message:
    """What a party's server does with one request: its reply, or an ErrorReply saying why.

    A node decodes the request itself (under its own limits) and logs the call; any other
    handler gets the decoded message. A malformed request is answered too.
    """
    node_serve = getattr(handler, "serve", None)
    if node_serve is not None:
        return node_serve(incoming, caller)
    try:
        return handler.handle(incoming.decode(None))
    except Exception as exc:  # a party must answer, even when it has a bug
        return error_reply(exc)


def answer_envelope(handler: Handler, incoming: Incoming, caller: Caller) -> pb.Envelope:
    """``answer``, as the envelope that goes back. A reply that cannot travel (a NaN in
    its header, a diverged model's loss say, or a tensor of no wire dtype) goes back as an
    ErrorReply saying so, rather than as an exception inside the transport."""
    reply = answer(handler, incoming, caller)
    try:
        return envelope(reply)
    except (ValueError, ProtocolError) as exc:
        why = ProtocolError(f"its {type(reply).__name__} cannot be sent: {exc}")
        return envelope(error_reply(why))


def error_reply(exc: Exception) -> ErrorReply:
    if isinstance(exc, SplitmeshError):
        return ErrorReply(kind=type(exc).__name__, detail=str(exc))
    return ErrorReply(kind=type(exc).__name__, detail=str(exc) or repr(exc))


def serve(handler: Handler, data: bytes, caller: Caller) -> bytes:
    """One frame in, one frame out (errors included). The frame is parsed once; a frame
    that does not parse is refused by the handler's decode, and logged as type "?"."""
    try:
        env = read_envelope(data)
    except ProtocolError:
        incoming = Incoming("?", len(data), lambda check: decode(data, check))
    else:
        incoming = Incoming(env.type or "?", len(data), lambda check: open_envelope(env, check))
    return answer_envelope(handler, incoming, caller).SerializeToString()


def unwrap(party: str, call: str, reply: Message) -> Message:
    """Turn an ErrorReply into a PartyError naming the party and the call; a node's policy
    refusal stays a PolicyError (naming the node and the rule)."""
    if isinstance(reply, ErrorReply):
        if reply.kind == PolicyError.__name__:
            raise PolicyError.from_remote(party, reply.detail)
        raise PartyError(party, call, reply.detail, kind=reply.kind)
    return reply
