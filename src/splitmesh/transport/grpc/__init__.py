"""The step protocol over gRPC with mutual TLS. The only package that imports grpc.

Its names load on first use: the generated protobuf messages (``splitmesh_pb2``, the wire
format of every transport) load without grpc.
"""

from importlib import import_module

_WHERE = {
    "Endpoint": "client",
    "GrpcTransport": "client",
    "PartyServer": "server",
    "TlsFiles": "tls",
    "wait_serving": "health",
    "create_certificates": "tls",
    "fingerprint": "tls",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
