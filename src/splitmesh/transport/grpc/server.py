"""A party served over gRPC: mutual TLS, a caller allow-list, one request at a time."""

from __future__ import annotations

import functools
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from splitmesh.errors import ConfigError, TransportError
from splitmesh.transport.base import Caller, Incoming
from splitmesh.transport.grpc import splitmesh_pb2 as pb
from splitmesh.transport.grpc import splitmesh_pb2_grpc as pb_grpc
from splitmesh.transport.grpc.tls import TlsFiles, fingerprint, is_loopback
from splitmesh.transport.local import Handler, answer_envelope
from splitmesh.transport.messages import open_envelope as from_envelope

CLIENT_ID, SEQUENCE = "splitmesh-client", "splitmesh-seq"
CANNOT_LISTEN = "cannot listen on"  # how a node that could not bind says so (the launcher reads it)
PARTY_SERVICE = "splitmesh.v1.Party"  # the name health checks ask about ("" means the node)
_HEALTH_METHODS = "/grpc.health.v1.Health/"
_SESSION = "/splitmesh.v1.Party/Session"  # accounts for its own messages (_Servicer.Session)
DEFAULT_MAX_MESSAGE = 128 * 2**20  # a node's default cap on one request, in bytes
# gRPC sets SO_REUSEPORT by default: a second process (a node started twice, or anyone's
# server) could then bind a node's port too and take part of its callers' connections
OWN_PORT = [("grpc.so_reuseport", 0)]


