"""The standard gRPC health service on a node: how mesh up waits, what kubelet probes ask."""

from __future__ import annotations

import socket
import time

import pytest

from splitmesh.errors import TransportError
from splitmesh.transport.grpc import Endpoint, PartyServer, TlsFiles, wait_serving
from tests.transport.test_grpc import (  # noqa: F401  (certs: a fixture)
    Echo,
    Undelivered,
    certs,
    serve,
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_waits_until_serving_over_mutual_tls(certs):  # noqa: F811
    d, _, other = certs
    server = serve(Echo(), certs)
    try:
        ready = wait_serving(
            [Endpoint("payments", f"127.0.0.1:{server.port}")],
            tls=TlsFiles.for_party(d, "coordinator"),
            timeout=10,
        )
        assert set(ready) == {"payments"}
        # a caller from another CA gets no health answer either: the handshake fails
        with pytest.raises(TransportError, match=r"did not start|health check failed"):
            wait_serving(
                [Endpoint("payments", f"127.0.0.1:{server.port}")],
                tls=TlsFiles.for_party(other, "coordinator"),
                timeout=1,
            )
    finally:
        server.stop()


def test_a_node_that_died_is_reported_at_once_not_after_the_timeout(certs):  # noqa: F811
    d, _, _ = certs
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="'payments' exited with code 3"):
        wait_serving(
            [Endpoint("payments", f"127.0.0.1:{_closed_port()}")],
            tls=TlsFiles.for_party(d, "coordinator"),
            timeout=60,
            failed=lambda name: "exited with code 3",
        )
    assert time.monotonic() - t0 < 10
    with pytest.raises(TransportError, match=r"did not start in 0\.5 s"):
        wait_serving([Endpoint("x", f"127.0.0.1:{_closed_port()}")], tls=None, timeout=0.5)


def test_probe_port_is_plaintext_and_serves_health_only(monkeypatch):
    import grpc
    from grpc_health.v1 import health_pb2

    from splitmesh.transport.grpc import server as grpc_server

    monkeypatch.setattr(grpc_server._Arrivals, "GRACE_S", 0.1)
    handler = Undelivered()
    server = PartyServer(
        handler, "127.0.0.1:0", name="x", tls=None, insecure=True, health_listen="127.0.0.1:0"
    ).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.health_port}")
    try:
        for port in (server.health_port, server.port):  # probes on both ports
            assert wait_serving([Endpoint("x", f"127.0.0.1:{port}")], tls=None)
        time.sleep(1.5)  # the node's sweep (every second) would have reported them by now
        # probes are not steps: none reaches the access log as an undelivered call
        assert handler.missed == []
        # the step protocol is not on the probe port
        call = channel.unary_unary("/splitmesh.v1.Party/Call")
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert handler.calls == []
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        assert check(health_pb2.HealthCheckRequest(), timeout=5).status == 1  # SERVING
    finally:
        channel.close()
        server.stop(grace=0)
