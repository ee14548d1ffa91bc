"""YAML files validated by pydantic models: node files, mesh files, policies, product
descriptors. Relative paths inside a file are taken from the file's own folder; errors
name the file, the field and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from splitmesh.errors import ConfigError, SplitmeshError


class Strict(BaseModel):
    """A file's model: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_paths(raw: Any, base: Path, keys: tuple[str, ...]) -> Any:
    """Make the path-valued fields of a parsed YAML mapping absolute against ``base``."""
    if isinstance(raw, dict):
        return {
            k: (
                str(base / v)
                if k in keys and isinstance(v, str) and not Path(v).is_absolute()
                else resolve_paths(v, base, keys)
            )
            for k, v in raw.items()
        }
    if isinstance(raw, list):
        return [resolve_paths(v, base, keys) for v in raw]
    return raw


def load_yaml_model(
    path: str | Path,
    model: type[BaseModel],
    what: str,
    *,
    path_keys: tuple[str, ...] = (
        "path",
        "state_dir",
        "models",
        "outputs",
        "file",
        "policy",
        "ca",
        "cert",
        "key",
    ),
    extra: dict[str, Any] | None = None,
    error: type[SplitmeshError] = ConfigError,
    overrides: Sequence[str] = (),
) -> Any:
    """A YAML file validated by ``model``; ``path_keys`` fields are made file-relative;
    ``overrides`` (``a.b=value``) are laid over it first, so errors name their field."""
    path = Path(path)
    raw = read_yaml_mapping(path, what, error)
    for setting in overrides:
        raw = override(raw, setting, f"{what} {path}")
    raw = {**resolve_paths(raw, path.parent, path_keys), **(extra or {})}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise error(f"{what} {path}, field '{field}': {first['msg']}{more}") from None


def override(raw: dict, setting: str, where: str) -> dict:
    """``raw`` with ``a.b.c=value`` set (the value read as YAML: 5, 1e-3, [64, 32], null);
    a list item is addressed by its index or, for lists of named items, by its name."""
    field, sep, text = setting.partition("=")
    keys = [k for k in field.strip().split(".") if k]
    if not sep or not keys:
        raise ConfigError(f"--set {setting!r}: expected field.path=value, e.g. training.epochs=5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {setting!r}: the value is not valid YAML: {exc}") from None

    def put(node: Any, at: list[str]) -> Any:
        key, rest = at[0], at[1:]
        if isinstance(node, list):
            named = [i for i, v in enumerate(node) if isinstance(v, dict) and v.get("name") == key]
            index = named[0] if named else int(key) if key.isdigit() else None
            if index is None or index >= len(node):
                raise ConfigError(f"--set {setting!r}: {where} has no list item {key!r}")
            return (
                [put(v, rest) if i == index else v for i, v in enumerate(node)]
                if rest
                else [value if i == index else v for i, v in enumerate(node)]
            )
        node = dict(node) if isinstance(node, dict) else {}
        node[key] = put(node.get(key, {}), rest) if rest else value
        return node

    return put(raw, keys)


def read_yaml_mapping(
    path: str | Path, what: str, error: type[SplitmeshError] = ConfigError
) -> dict:
    """A YAML file whose top level is a mapping; else ``error`` naming ``what`` and the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{what} {path}: expected a mapping at the top level")
    return raw


def dump(model: BaseModel, path: str | Path) -> Path:
    from splitmesh.io import atomic_write_yaml

    data = model.model_dump(mode="json", exclude_none=True)
    atomic_write_yaml(path, data)
    return Path(path)
