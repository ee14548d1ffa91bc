"""Model and optimizer state in memory (snapshots) and on disk (checkpoints).

A checkpoint file is written whole or not at all (temporary file, fsync, rename), so an
interrupted run leaves the previous checkpoint intact.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from splitmesh.errors import DataError, NotFittedError
from splitmesh.io import atomic_write_bytes, atomic_write_json
from splitmesh.nn.optim import Optimizer

Stateful = dict[str, torch.nn.Module | Optimizer]


def snapshot_states(objs: Stateful) -> dict[str, dict]:
    """Deep copies of every state_dict, so later steps cannot change them."""
    return {k: copy.deepcopy(v.state_dict()) for k, v in objs.items()}


def restore_states(objs: Stateful, saved: dict[str, dict]) -> None:
    for k, v in objs.items():
        v.load_state_dict(saved[k])


def pack_state(objs: Stateful, snapshots: dict[str, dict], **extra: Any) -> dict[str, Any]:
    """What a checkpoint file holds for any learner or party: state, snapshots, torch RNG.

    No copies: ``torch.save`` serializes the live state_dicts as they are when it runs.
    """
    return {
        "state": {k: v.state_dict() for k, v in objs.items()},
        "snapshots": snapshots,
        "rng": torch.get_rng_state(),
        **extra,
    }


def unpack_state(objs: Stateful, payload: dict[str, Any]) -> dict[str, dict]:
    """Load a :func:`pack_state` payload into ``objs``; returns its snapshots."""
    restore_states(objs, payload["state"])
    torch.set_rng_state(payload["rng"])
    return payload["snapshots"]


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue(), private=True)  # a party's own weights


def read_checkpoint(path: Path, who: str) -> dict[str, Any]:
    if not path.is_file():
        raise NotFittedError(
            f"{who} has no checkpoint {path}", hint="run without --resume to start afresh"
        )
    try:
        return torch.load(path, weights_only=True)
    except Exception as exc:  # a damaged file must name itself, not fail deep in torch
        raise DataError(f"checkpoint cannot be read: {exc}", path=str(path)) from exc


_EPOCH_FILE = re.compile(r"^epoch-\d{4,7}\.pt$")


def prune(directory: Path, keep: list[str]) -> None:
    """Delete this folder's epoch checkpoints (files named as ``epoch_tag`` names them, and
    nothing else) whose tags are not in ``keep``."""
    for f in directory.glob("epoch-*.pt"):
        if _EPOCH_FILE.match(f.name) and f.stem not in keep and not f.is_symlink():
            f.unlink(missing_ok=True)


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a)  # the buffer itself: tobytes() would copy it (GBs for a fact table)
    return h.hexdigest()


def digest_rows(*columns: np.ndarray) -> str:
    """``digest(np.stack(columns))`` without the stacked copy."""
    dtype = np.result_type(*columns)
    h = hashlib.sha256()
    h.update(str((dtype.str, (len(columns), *columns[0].shape))).encode())
    for c in columns:
        h.update(np.ascontiguousarray(c, dtype=dtype))
    return h.hexdigest()


def data_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two data fingerprints, in words (empty: the same data)."""
    changes = []
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            if key == "sha256":
                changes.append("content changed (sha256 differs)")
            else:
                changes.append(f"{key}: {saved.get(key)!r} -> {now.get(key)!r}")
    return changes


def check_same_data(who: str, saved: dict[str, Any], now: dict[str, Any]) -> None:
    changes = data_changes(saved, now)
    if changes:
        raise DataError(
            f"{who} holds different data than when the checkpoint was written "
            f"({'; '.join(changes)}); resume refused",
            hint="restart the node on the data it trained on, or run without --resume",
        )


class RunCheckpoints:
    """A learner's own checkpoints of one run, and the manifest that commits them.

    The manifest (``checkpoint.json``) is written last: it names the tag every party has
    saved, so a crash between the parties' writes and the manifest leaves the previous,
    complete checkpoint in force.
    """

    def __init__(self, directory: str | Path, run: str, *, owner: str = "the coordinator") -> None:
        self.directory, self.run, self.owner = Path(directory), run, owner

    @property
    def manifest_path(self) -> Path:
        return self.directory / "checkpoint.json"

    def manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(
                f"checkpoint manifest is not JSON: {exc}", path=str(self.manifest_path)
            ) from exc
        if manifest.get("run") != self.run:
            raise DataError(
                f"checkpoint belongs to run {manifest.get('run')!r}, not {self.run!r}: "
                "the configuration changed since it was written",
                path=str(self.manifest_path),
                hint="resume with the same settings, or run without --resume",
            )
        return manifest

    def opened(self, run_id: str) -> None:
        """Note the id of the run the coordinator has just opened on its parties, so a
        resume can reopen it even before its first epoch is committed."""
        atomic_write_json(self.directory / "run.json", {"run": self.run, "run_id": run_id})

    def last_opened(self) -> str | None:
        """The run id to resume: the committed epoch's, else the last one opened."""
        committed = self.committed()
        if committed and committed.get("run_id"):
            return committed["run_id"]
        path = self.directory / "run.json"
        try:
            noted = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            noted = {}
        return noted.get("run_id") if noted.get("run") == self.run else None

    def committed(self) -> dict[str, Any] | None:
        """The manifest of the last committed epoch, or None (none yet, or run finished)."""
        manifest = self.manifest()
        return manifest if manifest and "tag" in manifest and not manifest.get("done") else None

    def save(
        self,
        tag: str,
        objs: Stateful,
        snapshots: dict[str, dict],
        trainer: dict[str, Any],
        manifest: dict[str, Any],
    ) -> None:
        """Write the learner's own state, then commit ``tag`` in the manifest (last)."""
        write_checkpoint(self.directory / f"{tag}.pt", pack_state(objs, snapshots, trainer=trainer))
        atomic_write_json(
            self.manifest_path,
            {
                "run": self.run,
                "tag": tag,
                "epoch": trainer["epoch"],
                "step": trainer["step"],
                "written": time.time(),
                **manifest,
            },
        )
        prune(self.directory, [tag])

    def load(self, tag: str, objs: Stateful) -> tuple[dict[str, dict], dict[str, Any]]:
        """Restore the learner's own state of ``tag``; returns (snapshots, trainer state)."""
        own = read_checkpoint(self.directory / f"{tag}.pt", self.owner)
        return unpack_state(objs, own), own["trainer"]

    def finished(self) -> dict[str, Any] | None:
        """The result of this run if it completed, else None."""
        manifest = self.manifest()
        return manifest["result"] if manifest and manifest.get("done") else None

    def finish(self, result: dict[str, Any]) -> None:
        """Mark the run complete with its result, so a resumed job does not run it again."""
        manifest = self.manifest() or {"run": self.run}
        atomic_write_json(self.manifest_path, {**manifest, "done": True, "result": result})


def epoch_tag(epoch: int) -> str:
    return f"epoch-{epoch:04d}"
