"""Peak memory, as every run reports it per process."""

from __future__ import annotations

from tests.conftest import fresh_python


def test_peak_rss_follows_what_the_process_touched():
    code = (
        "from splitmesh.memory import peak_rss_mb\n"
        "before = peak_rss_mb()\n"
        # more than the peak so far, which may be the parent's when it forked (Linux)
        "block = bytearray(int((before + 300) * 2**20))  # zero-filled: every page touched\n"
        "print(before, peak_rss_mb())\n"
    )
    before, after = map(float, fresh_python(code).split())
    assert before > 1
    assert after - before > 250
