"""A party's trained parts on its own disk: module weights and JSON facts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from splitmesh.errors import ConfigError
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
    from splitmesh.nn.network import NetworkSpec

    spec = NetworkSpec(
        bottom=tuple(meta["bottom"]["hidden"]),
        activation=meta["bottom"].get("activation", "relu"),
        dropout=meta["bottom"].get("dropout", 0.0),
    )
    cards = tuple(meta["cardinalities"])
    bottom = spec.build_bottom(meta["domain"], meta["input_width"], 0, cards)
    return load_module(Path(folder) / "bottom.pt", bottom, who)
