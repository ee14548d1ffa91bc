"""The gRPC transport against servers in this process: envelopes, mutual TLS, faults."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import numpy as np
import pytest

from splitmesh.errors import (
    ConfigError,
    NodeUnreachableError,
    PartyError,
    ProtocolError,
    TransportError,
)
from splitmesh.transport.codec import Int8Tensor
from splitmesh.transport.grpc import (
    Endpoint,
    GrpcTransport,
    PartyServer,
    TlsFiles,
    create_certificates,
)
from splitmesh.transport.messages import (
    Ack,
    Embedding,
    Forward,
    Head,
    HeadReply,
    Restore,
    Snapshot,
)
from splitmesh.transport.messages import envelope as to_envelope
from splitmesh.transport.messages import open_envelope as from_envelope


class Echo:
    """Counts what it serves; Forward returns the positions as an embedding."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[str] = []
        self.delay = delay

    def handle(self, msg):
        self.calls.append(type(msg).__name__)
        if self.delay:
            time.sleep(self.delay)
        if isinstance(msg, Forward):
            return Embedding(step=msg.step, values=msg.positions.astype(np.float32)[:, None])
        if isinstance(msg, Restore):
            raise ProtocolError("no state here")
        return Ack(info={"served": len(self.calls)})


class Undelivered(Echo):
    """Also keeps what the node would log as undelivered (its access log's hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.missed: list[str] = []

    def undelivered(self, session: str) -> None:
        self.missed.append(session)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    prints = create_certificates(d, ["coordinator", "payments", "cardholder", "intruder"])
    other = tmp_path_factory.mktemp("other-ca")
    create_certificates(other, ["coordinator"])
    return d, prints, other


def serve(handler, certs, name="payments", allow=None):
    d, prints, _ = certs
    return PartyServer(
        handler,
        "127.0.0.1:0",
        name=name,
        tls=TlsFiles.for_party(d, name),
        allow=allow or [prints["coordinator"]],
    ).start()


def client(server, tls, name="payments", **kw):
    return GrpcTransport([Endpoint(name, f"127.0.0.1:{server.port}")], tls=tls, **kw)


@contextlib.contextmanager
def connected(handler, certs, caller_tls, *, node="payments", expect="payments", **kw):
    """A node serving ``handler`` under ``node``'s certificate, and a client expecting
    ``expect`` that presents ``caller_tls``; both closed afterwards."""
    server = serve(handler, certs, name=node)
    t = client(server, caller_tls, name=expect, **kw)
    try:
        yield t
    finally:
        t.close()
        server.stop()


def test_envelope_round_trip_keeps_dtypes_shapes_and_int8_scale():
    msg = Forward("train", np.arange(5), 3, True, np.full((5, 2), 0.5, np.float16), 2)
    back = from_envelope(to_envelope(msg))
    assert back.positions.dtype == np.int64 and back.grad.dtype == np.float16
    np.testing.assert_array_equal(back.positions, msg.positions)
    x = np.linspace(-2, 3, 12, dtype=np.float32).reshape(3, 4)
    q = from_envelope(to_envelope(Embedding(1, Int8Tensor.quantize(x))))
    assert q.values.dtype == np.float32
    assert np.abs(q.values - x).max() <= 3 / 127 / 2 + 1e-6


def test_envelope_refuses_a_dtype_that_could_hide_objects():
    env = to_envelope(Embedding(1, np.zeros(2, np.float32)))
    env.tensors[0].dtype = "|O"
    with pytest.raises(ProtocolError, match="unknown dtype"):
        from_envelope(env)


def test_mutual_tls_call_and_typed_remote_error(certs):
    d = certs[0]
    handler = Echo()
    with connected(handler, certs, TlsFiles.for_party(d, "coordinator")) as t:
        reply = t.request("payments", Forward("train", np.arange(4), 0, True))
        np.testing.assert_array_equal(reply.values[:, 0], [0, 1, 2, 3])
        many = t.request_many({"payments": Snapshot("a")})
        assert many["payments"].info["served"] == 2
        with pytest.raises(PartyError, match=r"'payments' failed on Restore.*no state here"):
            t.request("payments", Restore("best"))
        assert t.stats.bytes[("payments", "sent")] > 0


def test_node_refuses_a_certificate_from_another_ca(certs):
    _, _, other = certs
    with connected(
        Echo(), certs, TlsFiles.for_party(other, "coordinator"), retries=0, deadline=5
    ) as t:
        with pytest.raises(NodeUnreachableError, match="payments") as err:
            t.request("payments", Snapshot("a"))
        assert "TLS" in str(err.value) or "unavailable" in str(err.value)


def test_node_refuses_a_mesh_certificate_it_does_not_accept(certs):
    d = certs[0]
    handler = Echo()
    with connected(handler, certs, TlsFiles.for_party(d, "intruder"), retries=0) as t:
        with pytest.raises(NodeUnreachableError, match="refused our certificate"):
            t.request("payments", Snapshot("a"))
        assert handler.calls == []


def test_coordinator_refuses_a_node_it_did_not_expect(certs):
    """A node answering with another party's certificate fails the name check."""
    d = certs[0]
    with (
        connected(
            Echo(),
            certs,
            TlsFiles.for_party(d, "coordinator"),
            node="cardholder",
            expect="payments",
            retries=0,
        ) as t,
        pytest.raises(NodeUnreachableError, match=r"TLS|unavailable"),
    ):
        t.request("payments", Snapshot("a"))


