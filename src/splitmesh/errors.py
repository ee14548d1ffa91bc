"""The error table. Every error splitmesh raises on purpose derives from SplitmeshError
and is defined here, each with its own exit code; what every gRPC status means to a
caller is here too (``GRPC_STATUS``).

The CLI prints ``Name: message`` plus a hint and exits with the class's ``exit_code``;
it never shows a traceback for these.
"""

from __future__ import annotations

import re


class SplitmeshError(Exception):
    """Base of every deliberate splitmesh error."""

    exit_code = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(SplitmeshError):
    """A parameter or configuration value is invalid."""

    exit_code = 2


class DataError(SplitmeshError):
    """An input table is malformed; the message names the file, column and row."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        column: str | None = None,
        row: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = []
        if path is not None:
            where.append(f"file {path}")
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message, hint=hint)
        self.path, self.column, self.row = path, column, row


class ProtocolError(SplitmeshError):
    """A message was malformed, unexpected, or forbidden by a party's role."""

    exit_code = 4


class PartyError(SplitmeshError):
    """A party failed while serving a call; names the party and the call."""

    exit_code = 5

    def __init__(self, party: str, call: str, message: str, *, kind: str = "Error") -> None:
        super().__init__(f"party {party!r} failed on {call}: {kind}: {message}")
        self.party, self.call, self.kind, self.remote_message = party, call, kind, message
        # a party's own deliberate error (its contract refused the data, say) exits as that
        # error would where the party runs, with its hint
        known = _error_class(kind)
        if known is not None and known is not PartyError:
            self.exit_code = known.exit_code
            if known.hint is not None:
                self.hint = known.hint


class TransportError(SplitmeshError):
    """A message could not be delivered to a party."""

    exit_code = 6


class NotFittedError(SplitmeshError):
    """A model or party was used before it was set up or trained."""

    exit_code = 7


class NodeUnreachableError(TransportError):
    """A node did not answer (down, hung past its deadline, or refused our certificate)."""

    def __init__(
        self, party: str, call: str, address: str, reason: str, *, hint: str | None = None
    ) -> None:
        super().__init__(f"node {party!r} at {address} did not answer {call}: {reason}", hint=hint)
        self.party, self.call, self.address, self.reason = party, call, address, reason


class AuditError(SplitmeshError):
    """The audit log does not verify, or cannot be written safely; names file and line."""

    exit_code = 9


class PolicyError(SplitmeshError):
    """The policy forbids what was asked; the message names the rule (and the node, when a
    node's own copy of the policy refused)."""

    exit_code = 10

    def __init__(self, rule: str, reason: str, *, party: str | None = None) -> None:
        where = f"node {party!r}: " if party else ""
        super().__init__(f"{where}policy rule '{rule}' refuses: {reason}")
        self.rule, self.reason, self.party = rule, reason, party

    @classmethod
    def from_remote(cls, party: str, detail: str) -> PolicyError:
        """The refusal a node sent back (``policy rule 'r' refuses: reason``)."""
        match = re.match(r"(?:node '[^']*': )?policy rule '([^']*)' refuses: (.*)", detail, re.S)
        rule, reason = match.groups() if match else ("unknown", detail)
        return cls(rule, reason, party=party)


class RunInterrupted(SplitmeshError):
    """Training stopped on a party's failure; the last consistent checkpoint is kept."""

    exit_code = 8

    def __init__(self, cause: str, checkpoint: dict | None) -> None:
        if checkpoint:
            saved = (
                f"every party holds a consistent checkpoint of epoch {checkpoint['epoch']} "
                f"(step {checkpoint['step']})"
            )
            hint = "bring the node back, then run the same command with --resume"
        else:
            saved = "there is no checkpoint to resume from"
            hint = "bring the node back and run again (with --out, runs checkpoint every epoch)"
        super().__init__(f"training stopped: {cause}; {saved}", hint=hint)
        self.checkpoint = checkpoint


class ContractError(SplitmeshError):
    """A contract is malformed, or data breaks it; the message names contract and column."""

    exit_code = 11
    hint = (
        "fix the data, or change what the contract declares and publish it as a new version "
        "(splitmesh product init / product validate); ranges refuse data only where the "
        "domain declared them (logicalTypeOptions)"
    )


class CatalogError(SplitmeshError):
    """The catalog cannot be opened, or holds no such run or product."""

    exit_code = 12


class TrackingError(SplitmeshError):
    """MLflow or OpenLineage could not take what a run sent (or is misconfigured)."""

    exit_code = 13


class Stopped(SplitmeshError):
    """The user stopped the command (Ctrl-C); what was written is consistent."""

    exit_code = 130  # the shell's code for a SIGINT

    def __init__(self) -> None:
        super().__init__(
            "stopped by Ctrl-C; checkpoints, catalog and audit log are as of the last finished "
            "epoch",
            hint="run the same command with --resume to continue from there",
        )


def error_table() -> dict[int, type[SplitmeshError]]:
    """Exit code -> the class that defines it (a subclass may share its parent's)."""
    out, todo = {}, [SplitmeshError]
    while todo:
        cls = todo.pop()
        if "exit_code" in vars(cls):
            out.setdefault(cls.exit_code, cls)
        todo += cls.__subclasses__()
    return dict(sorted(out.items()))


# Why a gRPC call ended without a reply, by status: a call to a node that fails becomes a
# NodeUnreachableError naming the party, the call, the address and this reason. (A node
# that refuses a request answers it: those refusals arrive as replies, not statuses.)
GRPC_STATUS: dict[str, str] = {
    "CANCELLED": "the call was cancelled before the node answered",
    "UNKNOWN": "the node failed without saying why",
    "INVALID_ARGUMENT": "it refused the request as malformed",
    "DEADLINE_EXCEEDED": "no reply within the deadline (node hung or overloaded)",
    "NOT_FOUND": "no splitmesh node at this address",
    "ALREADY_EXISTS": "it refused the call as a repeat",
    "PERMISSION_DENIED": "it refused our certificate",
    "RESOURCE_EXHAUSTED": "it refused the request as over one of its limits (message too "
    "large, or too many open sessions)",
    "FAILED_PRECONDITION": "it is not ready for this call",
    "ABORTED": "it aborted the call",
    "OUT_OF_RANGE": "it refused a value out of range",
    "UNIMPLEMENTED": "it does not serve the splitmesh protocol (another service there?)",
    "INTERNAL": "the node or its gRPC runtime failed internally",
    "UNAVAILABLE": "unavailable (not listening, or gone)",
    "DATA_LOSS": "the message was corrupted in transit",
    "UNAUTHENTICATED": "it could not authenticate us (TLS)",
}


def _error_class(name: str) -> type[SplitmeshError] | None:
    """The error class of this table called ``name``, if any."""
    todo = [SplitmeshError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name:
            return cls
        todo += cls.__subclasses__()
    return None
