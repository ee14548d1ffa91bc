"""What a node serves: one run at a time, each message in its phase, every call logged.

A node treats every request as hostile, the coordinator's included (DESIGN.md, zero
trust). It serves only the messages its parties' capabilities name in the protocol table
(split/protocol.py), each in its phase; one run at a time, bound to the session that
opened it; tensors only within the run's bounds (checked before they are allocated);
and it writes every call it serves to its access log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from splitmesh.data.alignment import POINT
from splitmesh.errors import ProtocolError
from splitmesh.memory import peak_rss_mb
from splitmesh.split import protocol as proto
from splitmesh.split.limits import Limits
from splitmesh.split.party import RUN_ID, Party
from splitmesh.split.refusals import RefusalBudget, Suppressed
from splitmesh.transport.base import Caller, Incoming
from splitmesh.transport.codec import wire_dtype
from splitmesh.transport.local import LOCAL, error_reply
from splitmesh.transport.messages import Ack, Bye, ErrorReply, Hello, Message

# hot messages are logged without waiting for the disk; the log is synced at the next
# control message or within a second (mesh/audit.py)
_HOT = {"Forward", "Backward", "Head", "Scores"}
MAX_ROWS = 2**24  # no batch, however declared, may ask for more rows than this


@dataclasses.dataclass
class Run:
    """The run a node serves: who opened it, where it is, and the bounds of its tensors."""

    id: str
    purpose: str
    mode: str
    client: str
    caller: str | None
    opened: float  # wall clock, for messages
    phase: str
    bounds: dict[str, int | None]
    seen: float = dataclasses.field(default_factory=time.monotonic)


def _since(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


class Node:
    """Holds one party per run; a Hello for a mode it agrees to starts a new one
    (``make_party`` gets the Hello: its mode and purpose).

    ``serves``: the party's capabilities (split/protocol.py). ``guard``: the node's own
    governance check (mesh/policy.PolicyGuard). ``audit``: its access log (mesh/audit.py).
    ``state_dir``: its own folder, where runs it served leave their checkpoints.
    """

    def __init__(
        self,
        name: str,
        make_party: Callable[[Hello], Party],
        *,
        serves: Iterable[str],
        modes: Sequence[str],
        guard: Callable[[Message], None] | None = None,
        audit=None,
        limits: Limits | None = None,
        state_dir: str | Path | None = None,
    ) -> None:
        self.name, self.make_party, self.modes = name, make_party, list(modes)
        self.serves = frozenset(serves)
        self.guard, self.audit, self.limits = guard, audit, limits or Limits()
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.party: Party | None = None
        self.run: Run | None = None
        self._opened: set[str] = set()  # run ids this process has opened
        self._closed = False  # the access log's head is signed: what follows signs it again
        self._closing = threading.Lock()
        self.refusals = RefusalBudget(self.limits.refusals_burst, self.limits.refusals_per_s)

    # -- the wire's entry: decode under the run's bounds, answer, log --------------------------
    def serve(self, incoming: Incoming, caller: Caller) -> Message:
        """A request as it arrived: its reply (or an ErrorReply), and one access-log record."""
        kind, run = incoming.kind, self.run.id if self.run else None
        try:
            if incoming.size > self.limits.max_message_bytes:
                raise ProtocolError(
                    f"node {self.name!r} refuses a {kind} of {incoming.size} bytes: its limit is "
                    f"{self.limits.max_message_bytes} bytes"
                )
            reply = self.handle(incoming.decode(self._check_tensor), caller)
        except Exception as exc:  # a node answers every request, and logs it
            reply = error_reply(exc)
        run = self.run.id if self.run else run
        self._log(kind, caller, run, reply)
        return reply

    def undelivered(self, session: str) -> None:
        """A request the transport refused before it was decoded (larger than the node's
        limit, or given up by its sender): logged all the same."""
        reason = ErrorReply(
            "TransportError",
            "not decoded within seconds of arriving: refused as larger than "
            f"{self.limits.max_message_bytes} bytes, or cancelled by its sender",
        )
        run = self.run.id if self.run else None
        self._log("(not decoded)", Caller(None, session), run, reason)

    def refused(self, what: str, caller: Caller, kind: str, why: str) -> None:
        """A call the transport turned away before decoding it (an unaccepted certificate,
        one session stream too many): logged as refused."""
        run = self.run.id if self.run else None
        self._log(what, caller, run, ErrorReply(kind, why))

    def handle(self, msg: Message, caller: Caller = LOCAL) -> Message:
        kind = type(msg).__name__
        rule = proto.rule_for(msg)
        if rule is None:
            raise ProtocolError(f"node {self.name!r} does not serve {kind} messages")
        if not rule.served_by & self.serves:
            raise ProtocolError(
                f"node {self.name!r} ({', '.join(sorted(self.serves))}) does not serve {kind} "
                f"(served by: {', '.join(sorted(rule.served_by))})"
            )
        if isinstance(msg, Hello):
            return self._open(msg, caller)
        run = self._current(kind, caller)
        if isinstance(msg, Bye):
            if msg.done:  # a finished run needs no checkpoint to resume from
                self.party.forget_run()
            self.run, self.party = None, None
            # its process's peak memory: what a run on this data costs this node to host
            return Ack(info={"closed": run.id, "done": msg.done, "peak_rss_mb": peak_rss_mb()})
        moves = rule.phases(run.purpose)
        if run.phase not in moves:
            where = ", ".join(proto.expected_phases(rule, run.purpose)) or "no phase"
            raise ProtocolError(
                f"node {self.name!r} got {kind} in phase {run.phase!r} of its {run.purpose} run "
                f"{run.id}; {kind} belongs to: {where}"
            )
        if run.purpose == "predict" and getattr(msg, "train", False):
            raise ProtocolError(f"node {self.name!r} only scores in a predict run")
        if self.guard is not None:
            self.guard(msg)
        reply = self.party.handle(msg)
        run.phase, run.seen = moves[run.phase], time.monotonic()
        self._learn_widths(msg, reply)
        return reply

    # -- runs: one at a time, bound to the session that opened it ---------------------------
    def _current(self, kind: str, caller: Caller) -> Run:
        run = self.run
        if run is None or self.party is None:
            raise ProtocolError(f"node {self.name!r} got {kind} but has no open run (Hello first)")
        if caller.client != run.client or caller.fingerprint != run.caller:
            raise ProtocolError(
                f"node {self.name!r} got {kind} from another session than the one that opened "
                f"run {run.id} (since {_since(run.opened)}); it serves one run at a time"
            )
        return run

    def _open(self, msg: Hello, caller: Caller) -> Ack:
        self._check_hello(msg)
        active = self.run
        if active is not None:
            idle = time.monotonic() - active.seen
            reopen = msg.resume and msg.run == active.id
            if not reopen and idle < self.limits.idle_timeout_s:
                raise ProtocolError(
                    f"node {self.name!r} serves run {active.id} (a {active.mode} {active.purpose} "
                    f"run, since {_since(active.opened)}, last call {idle:.0f} s ago); a second "
                    f"run is refused until that one ends or has been idle for "
                    f"{self.limits.idle_timeout_s:g} s"
                )
        if not msg.resume and self._known(msg.run):
            raise ProtocolError(
                f"node {self.name!r} has already served run {msg.run}: a new run needs a fresh id",
                hint="to continue an interrupted run, resume it (--resume)",
            )
        if self.guard is not None:
            self.guard(msg)
        party = self.make_party(msg)
        reply = party.handle(msg)
        phase = proto.ALIGN if proto.KEYS in self.serves else proto.SETUP
        info = dict(reply.info) if isinstance(reply, Ack) else {}
        bounds = self._bounds(msg, info.get("data", {}).get("rows"))
        self.party = party
        self.run = Run(
            msg.run, msg.purpose, msg.mode, caller.client, caller.fingerprint, time.time(), phase,
            bounds,
        )  # fmt: skip
        self._opened.add(msg.run)
        info["run"] = msg.run
        info["max_message_bytes"] = self.limits.max_message_bytes
        return Ack(info=info)

    def _check_hello(self, msg: Hello) -> None:
        if not isinstance(msg.run, str) or not RUN_ID.match(msg.run):
            raise ProtocolError(
                f"node {self.name!r}: a run id is 32 lowercase hex digits, "
                f"got {str(msg.run)[:40]!r}"
            )
        if msg.purpose not in ("train", "predict"):
            raise ProtocolError(f"node {self.name!r}: unknown purpose {str(msg.purpose)[:40]!r}")
        if msg.mode not in self.modes:
            raise ProtocolError(
                f"node {self.name!r} does not take part in {str(msg.mode)[:40]} runs "
                f"(it agrees to: {', '.join(self.modes)})"
            )
        for field in ("batch_size", "min_batch", "eval_batch", "epochs"):
            value = getattr(msg, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProtocolError(f"node {self.name!r}: Hello.{field} must be a positive integer")
        for field in ("batch_size", "eval_batch", "min_batch"):
            if getattr(msg, field) > self.limits.max_batch:
                raise ProtocolError(
                    f"node {self.name!r}: Hello.{field} {getattr(msg, field)} is over its limit "
                    f"of {self.limits.max_batch} rows"
                )
        if not isinstance(msg.resume, bool):
            raise ProtocolError(f"node {self.name!r}: Hello.resume must be true or false")

    def _known(self, run: str) -> bool:
        """Has this node served ``run`` before (in this process, or checkpoints on disk)?"""
        if run in self._opened:
            return True
        return self.state_dir is not None and any(self.state_dir.glob(f"**/runs/{run}"))

    # -- bounds of every tensor, from the run's declared plan and the node's own limits ------
    def _bounds(self, msg: Hello, rows: int | None) -> dict[str, int | None]:
        """``rows``: the party's row count, as its Hello reply reports it."""
        rows = rows if isinstance(rows, int) else None
        cap = self.limits.max_message_bytes
        return {
            "batch": min(max(msg.batch_size + msg.min_batch - 1, msg.eval_batch), MAX_ROWS),
            "rows": rows,
            "rows2": 2 * rows if rows is not None else None,
            "pairs": math.isqrt(cap // 8),
            "bytes": cap,
            "keys": cap // POINT,  # blinded keys in one PSI message
            "point": POINT,
            "signature": 1024,
            "cut": None,  # widths: learned when the run sets them up
            "act": None,
            "any": None,
        }

    def _learn_widths(self, msg: Message, reply: Message) -> None:
        info = reply.info if isinstance(reply, Ack) else {}
        if "cut_width" in info:
            self.run.bounds["cut"] = int(info["cut_width"])
        in_features = getattr(msg, "in_features", None)
        if isinstance(in_features, int):
            self.run.bounds["act"] = in_features

    def _check_tensor(self, kind: str, field: str, dtype: str, shape: tuple[int, ...]) -> None:
        """Refuse a tensor before it is allocated: its shape must fit the message's spec
        under the run's bounds, and no tensor may outgrow the node's message limit."""

        def refuse(why: str) -> ProtocolError:
            return ProtocolError(
                f"node {self.name!r} refuses {kind}.{field} of shape {list(shape)}: {why}"
            )

        wire = wire_dtype(dtype)
        # decoded floats may widen to float32 (int8 on the wire): count 4 bytes each at least
        width = 1 if wire.kind == "u" else max(wire.itemsize, 4)
        if math.prod(shape) * width > self.limits.max_message_bytes:
            raise refuse(f"over its limit of {self.limits.max_message_bytes} bytes")
        rule = proto.TABLE.get(_TYPES.get(kind))
        spec = rule.tensors.get(field) if rule else None
        if spec is None or self.run is None:
            return
        if len(shape) != len(spec):
            raise refuse(f"expected {len(spec)} dimension(s) ({', '.join(spec)})")
        kinds = proto.TENSOR_KINDS.get(field)
        if kinds and wire.kind not in kinds:
            raise refuse(f"dtype {dtype} is not allowed there")
        for size, dim in zip(shape, spec, strict=True):
            bound = self.run.bounds.get(dim)
            if bound is None:
                continue
            if dim in ("cut", "act", "point") and size != bound:
                raise refuse(f"the run's {dim} width is {bound}")
            if size > bound:
                raise refuse(f"at most {bound} along {dim!r} in this run")

    # -- the access log ---------------------------------------------------------------------------
    def _log(self, kind: str, caller: Caller, run: str | None, reply: Message) -> None:
        if self.audit is None:
            return
        refused = isinstance(reply, ErrorReply)
        who = caller.fingerprint or ""
        with self._closing:
            if refused and not self._closed and not self.refusals.admit(who):
                if self.refusals.count(who, f"{kind[:64]}: {reply.kind[:64]}", caller.client):
                    self._log_suppressed(who)  # a long flood: its count so far, durable now
                return
            self._log_suppressed(who)  # what was counted first, in the order it came
            self.audit.append(
                "node.call",
                result="refused" if refused else "ok",
                reason=f"{reply.kind}: {reply.detail}"[:500] if refused else "",
                inputs={
                    "node": self.name,
                    "type": kind[:64],
                    "run": run,
                    "caller": caller.fingerprint,
                    "session": caller.client[:64],
                },
                # after close, a call still finishing on a server thread is signed at once
                sync=self._closed or not (kind in _HOT and not refused),
            )

    def _log_suppressed(self, who: str, entry: Suppressed | None = None) -> None:
        """One record for the refused calls of ``who`` that got none of their own."""
        entry = entry or self.refusals.take(who)
        if entry is None:
            return
        limits = self.limits
        self.audit.append(
            "node.calls_suppressed",
            result="refused",
            reason=(
                f"{entry.count} refused call(s) of this caller past {limits.refusals_burst} "
                f"at {limits.refusals_per_s:g}/s: counted here, not logged one by one"
            ),
            inputs={
                "node": self.name,
                "caller": who or None,
                **entry.summary(),
                "first": _since(entry.first),
                "last": _since(entry.last),
            },
        )

    def close(self) -> None:
        """Flush the access log (the node is stopping). A handler thread of a call that
        the server cut at its stop may still log that call: that record signs the head
        again, so the log never ends in records the signed head does not cover."""
        with self._closing:
            self._closed = True
            if self.audit is not None:
                for who, entry in self.refusals.take_all().items():
                    self._log_suppressed(who, entry)
                self.audit.sync()


_TYPES: dict[str, type[Message]] = {cls.__name__: cls for cls in proto.TABLE}