def test_plaintext_only_when_asked_and_only_on_loopback():
    with pytest.raises(ConfigError, match="plaintext not asked"):
        PartyServer(Echo(), "127.0.0.1:0", name="x", tls=None)
    with pytest.raises(ConfigError, match="loopback only"):
        PartyServer(Echo(), "0.0.0.0:0", name="x", tls=None, insecure=True)
    with pytest.raises(ConfigError, match="loopback only"):
        GrpcTransport([Endpoint("x", "10.1.2.3:5000")], tls=None, insecure=True)
    server = PartyServer(Echo(), "127.0.0.1:0", name="x", tls=None, insecure=True).start()
    t = GrpcTransport([Endpoint("x", f"127.0.0.1:{server.port}")], tls=None, insecure=True)
    try:
        assert isinstance(t.request("x", Snapshot("a")), Ack)
    finally:
        t.close()
        server.stop()


def test_a_node_port_is_its_own():
    """No second server binds a port a node listens on (gRPC's default SO_REUSEPORT
    would let it, and take part of the node's connections)."""
    first = PartyServer(Echo(), "127.0.0.1:0", name="x", tls=None, insecure=True).start()
    try:
        with pytest.raises(
            TransportError, match=f"node 'y' cannot listen on 127.0.0.1:{first.port}"
        ):
            PartyServer(Echo(), f"127.0.0.1:{first.port}", name="y", tls=None, insecure=True)
    finally:
        first.stop()


def test_deadline_turns_a_hung_node_into_a_clear_error(certs):
    d = certs[0]
    tls = TlsFiles.for_party(d, "coordinator")
    with (
        connected(Echo(delay=2.0), certs, tls, deadline=0.5) as t,
        pytest.raises(NodeUnreachableError, match=r"payments.*Snapshot.*0.5 s deadline"),
    ):
        t.request("payments", Snapshot("a"))


def test_down_node_is_retried_then_reported(certs):
    d = certs[0]
    server = serve(Echo(), certs)
    port = server.port
    server.stop()
    t = GrpcTransport(
        [Endpoint("payments", f"127.0.0.1:{port}")],
        tls=TlsFiles.for_party(d, "coordinator"),
        retries=2,
        backoff=0.05,
    )
    try:
        with pytest.raises(NodeUnreachableError, match="unavailable after 3 attempts"):
            t.request("payments", Snapshot("a"))
    finally:
        t.close()


def test_a_stream_that_broke_between_requests_is_reopened_or_reported(certs):
    """The node goes away while no request is in flight, so its stream has finished
    before the next request is written: that request opens a new stream (a restarted
    node answers it) or ends in NodeUnreachableError, never in gRPC's InvalidStateError."""
    d, prints, _ = certs
    tls = TlsFiles.for_party(d, "coordinator")

    def node(port: int = 0) -> PartyServer:
        node_tls = TlsFiles.for_party(d, "payments")
        allow = [prints["coordinator"]]
        return PartyServer(Echo(), f"127.0.0.1:{port}", name="payments", tls=node_tls, allow=allow)

    def broken(t: GrpcTransport) -> None:
        call = t._streams["payments"].call
        t._loop.run_until_complete(asyncio.wait_for(call.code(), 10))

    server = node().start()
    t = client(server, tls, retries=1, backoff=0.05)
    try:
        t.request("payments", Snapshot("a"))
        server.stop()
        broken(t)
        server = node(server.port).start()  # restarted where it was
        assert t.request("payments", Snapshot("a")) == Ack(info={"served": 1})
        server.stop()
        broken(t)
        with pytest.raises(NodeUnreachableError, match="unavailable after 2 attempts"):
            t.request("payments", Snapshot("a"))
    finally:
        t.close()
        server.stop()


