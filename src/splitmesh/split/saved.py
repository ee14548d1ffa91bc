"""A party's trained parts on its own disk: module weights and JSON facts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from splitmesh.errors import ConfigError, ProtocolError
from splitmesh.io import atomic_write_bytes


def save_module(path: Path, module: torch.nn.Module) -> None:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_module(path: Path, module: torch.nn.Module, who: str) -> torch.nn.Module:
    if not path.is_file():
        raise ConfigError(f"{who}: no saved model at {path}", hint="train with --out DIR first")
    module.load_state_dict(torch.load(path, weights_only=True))
    return module


def read_json(path: Path, who: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{who}: no saved model at {path}", hint="train with --out DIR first")
    return json.loads(path.read_text())


def load_bottom(folder: Path, meta: dict, who: str) -> torch.nn.Module:
    """A domain's trained bottom model from its folder, as its model.json (``meta``) describes."""
    from splitmesh.nn.network import bottom_model, build_bottom

    model = bottom_model(meta["bottom"], who)
    cards = tuple(meta["cardinalities"])
    bottom = build_bottom(model, meta["domain"], meta["input_width"], 0, cards)
    return load_module(Path(folder) / "bottom.pt", bottom, who)


# What a coordinator may say about a run, for a party's model card and metadata; a party
# writes its own facts (domain, columns, data hash, run id) itself, never from the wire.
META_KEYS = frozenset({"mesh", "metrics", "policy", "label_task", "threshold"})
MAX_META_BYTES = 16_384


def wire_meta(meta: dict, who: str) -> dict:
    """SaveModel's ``meta``, checked: only the known keys, JSON, of bounded size."""
    unknown = sorted(k for k in meta if k not in META_KEYS)
    if unknown:
        raise ProtocolError(
            f"{who}: SaveModel.meta may hold {sorted(META_KEYS)}, not {str(unknown[0])[:40]!r}"
        )
    kinds = {"mesh": str, "metrics": dict, "policy": dict, "label_task": dict}
    for key, kind in kinds.items():
        if key in meta and not isinstance(meta[key], kind):
            raise ProtocolError(f"{who}: SaveModel.meta[{key!r}] must be a {kind.__name__}")
    threshold = meta.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int | float)
    ):
        raise ProtocolError(f"{who}: SaveModel.meta['threshold'] must be a number")
    if len(json.dumps(meta, default=str)) > MAX_META_BYTES:
        raise ProtocolError(f"{who}: SaveModel.meta is over {MAX_META_BYTES} bytes")
    return dict(meta)
