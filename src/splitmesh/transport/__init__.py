"""How messages travel between parties. Knows messages and bytes, never models or data."""

from splitmesh.transport.base import Transport, WireStats
from splitmesh.transport.local import LocalTransport

__all__ = ["LocalTransport", "Transport", "WireStats"]
