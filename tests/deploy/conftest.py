"""A small keyed mesh whose domains read separate folders: what a deployment must keep apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def folders_mesh(tmp_path) -> Path:
    """Three domains: one reads a file by path, one a CSV by SQL from its own folder, the
    label domain a CSV by SQL with a glob and a string constant; 400 rows, a learnable label."""
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + x[:, 2] > 0).astype(int)
    ids = np.arange(n)
    for folder, frame in {
        "left": pd.DataFrame({"id": ids, "a1": x[:, 0], "a2": x[:, 1]}),
        "right": pd.DataFrame({"id": ids, "b1": x[:, 2], "b2": x[:, 3]}),
        "labels": pd.DataFrame({"id": ids, "label": y, "region": "EU"}),
    }.items():
        (tmp_path / "data" / folder).mkdir(parents=True)
        frame.to_csv(tmp_path / "data" / folder / f"{folder}.csv", index=False)
    mesh = tmp_path / "mesh" / "mesh.yaml"
    mesh.parent.mkdir()
    mesh.write_text(
        """
name: folders
task: binary
mode: label-preserving
label: {domain: labels, column: label}
domains:
  - name: left
    key: id
    source: ../data/left/left.csv
  - name: right
    key: id
    data_dirs: [../data/right]
    source: {sql: "SELECT id, b1, b2 FROM read_csv('../data/right/right.csv')"}
  - name: labels
    key: id
    features: []
    data_dirs: [../data/labels]
    source:
      sql: "SELECT id, label FROM read_csv('../data/labels/*.csv') WHERE region = 'EU'"
training: {epochs: 25, batch_size: 32, lr: 0.01}
model: {bottom: [8], top: [8]}
"""
    )
    return mesh


@pytest.fixture
def one_file_mesh(tmp_path) -> Path:
    """Three domains reading their columns of one CSV (labels included), as the fraud example
    does: each container would hold every column, unless each domain's table is extracted."""
    rng = np.random.default_rng(1)
    n = 400
    x = rng.normal(size=(n, 4))
    frame = pd.DataFrame({"id": np.arange(n), "a1": x[:, 0], "a2": x[:, 1], "b1": x[:, 2],
                          "b2": x[:, 3], "label": (x[:, 0] - x[:, 3] > 0).astype(int)})  # fmt: skip
    (tmp_path / "all").mkdir()
    frame.to_csv(tmp_path / "all" / "table.csv", index=False)
    mesh = tmp_path / "one" / "mesh.yaml"
    mesh.parent.mkdir()
    read = "FROM read_csv('../all/table.csv')"
    mesh.write_text(
        f"""
name: onefile
task: binary
label: {{domain: labels, column: label}}
domains:
  - {{name: left, key: id, data_dirs: [../all], source: {{sql: "SELECT id, a1, a2 {read}"}}}}
  - {{name: right, key: id, data_dirs: [../all], source: {{sql: "SELECT id, b1, b2 {read}"}}}}
  - name: labels
    key: id
    features: []
    data_dirs: [../all]
    source: {{sql: "SELECT id, label {read}"}}
training: {{epochs: 25, batch_size: 32, lr: 0.01}}
model: {{bottom: [8], top: [8]}}
"""
    )
    return mesh
