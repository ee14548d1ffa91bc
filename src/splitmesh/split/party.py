"""What every party shares: dispatch of messages to ``on_<Type>`` methods."""

from __future__ import annotations

import re

from splitmesh.errors import ProtocolError
from splitmesh.transport.messages import Message


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Party:
    """A protocol endpoint. Subclasses define ``on_<snake_case message type>(msg) -> reply``."""

    role = "party"

    def __init__(self, name: str) -> None:
        self.name = name

    def handle(self, msg: Message) -> Message:
        method = getattr(self, f"on_{_snake(type(msg).__name__)}", None)
        if method is None:
            raise ProtocolError(
                f"{self.role} {self.name!r} does not accept {type(msg).__name__} messages"
            )
        return method(msg)
