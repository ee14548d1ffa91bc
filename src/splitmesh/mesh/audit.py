"""The append-only audit log: one JSON record per line, each holding the previous
record's hash, so that an edited, deleted, reordered or truncated record is found.

Appends are one ``write`` of a whole line on an O_APPEND descriptor, under an exclusive
``flock`` of the log: a writer first takes in what other processes appended since its own
last record, so several writers (two commands on one governance log) keep one chain. A
write that comes out short (a full disk) is undone before the error is raised, and a torn
line that a writer killed mid-write left is cut by the next writer (and recorded). A sidecar
``<log>.head``, written atomically and **signed** by the writing party's key, holds the
number and hash of the last record the writer made durable (fsync): rewriting the chain
or cutting records the head covers needs that key. The head is required once the log has
records. Records a writer appends on a hot path (a node's access log, one line per call)
are made durable at the next control record, within a second, or when the writer closes.

When a log is opened for writing, what a crash can leave is repaired and what an attacker
can do is recorded, never laundered: a torn last line is cut; records the head covered
that are gone (the log cut short, the head missing) are an ``audit.loss`` record, which
``verify`` reports (non-zero exit) from then on. An edited, reordered or garbage record,
or a head that is not signed by the writer, refuses the log (AuditError naming the line).

Limit: someone holding an older signed head of the same log could roll the log back to
it; comparing the head with a copy kept elsewhere (the catalog, a run's report) shows it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from splitmesh.errors import AuditError
from splitmesh.io import atomic_write_json
from splitmesh.transport.identity import Signer, local_signer, public_fingerprint, verify_bytes

GENESIS = "0" * 64
LOSS = "audit.loss"
_FIELDS = ("seq", "decision_id", "time", "event", "result", "prev", "hash")
_SYNC_EVERY_S = 1.0

__all__ = ["AuditError", "AuditLog", "record_hash", "verify"]


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _head_bytes(seq: int, digest: str) -> bytes:
    return f"splitmesh-audit-head:{seq}:{digest}".encode()


def _records(path: Path, data: bytes) -> list[dict[str, Any]]:
    """Every whole line as a checked record of an unbroken chain; AuditError names the
    first line that is not."""
    out: list[dict[str, Any]] = []
    prev = GENESIS
    for i, raw in enumerate(data.splitlines()):
        where = f"audit log {path}, line {i + 1}"
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AuditError(f"{where}: not a JSON record") from None
        if not isinstance(rec, dict) or any(f not in rec for f in _FIELDS):
            raise AuditError(f"{where}: not an audit record (a JSON object with {_FIELDS})")
        seq = len(out)
        if rec["seq"] != seq:
            raise AuditError(
                f"{where}: record {rec['seq']!r} where record {seq} was expected "
                "(a record was deleted or moved)"
            )
        if rec["prev"] != prev:
            raise AuditError(f"{where}: record {seq} does not follow record {seq - 1}'s hash")
        if record_hash(rec) != rec["hash"]:
            raise AuditError(f"{where}: record {seq} was edited (its hash does not match)")
        prev = rec["hash"]
        out.append(rec)
    return out


def _read_head(path: Path) -> dict[str, Any] | None:
    """The signed head, checked against its own signature; None when there is none."""
    head = _head_path(path)
    if not head.is_file():
        return None
    try:
        h = json.loads(head.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise AuditError(f"audit log {path}: its head {head.name} is not JSON") from None
    ok = (
        isinstance(h, dict)
        and isinstance(h.get("seq"), int)
        and h["seq"] >= 0
        and isinstance(h.get("hash"), str)
        and isinstance(h.get("signer"), str)
        and isinstance(h.get("signature"), str)
    )
    if not ok:
        raise AuditError(f"audit log {path}: its head {head.name} is malformed")
    try:
        signature = bytes.fromhex(h["signature"])
    except ValueError:
        signature = b""
    if not verify_bytes(h["signer"], _head_bytes(h["seq"], h["hash"]), signature):
        raise AuditError(
            f"audit log {path}: its head {head.name} is not signed by the key it names "
            "(forged or edited)"
        )
    return h


class AuditLog:
    """Appends hash-chained records to ``path`` (created with its folder if needed).

    ``signer``: the key that signs the head (a node's certificate key, mesh/identity.py);
    default: this user's local key.
    """

    def __init__(self, path: str | Path, *, signer: Signer | None = None) -> None:
        self.path = Path(path)
        self.signer = signer or local_signer()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        self._seq, self._prev, self._end = 0, GENESIS, 0
        self._dirty, self._synced = False, time.monotonic()
        with self._locked():
            events = self._recover()
            self._end = self.path.stat().st_size
        for event, reason in events:
            self.append(event, result="error" if event == LOSS else "ok", reason=reason)

    @contextlib.contextmanager
    def _locked(self):
        """The log to itself, against other processes appending to it (two commands
        writing one governance log, say): an exclusive lock while a record is written,
        and what the others appended since this writer's last record read first, so
        every record chains to the one before it in the file."""
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # let go when the file is closed
            yield fd
        finally:
            os.close(fd)

    def _catch_up(self, fd: int) -> int:
        """Take in the records other writers appended since this one's last; the size of
        a torn line one of them left (cut here), 0 when none."""
        size = os.fstat(fd).st_size
        if size == self._end:
            return 0
        if size < self._end:
            raise AuditError(f"audit log {self.path} was cut while open ({size} B < {self._end})")
        theirs = os.pread(fd, size - self._end, self._end)
        whole = theirs[: theirs.rfind(b"\n") + 1]
        try:
            records = [json.loads(line) for line in whole.splitlines()]
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AuditError(
                f"audit log {self.path}: another writer left a malformed record"
            ) from None
        for rec in records:
            if (
                not isinstance(rec, dict)
                or rec.get("seq") != self._seq
                or rec.get("prev") != self._prev
            ):
                seq = rec.get("seq") if isinstance(rec, dict) else None
                raise AuditError(
                    f"audit log {self.path}: record {seq} from another writer does "
                    f"not follow record {self._seq - 1}"
                )
            self._seq, self._prev = self._seq + 1, rec["hash"]
        self._end += len(whole)
        torn = size - self._end
        if torn:
            # every write happens under this lock, so no writer is in the middle of one:
            # these bytes are what a writer that died mid-write left, never a record
            os.ftruncate(fd, self._end)
            os.fsync(fd)
        return torn

    @property
    def signer_fingerprint(self) -> str:
        return public_fingerprint(self.signer.public_pem)

    def _recover(self) -> list[tuple[str, str]]:
        """Check the log and its head; cut a torn last line; what must be recorded."""
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        records = _records(self.path, whole)
        head = _read_head(self.path)
        if head is not None and head["signer"].strip() != self.signer.public_pem.strip():
            raise AuditError(
                f"audit log {self.path} is signed by key sha256 "
                f"{public_fingerprint(head['signer'])[:16]}, not by this writer's "
                f"({self.signer_fingerprint[:16]})",
                hint="each party writes its own audit log; move this one aside to start anew",
            )
        events = []
        last = records[-1]["seq"] if records else -1
        if (
            head is not None
            and last >= head["seq"]
            and records[head["seq"]]["hash"] != head["hash"]
        ):
            raise AuditError(
                f"audit log {self.path}, line {head['seq'] + 1}: record {head['seq']} is "
                "not the one the signed head names (the chain was rewritten)"
            )
        torn = len(data) - len(whole)
        if torn:
            with open(self.path, "r+b") as f:
                f.truncate(len(whole))
                os.fsync(f.fileno())
        if head is not None and last < head["seq"]:
            events.append(
                (
                    LOSS,
                    f"records {last + 1}..{head['seq']} are missing: the signed head covers "
                    f"record {head['seq']}, the log ends at record {last}"
                    + (f" and a torn line of {torn} B" if torn else ""),
                )
            )
        elif torn:
            events.append(("audit.recovered", f"cut a torn last line ({torn} B) past the head"))
        if head is None and records:
            events.append(
                (LOSS, f"the signed head is missing: records after record {last} may be lost")
            )
        if records:
            self._seq, self._prev = last + 1, records[-1]["hash"]
        return events

    def append(
        self,
        event: str,
        *,
        result: str,
        reason: str = "",
        policy_hash: str | None = None,
        inputs: dict[str, Any] | None = None,
        decision_id: str | None = None,
        sync: bool = True,
    ) -> dict[str, Any]:
        """One record: what was decided or happened, on what, under which policy, why.

        ``sync=False`` (hot paths) leaves making it durable to the next synced append, at
        most a second later, or ``sync()``."""
        with self._locked() as fd:
            self._take_in(fd)  # the others' records first: this one follows theirs
            record = self._write(
                fd, event, result, reason, policy_hash, inputs, decision_id=decision_id
            )
            if sync or time.monotonic() - self._synced > _SYNC_EVERY_S:
                os.fsync(fd)
                self._write_head()
            return record

    def _write(
        self,
        fd: int,
        event: str,
        result: str,
        reason: str = "",
        policy_hash: str | None = None,
        inputs: dict[str, Any] | None = None,
        *,
        decision_id: str | None = None,
    ) -> dict[str, Any]:
        """Write one record at the end of the log (its lock held), whole or not at all."""
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
        try:
            written = os.write(fd, line)
        except OSError as exc:
            written, error = -1, exc.strerror
        else:
            error = f"{written} of {len(line)} bytes written"
        if written != len(line):
            # a short write (a full disk) must not leave half a record for the next one to
            # follow: the log goes back to where it was, and the caller hears why
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._end)
            raise AuditError(
                f"audit log {self.path}: could not append record {self._seq} ({error}); "
                "the log is as it was before"
            )
        self._end += len(line)
        self._seq, self._prev = self._seq + 1, record["hash"]
        self._dirty = True
        return record

    def sync(self) -> None:
        """Make every record appended so far durable and covered by the signed head."""
        if not self._dirty:
            return
        with self._locked() as fd:
            self._take_in(fd)
            os.fsync(fd)
            self._write_head()

    def _take_in(self, fd: int) -> None:
        """Catch up with the other writers (lock held); a torn line one of them left is
        cut there, and recorded here."""
        torn = self._catch_up(fd)
        if torn:
            why = f"cut a torn last line ({torn} B) that another writer left"
            self._write(fd, "audit.recovered", "ok", why)

    def _write_head(self) -> None:
        seq = self._seq - 1
        signature = self.signer.sign_bytes(_head_bytes(seq, self._prev)).hex()
        atomic_write_json(
            _head_path(self.path),
            {
                "seq": seq,
                "hash": self._prev,
                "signer": self.signer.public_pem,
                "signature": signature,
            },
        )
        self._dirty, self._synced = False, time.monotonic()


def verify(path: str | Path, *, signer: str | None = None) -> dict[str, Any]:
    """Check the whole chain and its signed head: records, the signer's key fingerprint and
    how many records come after the head (appended but not yet covered by a signature), or
    AuditError naming the first bad line. ``signer``: the key fingerprint (prefix) that
    must have signed it. A recorded loss fails too."""
    path = Path(path)
    if not path.is_file():
        raise AuditError(f"audit log {path}: no such file")
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        n = data.count(b"\n")
        raise AuditError(f"audit log {path}: record {n} is half-written (the line is cut)")
    records = _records(path, data)
    head = _read_head(path)
    if head is None:
        if records:
            raise AuditError(f"audit log {path}: its signed head is missing (records may be cut)")
        return {"records": 0, "signer": None, "unsigned": 0}
    who = public_fingerprint(head["signer"])
    if signer is not None and not who.startswith(signer.lower().replace(":", "")):
        raise AuditError(f"audit log {path} is signed by key sha256 {who[:16]}, not {signer}")
    last = len(records) - 1
    if last < head["seq"]:
        raise AuditError(
            f"audit log {path}: the log ends at record {last}, its signed head says record "
            f"{head['seq']}: records were cut off the end"
        )
    if head["seq"] >= 0 and records[head["seq"]]["hash"] != head["hash"]:
        raise AuditError(
            f"audit log {path}, line {head['seq'] + 1}: record {head['seq']} is not the one "
            "the signed head names (the chain was rewritten)"
        )
    for i, rec in enumerate(records):
        if rec["event"] == LOSS:
            raise AuditError(
                f"audit log {path}, line {i + 1}: a loss was recorded: {rec['reason']}"
            )
    return {"records": len(records), "signer": who, "unsigned": last - head["seq"]}
