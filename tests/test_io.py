"""Atomic writes: whole files only, readable as the umask allows unless private."""

import os
import stat

from splitmesh import io


def test_published_files_follow_the_umask_and_private_ones_stay_the_owners(tmp_path):
    io.atomic_write_text(tmp_path / "report.md", "# r\n")
    io.atomic_write_bytes(tmp_path / "ckpt.pt", b"w", private=True)
    mode = stat.S_IMODE(os.stat(tmp_path / "report.md").st_mode)
    assert mode == 0o666 & ~io._UMASK and mode & stat.S_IRGRP  # umask 022: 0644
    assert stat.S_IMODE(os.stat(tmp_path / "ckpt.pt").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers
