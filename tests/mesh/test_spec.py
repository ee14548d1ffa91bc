"""Reading a mesh file: what it costs before any party is built, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from splitmesh.errors import ConfigError
from splitmesh.mesh.spec import load_mesh
from tests.conftest import fresh_python

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_reading_a_mesh_file_loads_none_of_the_heavy_libraries():
    """`mesh up` reads (and validates) the mesh file before it starts the nodes; torch,
    pandas, DuckDB and grpc load while the nodes start, not before."""
    code = (
        "import sys\nfrom splitmesh.mesh.spec import load_mesh\n"
        f"spec = load_mesh({str(EXAMPLES / 'fraud' / 'mesh.yaml')!r})\n"
        "print(len(spec.domain_names), spec.select_metric(), sorted(m for m in "
        "('torch', 'pandas', 'duckdb', 'grpc', 'sklearn') if m in sys.modules))"
    )
    assert fresh_python(code).split() == ["4", "log_loss", "[]"]  # its training.select_metric


def test_pretraining_is_refused_outside_a_ranking_task(tmp_path):
    raw = yaml.safe_load((EXAMPLES / "fraud" / "mesh.yaml").read_text())
    raw["ranking"] = {"pretrain": {"gmf_epochs": 2, "mlp_epochs": 2}}
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError, match=r"ranking\.pretrain pre-trains NeuMF: a ranking task only"
    ):
        load_mesh(path)
