"""Cut one table into a mesh of domain tables, as domains really hold them: each with its
own row order, its own subset of the entities, its own file format. For examples, tests
and benchmarks; a real mesh brings its own tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from splitmesh.io import atomic_write_yaml


def write_vertical_mesh(
    df: pd.DataFrame,
    domains: dict[str, list[str]],
    *,
    label: str,
    label_domain: str,
    folder: str | Path,
    name: str = "mesh",
    task: str = "binary",
    mode: str = "label-preserving",
    keep: float = 0.9,
    key: str = "id",
    string_keys: bool = False,
    seed: int = 0,
    formats: tuple[str, ...] = ("csv", "parquet"),
    extra: dict | None = None,
) -> Path:
    """Write one file per domain and a mesh file; returns the mesh file's path.

    Each domain keeps a random ``keep`` share of the rows, shuffled; keys are integers or
    strings (``string_keys``). ``formats`` cycle over the domains. Text columns are
    declared categorical in the mesh file (types are declared, never guessed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = np.arange(len(df)) * 7 + 1000  # not positions: nobody can align by row number
    keys = np.array([f"c{i:08d}" for i in ids], dtype=object) if string_keys else ids
    specs = []
    for k, (domain, cols) in enumerate(domains.items()):
        rows = rng.permutation(len(df))[: round(keep * len(df))]
        part = df.iloc[rows][cols + ([label] if domain == label_domain else [])].copy()
        part.insert(0, key, keys[rows])
        fmt = formats[k % len(formats)]
        path = folder / f"{domain}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(path, index=False)
        else:
            part.to_csv(path, index=False)
        spec = {"name": domain, "source": path.name, "key": key}
        if not cols:  # a label domain holding labels alone
            spec["features"] = []
        text = [c for c in cols if not pd.api.types.is_numeric_dtype(df[c])]
        if text:
            spec["categorical"] = text
        specs.append(spec)
    mesh = {
        "name": name,
        "task": task,
        "mode": mode,
        "label": {"domain": label_domain, "column": label},
        "domains": specs,
        **(extra or {}),
    }
    path = folder / "mesh.yaml"
    atomic_write_yaml(path, mesh)
    return path
