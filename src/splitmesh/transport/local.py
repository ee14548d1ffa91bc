"""In-process transport: every message is encoded and decoded, as on the network."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from splitmesh.errors import PartyError, SplitmeshError, TransportError
from splitmesh.transport.base import Transport
from splitmesh.transport.messages import ErrorReply, Message, decode, encode


class Handler(Protocol):
    """Anything that serves protocol messages: a party."""

    def handle(self, msg: Message) -> Message: ...


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
        reply = serve(handler, data)
        self.stats.add(party, "received", len(reply))
        return unwrap(party, type(msg).__name__, decode(reply))


def answer(handler: Handler, request: Callable[[], Message]) -> Message:
    """What a party's server does with one request: its reply, or an ErrorReply saying why.

    ``request`` decodes the incoming message, so a malformed one is answered too.
    """
    try:
        return handler.handle(request())
    except SplitmeshError as exc:
        return ErrorReply(kind=type(exc).__name__, detail=str(exc))
    except Exception as exc:  # a party must answer, even when it has a bug
        return ErrorReply(kind=type(exc).__name__, detail=str(exc) or repr(exc))


def serve(handler: Handler, data: bytes) -> bytes:
    """One frame in, one frame out (errors included)."""
    return encode(answer(handler, lambda: decode(data)))


def unwrap(party: str, call: str, reply: Message) -> Message:
    """Turn an ErrorReply into a PartyError naming the party and the call."""
    if isinstance(reply, ErrorReply):
        raise PartyError(party, call, reply.detail, kind=reply.kind)
    return reply