def test_retried_request_is_served_once(certs):
    """A repeat with the same sequence number gets the cached reply, not a second step."""
    d = certs[0]
    handler = Echo()
    with connected(handler, certs, TlsFiles.for_party(d, "coordinator")) as t:
        env = to_envelope(Snapshot("a"))
        for _ in range(2):  # on the stream, as a retry after a dropped connection sends it
            t._loop.run_until_complete(t._call("payments", env, "Snapshot", 7))
        assert handler.calls == ["Snapshot"]
        t._streams["payments"].drop()  # and on a new stream: still served once
        t._loop.run_until_complete(t._call("payments", env, "Snapshot", 7))
        assert handler.calls == ["Snapshot"]
        t.request("payments", Snapshot("a"))  # a new sequence number is a new request
        assert handler.calls == ["Snapshot", "Snapshot"]


def test_unknown_party_is_named(certs):
    d = certs[0]
    with (
        connected(Echo(), certs, TlsFiles.for_party(d, "coordinator")) as t,
        pytest.raises(Exception, match="no node named 'nobody'"),
    ):
        t.request("nobody", Snapshot("a"))


def test_certs_refuse_to_overwrite_and_bad_names(tmp_path):
    create_certificates(tmp_path, ["a1"])
    with pytest.raises(ConfigError, match="exists"):
        create_certificates(tmp_path, ["a1"])
    with pytest.raises(ConfigError, match="not usable in a certificate"):
        create_certificates(tmp_path / "x", ["Bad_Name"])
    assert oct((tmp_path / "a1.key").stat().st_mode & 0o777) == "0o600"


def test_server_threads_stop_cleanly(certs):
    before = threading.active_count()
    server = serve(Echo(), certs)
    server.stop()
    deadline = time.monotonic() + 10  # gRPC's own pollers wind down just after stop()
    while threading.active_count() > before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threading.active_count() <= before + 1


