"""Writing files so that a crash never leaves one half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

# the process's umask, read once: a published file gets the permissions open() would give
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def splitmesh_home() -> Path:
    """The user's splitmesh folder: ``$SPLITMESH_HOME``, default ``~/.splitmesh``."""
    return Path(os.environ.get("SPLITMESH_HOME") or Path.home() / ".splitmesh")


def atomic_write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.
    ``private``: owner-only (0600: keys, checkpoints); else as the umask allows, so that
    reports, contracts and models are readable by the team that publishes them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if not private:  # mkstemp creates 0600
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_yaml(path: str | Path, obj: Any) -> None:
    """``obj`` as YAML, keys in the order given."""
    import yaml

    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))
