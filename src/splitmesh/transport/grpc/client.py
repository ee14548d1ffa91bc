"""The coordinator's side: one channel and one long-lived stream per node, deadlines,
retries, typed errors."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import uuid
from collections.abc import Mapping

import grpc
import grpc.aio

from splitmesh.errors import GRPC_STATUS, ConfigError, NodeUnreachableError, TransportError
from splitmesh.transport.base import Pending, Transport
from splitmesh.transport.grpc import splitmesh_pb2 as pb
from splitmesh.transport.grpc import splitmesh_pb2_grpc as pb_grpc
from splitmesh.transport.grpc.server import CLIENT_ID
from splitmesh.transport.grpc.tls import TlsFiles, is_loopback
from splitmesh.transport.local import unwrap
from splitmesh.transport.messages import Message
from splitmesh.transport.messages import envelope as to_envelope
from splitmesh.transport.messages import open_envelope as from_envelope
from splitmesh.transport.network import DEFAULT_MAX_REPLY_MB

_TLS_WORDS = ("handshake", "ssl", "certificate", "tls")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a party listens. ``name`` must be in its certificate: that is how we know it."""

    name: str
    address: str


class GrpcTransport(Transport):
    """Reaches each party's node over gRPC; mutual TLS unless ``insecure`` (loopback only).

    Requests to a node travel on one ``Session`` stream (opened on first use): a unary
    call per step costs about twice the round trip on this hardware (HTTP/2 stream setup,
    metadata and a call object each time). Every request has a deadline (``deadline``
    seconds). A request that finds the node UNAVAILABLE (or its stream broken) is sent
    again on a new stream ``retries`` times with exponential backoff, under the same
    sequence number, so a node that already served it answers from its cache instead of
    applying it twice. A reply larger than ``max_reply`` bytes is refused by gRPC before
    it is held whole (a node is as untrusted as the coordinator is to it).
    """

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        tls: TlsFiles | None,
        insecure: bool = False,
        deadline: float = 60.0,
        retries: int = 4,
        backoff: float = 0.25,
        max_reply: int = DEFAULT_MAX_REPLY_MB * 2**20,
    ) -> None:
        super().__init__()
        if tls is None and not insecure:
            raise ConfigError("gRPC transport: no TLS files given and plaintext not asked for")
        if tls is None:
            remote = [e.address for e in endpoints if not is_loopback(e.address)]
            if remote:
                raise ConfigError(
                    f"plaintext is allowed on loopback only, not to {', '.join(remote)}",
                    hint="give the coordinator its certificate, key and the mesh CA",
                )
        self._creds = None
        if tls is not None:
            ca, cert, key = tls.read()
            self._creds = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
        self.endpoints = {e.name: e for e in endpoints}
        self.deadline, self.retries, self.backoff = deadline, retries, backoff
        self.max_reply = max_reply
        # asyncio channels on a private loop: concurrent calls without a thread per call
        # (the blocking API's futures start one each, which costs more than the call)
        self._loop = asyncio.new_event_loop()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, pb_grpc.PartyStub] = {}
        self._streams: dict[str, _Stream] = {}
        self._loop.run_until_complete(self._open())
        self._client = uuid.uuid4().hex
        self._seq = itertools.count()

    async def _open(self) -> None:
        # requests are capped by each node itself (its limits.max_message_mb)
        sizes = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", int(self.max_reply)),
        ]
        for e in self.endpoints.values():
            if self._creds is None:
                channel = grpc.aio.insecure_channel(e.address, options=sizes)
            else:
                # the node must present a certificate naming it: a node we did not expect
                # (another party's certificate, or one from another CA) fails the handshake
                options = [*sizes, ("grpc.ssl_target_name_override", e.name)]
                channel = grpc.aio.secure_channel(e.address, self._creds, options=options)
            self._channels[e.name] = channel
            self._stubs[e.name] = pb_grpc.PartyStub(channel)
            self._streams[e.name] = _Stream()

    @property
    def parties(self) -> list[str]:
        return list(self.endpoints)

    def request(self, party: str, msg: Message) -> Message:
        return self.request_many({party: msg})[party]

    def request_many(self, requests: Mapping[str, Message]) -> dict[str, Message]:
        """All requests in flight at once; each party works on its own in parallel."""
        return self._start(requests, send_now=False).result()

    def submit_many(self, requests: Mapping[str, Message]) -> Pending:
        """Send now, collect later: the calls travel while the caller computes."""
        return self._start(requests, send_now=True)

    def _start(self, requests: Mapping[str, Message], *, send_now: bool) -> Pending:
        calls = []
        for party, msg in requests.items():
            if party not in self._stubs:
                raise TransportError(
                    f"no node named {party!r} in the mesh file (known: {', '.join(self.endpoints)})"
                )
            env = to_envelope(msg)
            self.stats.add(party, "sent", env.ByteSize())  # the payload; seq is framing
            calls.append(self._call(party, env, type(msg).__name__, next(self._seq)))
        gathered = self._loop.create_task(_gather(calls))
        if send_now:  # a few turns of the loop hand the requests to gRPC, which sends them
            for _ in range(3):
                self._loop.run_until_complete(asyncio.sleep(0))
        names = [(party, type(msg).__name__) for party, msg in requests.items()]
        return Pending(lambda: self._collect(names, gathered))

    def _collect(self, names: list[tuple[str, str]], gathered: asyncio.Task) -> dict:
        replies = self._loop.run_until_complete(gathered)
        out = {}
        for (party, call), reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            self.stats.add(party, "received", reply.ByteSize())
            out[party] = unwrap(party, call, from_envelope(reply))
        return out

    async def _call(self, party: str, env: pb.Envelope, call: str, seq: int) -> pb.Envelope:
        env.seq = seq
        stream = self._streams[party]
        async with stream.lock:  # one request in flight per node, replies in order
            for attempt in range(self.retries + 1):
                try:  # a timeout scope, not wait_for: no task of its own per call
                    async with asyncio.timeout(self.deadline):
                        return await self._exchange(party, env)
                except TimeoutError:
                    stream.drop()  # a late reply must not answer the next request
                    late = _Status(grpc.StatusCode.DEADLINE_EXCEEDED, "no reply in time")
                    raise self._error(party, call, late) from None
                except grpc.RpcError as exc:
                    stream.drop()
                    # UNAVAILABLE: not delivered, or the node went away; the same sequence
                    # number makes a repeat harmless. A TLS failure will not mend itself.
                    retry = exc.code() == grpc.StatusCode.UNAVAILABLE and not _tls_failure(exc)
                    if not retry or attempt == self.retries:
                        raise self._error(party, call, exc) from None
                    await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    async def _exchange(self, party: str, env: pb.Envelope) -> pb.Envelope:
        stream = self._streams[party]
        if stream.call is not None and stream.call.done():
            stream.drop()  # it broke while idle (the node went away between requests)
        if stream.call is None:
            stream.call = self._stubs[party].Session(metadata=((CLIENT_ID, self._client),))
        try:
            await stream.call.write(env)
        except asyncio.InvalidStateError:  # it finished between the check and the write
            stream.drop()
            raise _Status(grpc.StatusCode.UNAVAILABLE, "the stream to the node broke") from None
        reply = await stream.call.read()
        if reply is grpc.aio.EOF:  # the node ended the stream (stopping): as if unreachable
            stream.drop()
            raise _Status(grpc.StatusCode.UNAVAILABLE, "the node closed the stream")
        return reply

    def _error(self, party: str, call: str, exc: grpc.RpcError) -> TransportError:
        address = self.endpoints[party].address
        code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            reason = f"no reply within the {self.deadline:g} s deadline (node hung or overloaded)"
        elif code == grpc.StatusCode.UNAVAILABLE and _tls_failure(exc):
            reason = (
                "TLS handshake failed: its certificate is not from this mesh's CA or does not "
                f"name {party!r}, or it does not trust ours ({details})"
            )
        elif code == grpc.StatusCode.UNAVAILABLE:
            reason = f"unavailable after {self.retries + 1} attempts ({details})"
        else:
            reason = f"{GRPC_STATUS.get(code.name, code.name)} ({code.name}: {details})"
        hint = None
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
            size = re.search(r"\((\d+) vs\. (\d+)\)", details)
            if size and int(size[2]) == self.max_reply:  # refused here, not by the node
                reason = f"sent a reply of {size[1]} bytes, larger than this coordinator reads"
                hint = (
                    "max_reply_mb in the coordinator's mesh file caps one reply (default "
                    f"{DEFAULT_MAX_REPLY_MB}); raise it there only for a node you expect such "
                    "replies from"
                )
            else:  # a big table's PSI set or row positions: the cap is the node's own
                hint = (
                    f"node {party!r} caps one request at its limits.max_message_mb (node "
                    "file, default 128); raise it there for a table this large"
                )
        return NodeUnreachableError(party, call, address, reason, hint=hint)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for stream in self._streams.values():
            self._loop.run_until_complete(stream.end())
        for channel in self._channels.values():
            self._loop.run_until_complete(channel.close())
        self._loop.close()


class _Stream:
    """A node's Session stream (None until first use or after a failure)."""

    def __init__(self) -> None:
        self.call = None
        self.lock = asyncio.Lock()

    def drop(self) -> None:
        if self.call is not None:
            self.call.cancel()
            self.call = None

    async def end(self) -> None:
        """Tell the node this coordinator is done: its stream ends cleanly, not cancelled."""
        if self.call is not None:
            try:
                await self.call.write(pb.Envelope())  # goodbye: no request, a clean end
                await self.call.done_writing()
                await asyncio.wait_for(self.call.code(), 1.0)  # the node saw the end
            except (grpc.RpcError, TimeoutError, asyncio.InvalidStateError):
                pass
            self.call = None


class _Status(grpc.RpcError):
    """What the stream itself tells (the node closed it, no reply within the deadline),
    as an RpcError with its code, so ``_error`` words it as it words gRPC's own."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


async def _gather(calls: list) -> list:
    return await asyncio.gather(*calls, return_exceptions=True)


def _tls_failure(exc: grpc.RpcError) -> bool:
    details = (exc.details() or "").lower()
    return any(w in details for w in _TLS_WORDS)
