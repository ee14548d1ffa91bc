"""The audit log finds an edited, deleted, reordered or truncated record, and a crash
never leaves a half-written one behind."""

import json

import pytest

from splitmesh.mesh.audit import AuditError, AuditLog, verify
from tests.test_cli import splitmesh


def _log(tmp_path, n=5):
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append("policy.rule", result="allow", reason=f"rule {i}", inputs={"i": i})
    return log.path


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def test_an_intact_log_verifies(tmp_path):
    path = _log(tmp_path)
    assert verify(path) == 5
    rec = json.loads(_lines(path)[2])
    assert {"decision_id", "time", "policy_hash", "input", "result", "reason", "prev"} <= set(rec)


def test_an_edited_record_is_named(tmp_path):
    path = _log(tmp_path)
    lines = _lines(path)
    lines[3] = lines[3].replace('"allow"', '"refuse"')
    path.write_text("".join(lines))
    with pytest.raises(AuditError, match="line 4: record 3 was edited"):
        verify(path)


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


def test_a_truncated_log_is_found_through_its_head(tmp_path):
    path = _log(tmp_path)
    path.write_text("".join(_lines(path)[:3]))
    with pytest.raises(AuditError, match="ends at record 2, its head says record 4"):
        verify(path)


def test_a_torn_last_line_is_found_then_cut_and_recorded_on_reopen(tmp_path):
    path = _log(tmp_path)
    with open(path, "a") as f:
        f.write('{"seq": 5, "half')  # a crash in the middle of a write
    with pytest.raises(AuditError, match="record 5 is half-written"):
        verify(path)
    AuditLog(path)  # the next writer cuts the torn line and says so
    assert verify(path) == 6
    assert json.loads(_lines(path)[-1])["event"] == "audit.recovered"


def test_cli_audit_verify_exits_non_zero_naming_the_record(tmp_path):
    path = _log(tmp_path)
    assert splitmesh("audit", "verify", str(path)).returncode == 0
    lines = _lines(path)
    path.write_text("".join(lines[:1] + lines[2:]))
    p = splitmesh("audit", "verify", str(path))
    assert p.returncode != 0 and "record 2 where record 1 was expected" in p.stderr
