"""The audit log finds an edited, deleted, reordered or truncated record, a crash never
leaves a half-written one behind, and a loss is recorded, never laundered."""

import json

import pytest

from splitmesh.mesh.audit import AuditError, AuditLog, record_hash, verify
from splitmesh.transport.identity import Identity, LocalSigner
from tests.test_cli import splitmesh


def _log(tmp_path, n=5, signer=None):
    log = AuditLog(tmp_path / "audit.jsonl", signer=signer)
    for i in range(n):
        log.append("policy.rule", result="allow", reason=f"rule {i}", inputs={"i": i})
    return log.path


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def _head(path):
    return path.with_name(path.name + ".head")


def test_an_intact_log_verifies_with_its_signer(tmp_path):
    path = _log(tmp_path)
    done = verify(path)
    assert done["records"] == 5 and done["unsigned"] == 0
    assert done["signer"] == AuditLog(path).signer_fingerprint
    assert verify(path, signer=done["signer"][:12])["records"] == 5  # a pinned signer
    rec = json.loads(_lines(path)[2])
    assert {"decision_id", "time", "policy_hash", "input", "result", "reason", "prev"} <= set(rec)
    with pytest.raises(AuditError, match="not ffff"):
        verify(path, signer="ffff")


def test_an_edited_record_is_named(tmp_path):
    path = _log(tmp_path)
    lines = _lines(path)
    lines[3] = lines[3].replace('"allow"', '"refuse"')
    path.write_text("".join(lines))
    with pytest.raises(AuditError, match="line 4: record 3 was edited"):
        verify(path)
    with pytest.raises(AuditError, match="line 4: record 3 was edited"):
        AuditLog(path)  # nobody writes on into a tampered log


@pytest.mark.parametrize("how", ["delete", "reorder"])
def test_a_deleted_or_reordered_record_is_named(tmp_path, how):
    path = _log(tmp_path)
    lines = _lines(path)
    if how == "delete":
        del lines[2]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    with pytest.raises(AuditError, match=r"record \d where record \d was expected"):
        verify(path)


def test_a_truncated_log_is_found_through_its_signed_head(tmp_path):
    path = _log(tmp_path)
    path.write_text("".join(_lines(path)[:3]))
    with pytest.raises(AuditError, match="ends at record 2, its signed head says record 4"):
        verify(path)


def test_a_torn_last_line_past_the_head_is_cut_and_recorded_on_reopen(tmp_path):
    path = _log(tmp_path)
    with open(path, "a") as f:
        f.write('{"seq": 5, "half')  # a crash in the middle of a write
    with pytest.raises(AuditError, match="record 5 is half-written"):
        verify(path)
    AuditLog(path)  # the next writer cuts the torn line and says so
    assert verify(path)["records"] == 6
    assert json.loads(_lines(path)[-1])["event"] == "audit.recovered"


def test_a_log_cut_mid_line_is_a_recorded_loss_from_then_on(tmp_path):
    """The attack: cut records the head covers in the middle of a line; the next run must
    not 'recover' it into an intact chain."""
    path = _log(tmp_path, n=8)
    data = path.read_bytes()
    cut = sum(len(line) for line in data.splitlines(keepends=True)[:4]) + 20
    path.write_bytes(data[:cut])  # records 4..7 gone, record 4 torn
    log = AuditLog(path)
    log.append("run.start", result="ok")
    with pytest.raises(AuditError, match=r"a loss was recorded: records 4\.\.7 are missing"):
        verify(path)
    AuditLog(path).append("run.start", result="ok")  # later runs do not launder it
    with pytest.raises(AuditError, match="a loss was recorded"):
        verify(path)


def test_deleting_lines_and_the_head_is_found(tmp_path):
    path = _log(tmp_path)
    path.write_text("".join(_lines(path)[:2]))
    _head(path).unlink()
    with pytest.raises(AuditError, match="signed head is missing"):
        verify(path)
    AuditLog(path).append("run.start", result="ok")
    with pytest.raises(AuditError, match="a loss was recorded: the signed head is missing"):
        verify(path)


def test_a_rewritten_chain_needs_the_key(tmp_path):
    """Recomputing every hash after an edit is not enough: the head is signed."""
    path = _log(tmp_path)
    records = [json.loads(line) for line in _lines(path)]
    records[1]["result"] = "refuse"
    prev = "0" * 64
    for r in records:
        r["prev"] = prev
        r["hash"] = record_hash(r)
        prev = r["hash"]
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    with pytest.raises(AuditError, match="not the one the signed head names"):
        verify(path)
    head = json.loads(_head(path).read_text())
    head["hash"] = prev  # and a head naming the new chain, without the key
    _head(path).write_text(json.dumps(head))
    with pytest.raises(AuditError, match="not signed by the key it names"):
        verify(path)


def test_a_head_signed_by_another_key_is_refused(tmp_path):
    path = _log(tmp_path)
    other = LocalSigner(tmp_path / "other.pem")
    with pytest.raises(AuditError, match=r"is signed by key sha256 .*not by this writer's"):
        AuditLog(path, signer=other)


def test_a_node_key_signs_its_log(tmp_path):
    ident = Identity.ephemeral(["payments"])["payments"]
    path = _log(tmp_path, signer=ident)
    assert verify(path)["records"] == 5


