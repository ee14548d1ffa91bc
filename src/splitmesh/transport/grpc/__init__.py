"""The step protocol over gRPC with mutual TLS. The only package that imports grpc."""

from splitmesh.transport.grpc.client import Endpoint, GrpcTransport
from splitmesh.transport.grpc.server import PartyServer
from splitmesh.transport.grpc.tls import TlsFiles, create_certificates, fingerprint

__all__ = [
    "Endpoint",
    "GrpcTransport",
    "PartyServer",
    "TlsFiles",
    "create_certificates",
    "fingerprint",
]
