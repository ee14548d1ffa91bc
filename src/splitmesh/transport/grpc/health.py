"""Waiting on nodes through the standard gRPC health service (``grpc.health.v1``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitmesh.errors import TransportError
from splitmesh.transport.grpc.client import Endpoint
from splitmesh.transport.grpc.server import PARTY_SERVICE
from splitmesh.transport.grpc.tls import TlsFiles

SERVING = health_pb2.HealthCheckResponse.SERVING


def wait_serving(
    endpoints: list[Endpoint],
    *,
    tls: TlsFiles | None,
    timeout: float = 180.0,
    failed: Callable[[str], str | None] = lambda _: None,
    poll: float = 0.25,
) -> dict[str, float]:
    """Block until every node answers SERVING for the party service; seconds each took.

    ``failed(name)`` says why a node will never answer (its process exited: the reason
    is raised at once instead of waiting out ``timeout``), or None while it may still.
    """
    creds = None
    if tls is not None:
        ca, cert, key = tls.read()
        creds = grpc.ssl_channel_credentials(ca, key, cert)
    channels = {e.name: _channel(e, creds) for e in endpoints}
    stubs = {n: health_pb2_grpc.HealthStub(c) for n, c in channels.items()}
    ask = health_pb2.HealthCheckRequest(service=PARTY_SERVICE)
    start = time.monotonic()
    ready: dict[str, float] = {}
    try:
        while len(ready) < len(stubs):
            for name, stub in stubs.items():
                if name in ready:
                    continue
                try:  # wait_for_ready: the call waits (up to poll) for the port to open
                    reply = stub.Check(ask, timeout=poll, wait_for_ready=True)
                    if reply.status == SERVING:
                        ready[name] = time.monotonic() - start
                        continue
                except grpc.RpcError as exc:
                    if exc.code() not in _NOT_YET:
                        raise TransportError(
                            f"node {name!r}: health check failed ({exc.code().name}: "
                            f"{exc.details()})"
                        ) from None
                reason = failed(name)
                if reason is not None:
                    raise TransportError(f"node {name!r} {reason}")
            waiting = sorted(set(stubs) - set(ready))
            if waiting and time.monotonic() - start > timeout:
                raise TransportError(f"nodes {waiting} did not start in {timeout:g} s")
    finally:
        for channel in channels.values():
            channel.close()
    return ready


# still starting: not listening yet, or listening but not serving the party yet
_NOT_YET = (
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND,
)


def _channel(e: Endpoint, creds) -> grpc.Channel:
    if creds is None:
        return grpc.insecure_channel(e.address)
    # as for every call: the node must present a certificate naming it
    return grpc.secure_channel(e.address, creds, [("grpc.ssl_target_name_override", e.name)])