@pytest.mark.parametrize(
    ("garbage", "says"),
    [
        ("[1, 2, 3]\n", "line 6: not an audit record"),
        ("not json\n", "line 6: not a JSON record"),
        ('{"seq": 5}\n', "line 6: not an audit record"),
    ],
)
def test_garbage_lines_are_named_not_tracebacks(tmp_path, garbage, says):
    path = _log(tmp_path)
    with open(path, "a") as f:
        f.write(garbage)
    for check in (verify, AuditLog):
        with pytest.raises(AuditError, match=says):
            check(path)


@pytest.mark.parametrize("head", ["garbage", "[1]", '{"seq": "x"}', ""])
def test_a_garbage_head_is_named(tmp_path, head):
    path = _log(tmp_path)
    _head(path).write_text(head)
    for check in (verify, AuditLog):
        with pytest.raises(AuditError, match=r"its head audit\.jsonl\.head is"):
            check(path)


def test_hot_records_are_durable_at_the_next_sync(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    log.append("node.call", result="ok")
    for _ in range(3):
        log.append("node.call", result="ok", sync=False)
    assert verify(log.path)["unsigned"] == 3  # appended, not yet under the signature
    log.sync()
    assert verify(log.path) == {"records": 4, "signer": log.signer_fingerprint, "unsigned": 0}


def test_cli_audit_verify_exits_non_zero_naming_the_record(tmp_path):
    path = _log(tmp_path)
    ok = splitmesh("audit", "verify", str(path))
    assert ok.returncode == 0 and "chain intact, signed by key sha256" in ok.stdout
    lines = _lines(path)
    path.write_text("".join(lines[:1] + lines[2:]))
    p = splitmesh("audit", "verify", str(path))
    assert p.returncode == 9 and "record 2 where record 1 was expected" in p.stderr
    assert "Traceback" not in p.stderr
    _head(path).write_text("garbage")
    p = splitmesh("audit", "verify", str(path))
    assert p.returncode == 9 and "Traceback" not in p.stderr


def _append_many(path: str, who: str, n: int) -> None:
    log = AuditLog(path)
    for i in range(n):
        log.append("node.call", result="ok", inputs={"who": who, "i": i}, sync=i % 7 == 0)
    log.sync()


def test_processes_appending_to_one_log_keep_one_chain(tmp_path):
    """Two commands writing one governance log, or a log reopened while its writer runs:
    every record chains to the one before it in the file, none is lost."""
    import multiprocessing

    path = tmp_path / "audit.jsonl"
    AuditLog(path).append("start", result="ok")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 150)) for w in "ab"]
    for p in procs:
        p.start()
    _append_many(str(path), "c", 150)  # a third writer, in this process
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    done = verify(path)
    assert done["records"] == 1 + 3 * 150 and done["unsigned"] == 0
    records = [json.loads(line) for line in _lines(path)]
    assert [r["seq"] for r in records] == list(range(len(records)))
    for who in "abc":
        mine = [r["input"]["i"] for r in records if r["input"].get("who") == who]
        assert mine == list(range(150))


def test_a_torn_line_another_writer_left_is_cut_by_the_next_append(tmp_path):
    """A writer killed in the middle of its write leaves half a line; a writer that has the
    log open takes it in at its next append, cuts it and says so, and the chain holds."""
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("run.start", result="ok")
    with open(log.path, "ab") as f:
        f.write(b'{"seq": 1, "decision_id": "dead')  # the other writer died here
    log.append("run.end", result="ok")
    records = [json.loads(line) for line in _lines(log.path)]
    assert [r["event"] for r in records] == ["run.start", "audit.recovered", "run.end"]
    assert "(31 B)" in records[1]["reason"]
    assert verify(log.path) == {"records": 3, "signer": log.signer_fingerprint, "unsigned": 0}
    log.append("node.call", result="ok", sync=False)  # a hot record: no fsync, no head
    with open(log.path, "ab") as f:
        f.write(b'{"seq": 4')  # another one dies; this time a sync finds it
    log.sync()
    assert [json.loads(line)["event"] for line in _lines(log.path)[3:]] == [
        "node.call",
        "audit.recovered",
    ]
    assert verify(log.path)["records"] == 5


@pytest.mark.parametrize("failure", ["short", "error"])
def test_a_failed_write_leaves_the_log_as_it_was(tmp_path, monkeypatch, failure):
    """A full disk: half a record written, or none with an error. The caller hears it, the
    log is as before (no half line for the next record to follow), and later appends chain."""
    import errno
    import os

    from splitmesh.mesh import audit

    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("run.start", result="ok")
    before = log.path.read_bytes()
    real_write = os.write

    def full_disk(fd, data):
        if failure == "short":
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit.os, "write", full_disk)
    said = r"\d+ of \d+ bytes written" if failure == "short" else "No space left on device"
    with pytest.raises(AuditError, match=f"could not append record 1 \\({said}\\)"):
        log.append("run.end", result="ok")
    assert log.path.read_bytes() == before
    monkeypatch.setattr(audit.os, "write", real_write)
    log.append("run.end", result="ok")
    assert [json.loads(line)["seq"] for line in _lines(log.path)] == [0, 1]
    assert verify(log.path)["records"] == 2