def test_stream_refuses_an_oversized_message_logs_it_and_carries_on():
    """On the Session stream as on Call: gRPC refuses a message over the node's limit
    before any of it is held, the node logs the attempt, and the next request opens a new
    stream. A coordinator that closes cleanly leaves nothing in that log."""

    handler = Undelivered()
    server = PartyServer(
        handler, "127.0.0.1:0", name="x", tls=None, insecure=True, max_message=2**20
    ).start()
    t = GrpcTransport([Endpoint("x", f"127.0.0.1:{server.port}")], tls=None, insecure=True)
    try:
        t.request("x", Snapshot("a"))
        with pytest.raises(NodeUnreachableError, match="too large") as refused:
            t.request("x", Forward("train", np.zeros(3 * 2**20 // 8, np.int64), 0, True))
        assert "limits.max_message_mb" in refused.value.hint  # what to change, and where
        deadline = time.monotonic() + 10
        while not handler.missed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handler.missed == [t._client]  # the attempt, under the caller's session
        assert t.request("x", Snapshot("b")) == Ack(info={"served": 2})
        assert handler.calls == ["Snapshot", "Snapshot"]
    finally:
        t.close()
        time.sleep(0.5)  # a cancelled stream would be reported by now
        server.stop()
    assert handler.missed == [t._client]


def test_a_reply_over_the_coordinators_cap_is_refused_naming_the_node_and_the_setting():
    """A node is as untrusted as the coordinator: gRPC refuses a reply over max_reply
    before it is held whole, the error names the node and what caps it, and the next
    request travels on a new stream."""
    server = PartyServer(Echo(), "127.0.0.1:0", name="x", tls=None, insecure=True).start()
    address = f"127.0.0.1:{server.port}"
    t = GrpcTransport([Endpoint("x", address)], tls=None, insecure=True, max_reply=2**20)
    try:
        small = Forward("train", np.arange(4, dtype=np.int64), 0, True)
        assert t.request("x", small).values.shape == (4, 1)
        big = Forward("train", np.zeros(2**19, np.int64), 1, True)  # a 2 MB embedding back
        with pytest.raises(
            NodeUnreachableError, match=r"reply of \d+ bytes, larger than this"
        ) as e:
            t.request("x", big)
        assert e.value.party == "x" and "max_reply_mb" in e.value.hint
        assert t.request("x", small).values.shape == (4, 1)
    finally:
        t.close()
        server.stop()


def test_no_caller_holds_enough_session_streams_to_starve_the_node(certs):
    """Each Session holds a worker thread: a caller gets at most half of them, streams
    together leave two free, and past that a stream is refused at once, not queued."""
    import queue

    import grpc

    from splitmesh.transport.grpc import splitmesh_pb2_grpc as pb_grpc
    from splitmesh.transport.grpc.server import CLIENT_ID

    d, prints, _ = certs
    server = PartyServer(
        Echo(), "127.0.0.1:0", name="payments", tls=TlsFiles.for_party(d, "payments"),
        allow=[prints["coordinator"], prints["intruder"]], workers=8,
    ).start()  # fmt: skip
    ca, cert, key = TlsFiles.for_party(d, "intruder").read()
    channel = grpc.secure_channel(
        f"127.0.0.1:{server.port}",
        grpc.ssl_channel_credentials(ca, key, cert),
        options=[("grpc.ssl_target_name_override", "payments")],
    )
    stub, held, ends = pb_grpc.PartyStub(channel), [], []

    def idle():  # a stream that sends nothing and stays open until told
        end = queue.Queue()
        ends.append(end)
        return iter(end.get, None)

    coordinator = client(server, TlsFiles.for_party(d, "coordinator"))
    try:
        for _ in range(4):  # half the node's 8 workers
            held.append(stub.Session(idle(), metadata=((CLIENT_ID, "intruder"),)))
        time.sleep(0.5)
        extra = stub.Session(idle(), metadata=((CLIENT_ID, "intruder"),), timeout=5)
        with pytest.raises(grpc.RpcError) as err:
            next(extra)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "4 session streams of this caller" in err.value.details()
        # the coordinator, another caller, is still served, at once
        assert coordinator.request("payments", Snapshot("a")) == Ack(info={"served": 1})
    finally:
        for end in ends:
            end.put(None)
        for call in held:
            call.cancel()
        coordinator.close()
        channel.close()
        server.stop()


def test_session_limits_count_streams_per_caller_and_in_all():
    from splitmesh.transport.grpc.server import _Sessions

    s = _Sessions(per_caller=2, total=3)
    assert s.open("a") is None and s.open("a") is None
    assert "2 session streams of this caller" in s.open("a")
    assert s.open("b") is None
    assert s.open("c") == "it holds 3 session streams, its limit"
    s.close("a")
    assert s.open("c") is None and s.open("a") is not None
    for who in ("a", "b", "c"):
        s.close(who)
    assert s._open == {}


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (512.5, 512.5),
        (7, 7.0),
        (1e300, 1e9),  # capped
        (-1, None),
        (True, None),
        ("512", None),
        ([512], None),
        ({"mb": 512}, None),
        (None, None),
    ],
)
def test_a_nodes_word_on_its_peak_memory_is_a_bounded_number_or_nothing(certs, sent, kept):
    """What a node says of its memory in its Bye reply crosses the wire from a party the
    coordinator does not trust: only a number from 0 to 1e9 MB is recorded."""
    from splitmesh.split.coordinator import reported_peak_mb
    from splitmesh.transport.messages import Bye

    class Boasting:
        def handle(self, msg):
            return Ack(info={"closed": "x", "peak_rss_mb": sent})

    d, _, _ = certs
    with connected(Boasting(), certs, TlsFiles.for_party(d, "coordinator")) as t:
        assert reported_peak_mb(t.request("payments", Bye(True))) == kept


def test_a_peak_memory_of_nan_or_infinity_in_a_raw_reply_is_not_recorded():
    """Our encoder refuses NaN, but JSON read back accepts it: a hand-made reply may
    carry one."""
    from splitmesh.split.coordinator import reported_peak_mb
    from splitmesh.transport.grpc import splitmesh_pb2 as pb

    for raw in (b"NaN", b"-Infinity"):
        env = pb.Envelope(type="Ack", header=b'{"info": {"peak_rss_mb": ' + raw + b"}}")
        assert reported_peak_mb(from_envelope(env)) is None
    env = pb.Envelope(type="Ack", header=b'{"info": {"peak_rss_mb": Infinity}}')
    assert reported_peak_mb(from_envelope(env)) == 1e9  # capped like any large number


class Diverged(Echo):
    """A party whose model diverged: its Head reply's loss is NaN, which JSON cannot carry."""

    def handle(self, msg):
        if isinstance(msg, Head):
            return HeadReply(loss=float("nan"), grad=np.zeros((len(msg.positions), 2), np.float32))
        return super().handle(msg)


def test_a_reply_that_cannot_travel_is_an_error_naming_the_node_not_a_broken_stream(certs):
    d = certs[0]
    with connected(Diverged(), certs, TlsFiles.for_party(d, "coordinator")) as t:
        head = Head("train", np.arange(3), 0, True, np.ones((3, 2), np.float32))
        with pytest.raises(PartyError, match=r"'payments' failed on Head: .*cannot be sent"):
            t.request("payments", head)
        # the stream is intact: the node answers the next call
        assert t.request("payments", Snapshot("a")).info["served"] == 1