class _Arrivals(grpc.ServerInterceptor):
    """Notes each call as it arrives, before gRPC reads its message. A call that never
    reaches the servicer (gRPC refused it as larger than the node's limit, or its sender
    gave up) is reported to the handler's ``undelivered(session)`` hook after a grace
    period, so that the node's access log holds that attempt too."""

    GRACE_S = 5.0

    def __init__(self, report) -> None:
        self.report = report
        self._pending: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sweep, name="undelivered", daemon=True)
        self._thread.start()

    def intercept_service(self, continuation, details):
        if details.method.startswith(_HEALTH_METHODS) or details.method == _SESSION:
            return continuation(details)  # a probe carries no step; a stream counts its own
        meta = dict(details.invocation_metadata or ())
        with self._lock:
            self._pending[(meta.get(CLIENT_ID, ""), meta.get(SEQUENCE, ""))] = time.monotonic()
        return continuation(details)

    def delivered(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _sweep(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            with self._lock:
                late = [k for k, t in self._pending.items() if now - t > self.GRACE_S]
                for k in late:
                    del self._pending[k]
            for client, _ in late:
                self.report(client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


# What a client sends, alone, before it half-closes a Session stream: an empty envelope
# (every request names its type), so the node tells a clean end from a broken stream.
_GOODBYE = pb.Envelope()


def _cancelled(context: grpc.ServicerContext, wait: float = 2.0) -> bool:
    """Whether the call ends cancelled (its stream broken) rather than half-closed by its
    sender: a cancellation reaches the call within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while context.is_active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class _Sessions:
    """Session streams held open, by caller. A stream holds one of the node's worker
    threads for its life, so no caller may hold enough of them to starve the rest: its
    other callers, health probes, one-off calls."""

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller, self.total = per_caller, total
        self._open: dict[str | None, int] = {}
        self._lock = threading.Lock()

    def open(self, caller: str | None) -> str | None:
        """Count one more stream of ``caller``; why not, when it would pass a limit."""
        with self._lock:
            mine = self._open.get(caller, 0)
            if mine >= self.per_caller:
                return f"it holds {mine} session streams of this caller, its limit"
            if sum(self._open.values()) >= self.total:
                return f"it holds {self.total} session streams, its limit"
            self._open[caller] = mine + 1
            return None

    def close(self, caller: str | None) -> None:
        with self._lock:
            left = self._open.get(caller, 0) - 1
            if left > 0:
                self._open[caller] = left
            else:
                self._open.pop(caller, None)


class _Servicer(pb_grpc.PartyServicer):
    def __init__(self, server: PartyServer) -> None:
        self.s = server

    def Call(self, request: pb.Envelope, context: grpc.ServicerContext) -> pb.Envelope:
        caller = self._admit(context)
        meta = dict(context.invocation_metadata() or ())
        key = (meta.get(CLIENT_ID, ""), meta.get(SEQUENCE, ""))
        self.s.arrivals.delivered(key)
        return self._serve(key, request, caller)

    def Session(self, requests, context: grpc.ServicerContext):
        """One coordinator's stream: each request answered, in order, before the next is
        read. A stream that breaks on a request gRPC refused (larger than the node's
        limit) or one its sender gave up is logged as an undelivered call."""
        caller = self._admit(context)
        client = dict(context.invocation_metadata() or ()).get(CLIENT_ID, "")
        refused = self.s.sessions.open(caller)
        if refused is not None:
            why = f"node {self.s.name!r} refuses another session stream: {refused}"
            self.s.refuse("(session stream)", caller, client, "ResourceExhausted", why)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, why)
        said_goodbye = False
        try:
            for request in requests:
                if request == _GOODBYE:  # no request: the sender is done with this stream
                    said_goodbye = True
                    continue
                yield self._serve((client, str(request.seq)), request, caller)
        except Exception:
            self.s.report(client)
            raise
        finally:
            self.s.sessions.close(caller)
        # gRPC ends the requests alike when the sender half-closes and when it refuses a
        # message too large (the call's cancellation may come a moment later): only a
        # stream that ends without a goodbye is waited on, to tell the two apart
        if not said_goodbye and _cancelled(context):
            self.s.report(client)

    def _admit(self, context: grpc.ServicerContext) -> str | None:
        s = self.s
        caller = _peer_fingerprint(context)
        if s.allow is not None and caller not in s.allow:
            why = (
                f"node {s.name!r} does not accept the caller's certificate "
                f"(sha256 {caller or 'none'}); it accepts {len(s.allow)} fingerprint(s)"
            )
            client = dict(context.invocation_metadata() or ()).get(CLIENT_ID, "")
            s.refuse("(connection)", caller, client, "PermissionDenied", why)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
        return caller

    def _serve(self, key: tuple[str, str], request: pb.Envelope, caller: str | None):
        s = self.s
        # One request at a time: a party's state is not shared between threads (and the
        # coordinator never overlaps calls to one party anyway).
        with s.lock:
            # A retried request (same client, same sequence number) gets the reply it already
            # had: a step is never applied twice because a connection dropped.
            if key[1] and s.last is not None and s.last[0] == key:
                return s.last[1]
            incoming = Incoming(
                request.type, request.ByteSize(), lambda check: from_envelope(request, check)
            )
            reply = answer_envelope(s.handler, incoming, Caller(caller, key[0]))
            s.last = (key, reply)
            return reply


def _peer_fingerprint(context: grpc.ServicerContext) -> str | None:
    pems = context.auth_context().get("x509_pem_cert")
    return _fingerprint(pems[0]) if pems else None


@functools.lru_cache(maxsize=64)
def _fingerprint(pem: bytes) -> str:
    return fingerprint(pem)  # parsing a certificate on every call would cost more than the call


class PartyServer:
    """Serves one party (any protocol handler) on ``listen``.

    With ``tls``, callers must present a certificate from the mesh CA whose SHA-256
    fingerprint is in ``allow``. Plaintext needs ``insecure=True`` and a loopback address.
    gRPC itself refuses a request larger than ``max_message`` bytes before anything of it
    is held (RESOURCE_EXHAUSTED); what the node does with the rest is the handler's call.

    The standard gRPC health service (``grpc.health.v1.Health``) answers on ``listen``
    (under the same mutual TLS: any certificate of the mesh CA may ask) and, with
    ``health_listen``, on a second, plaintext port that serves nothing else: kubelet's
    gRPC probes speak no TLS. A health answer says SERVING or NOT_SERVING and nothing more,
    so probes are not written to the access log.
    """

    def __init__(
        self,
        handler: Handler,
        listen: str,
        *,
        name: str,
        tls: TlsFiles | None,
        allow: list[str] | None = None,
        insecure: bool = False,
        workers: int = 8,
        max_message: int = DEFAULT_MAX_MESSAGE,
        health_listen: str | None = None,
    ) -> None:
        if tls is None and not insecure:
            raise ConfigError(f"node {name!r}: no TLS files given and plaintext not asked for")
        if tls is None and not is_loopback(listen):
            raise ConfigError(
                f"node {name!r}: plaintext is allowed on loopback only, not on {listen}",
                hint="give the node its certificate, key and the mesh CA",
            )
        if tls is not None and not allow:
            raise ConfigError(
                f"node {name!r}: with TLS, list the caller certificate fingerprints it accepts",
                hint="see fingerprints.json written by `splitmesh certs init`",
            )
        self.handler, self.name, self.listen = handler, name, listen
        self.allow = {a.lower().replace(":", "") for a in allow} if tls is not None else None
        self.last: tuple[tuple[str, str], pb.Envelope] | None = None
        self._creds = None
        if tls is not None:
            ca, cert, key = tls.read()
            self._creds = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=ca, require_client_auth=True
            )
        self.lock = threading.Lock()
        options = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", int(max_message)),
            *OWN_PORT,
        ]
        hook = getattr(handler, "undelivered", None)

        def report(session: str) -> None:
            if hook is not None:
                with self.lock:  # the handler serves one thing at a time, this included
                    hook(session)

        self.report = report
        self.arrivals = _Arrivals(report)
        refused_hook = getattr(handler, "refused", None)

        def refuse(what: str, caller: str | None, client: str, kind: str, why: str) -> None:
            """A call turned away before the handler saw it: the handler logs it all the
            same (a node's access log holds every call, refused ones first of all)."""
            if refused_hook is not None:
                with self.lock:
                    refused_hook(what, Caller(caller, client), kind, why)

        self.refuse = refuse
        # a Session holds a worker for its life: room for the coordinator's stream, a
        # replacement stream while the old one winds down, probes and one-off calls; two
        # workers are never held by streams, and no caller holds more than half
        self.sessions = _Sessions(per_caller=max(1, workers // 2), total=max(1, workers - 2))
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            options=options,
            interceptors=[self.arrivals],
        )
        pb_grpc.add_PartyServicer_to_server(_Servicer(self), self._server)
        self.health = health.HealthServicer()  # answers SERVICE_UNKNOWN until start()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = _bind(self._server, listen, name, self._creds)
        self._probes, self.health_port = None, None
        if health_listen is not None:
            self._probes = grpc.server(futures.ThreadPoolExecutor(max_workers=1), options=OWN_PORT)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._probes)
            self.health_port = _bind(self._probes, health_listen, name, None)

    def start(self) -> PartyServer:
        self._server.start()
        if self._probes is not None:
            self._probes.start()
        for service in ("", PARTY_SERVICE):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float | None = 1.0) -> None:
        self.health.enter_graceful_shutdown()  # probes see NOT_SERVING while calls finish
        self._server.stop(grace).wait()
        if self._probes is not None:
            self._probes.stop(None).wait()
        self.arrivals.close()


def _bind(server: grpc.Server, listen: str, name: str, creds) -> int:
    """Listen on ``listen``; a TransportError naming the node and address otherwise."""
    try:
        if creds is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, creds)
    except RuntimeError as exc:
        raise TransportError(f"node {name!r} {CANNOT_LISTEN} {listen}: {exc}") from exc
    if not port:
        raise TransportError(f"node {name!r} {CANNOT_LISTEN} {listen} (port in use?)")
    return port
