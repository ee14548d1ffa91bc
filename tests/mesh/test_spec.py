"""Reading a mesh file: what it costs before any party is built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "log_loss", "[]"]  # its training.select_metric
