"""The append-only audit log: one JSON record per line, each holding the previous
record's hash, so that an edited, deleted, reordered or truncated record is found.

Appends are one ``write`` of a whole line on an O_APPEND descriptor, then fsync; a
sidecar ``<log>.head`` (written atomically after each append) holds the last record's
number and hash, which is what exposes a log cut short. A torn last line (a crash in the
middle of a write) is cut off, and recorded, the next time the log is opened.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from splitmesh.errors import SplitmeshError
from splitmesh.io import atomic_write_json

GENESIS = "0" * 64


class AuditError(SplitmeshError):
    """The audit log does not verify; the message names the first bad record."""

    exit_code = 9


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


class AuditLog:
    """Appends hash-chained records to ``path`` (created with its folder if needed)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        self._seq, self._prev = 0, GENESIS
        torn = self._recover()
        if torn:
            self.append("audit.recovered", result="ok", reason=f"cut a torn last line ({torn} B)")

    def _recover(self) -> int:
        """Cut a half-written last line; position after the last whole record."""
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        torn = len(data) - len(whole)
        if torn:
            with open(self.path, "r+b") as f:
                f.truncate(len(whole))
                os.fsync(f.fileno())
        lines = whole.splitlines()
        if lines:
            last = json.loads(lines[-1])
            self._seq, self._prev = last["seq"] + 1, last["hash"]
        return torn

    def append(
        self,
        event: str,
        *,
        result: str,
        reason: str = "",
        policy_hash: str | None = None,
        inputs: dict[str, Any] | None = None,
        decision_id: str | None = None,
    ) -> dict[str, Any]:
        """One record: what was decided or happened, on what, under which policy, why."""
        record = {
            "seq": self._seq,
            "decision_id": decision_id or uuid.uuid4().hex,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "event": event,
            "policy_hash": policy_hash,
            "input": inputs or {},
            "result": result,
            "reason": reason,
            "prev": self._prev,
        }
        record["hash"] = record_hash(record)
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        atomic_write_json(_head_path(self.path), {"seq": record["seq"], "hash": record["hash"]})
        self._seq, self._prev = self._seq + 1, record["hash"]
        return record


def verify(path: str | Path) -> int:
    """Check the whole chain; the number of records, or AuditError naming the first bad one."""
    path = Path(path)
    if not path.is_file():
        raise AuditError(f"audit log {path}: no such file")
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        n = data.count(b"\n")
        raise AuditError(f"audit log {path}: record {n} is half-written (the line is cut)")
    prev, seq = GENESIS, 0
    for i, raw in enumerate(data.splitlines()):
        where = f"audit log {path}, line {i + 1}"
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            raise AuditError(f"{where}: not a JSON record") from None
        if rec.get("seq") != seq:
            raise AuditError(
                f"{where}: record {rec.get('seq')} where record {seq} was expected "
                "(a record was deleted or moved)"
            )
        if rec.get("prev") != prev:
            raise AuditError(f"{where}: record {seq} does not follow record {seq - 1}'s hash")
        if record_hash(rec) != rec.get("hash"):
            raise AuditError(f"{where}: record {seq} was edited (its hash does not match)")
        prev, seq = rec["hash"], seq + 1
    head = _head_path(path)
    if head.is_file():
        h = json.loads(head.read_text())
        if h["seq"] != seq - 1 or h["hash"] != prev:
            raise AuditError(
                f"audit log {path}: the log ends at record {seq - 1}, its head says record "
                f"{h['seq']}: records were cut off the end"
            )
    return seq
