"""OpenLineage: events to a server the client's standard configuration names, datasets
named after what each domain really reads, the job-type facet."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import threading
import uuid
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from splitmesh.data.datasets.vertical import write_vertical_mesh
from splitmesh.mesh.lineage import Lineage
from splitmesh.mesh.spec import load_mesh
from splitmesh.usecases.train import lineage_inputs, train_mesh


def _openlineage_vars() -> list[str]:
    return [k for k in os.environ if k.startswith("OPENLINEAGE")]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No OpenLineage configuration but what a test sets (none in the working folder or home)."""
    for var in _openlineage_vars():
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield monkeypatch
    # the client turns OPENLINEAGE_URL into OPENLINEAGE__TRANSPORT__... variables of its own
    for var in _openlineage_vars():
        del os.environ[var]


class _Receiver(http.server.BaseHTTPRequestHandler):
    events: ClassVar[list[tuple[str, dict]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).events.append((self.path, json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint():
    _Receiver.events = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Receiver.events
    server.shutdown()


def _check_event(e: dict) -> None:
    """What the OpenLineage spec requires of a run event, and the facets we send."""
    assert e["eventType"] in ("START", "COMPLETE", "FAIL")
    assert dt.datetime.fromisoformat(e["eventTime"]).tzinfo is not None
    uuid.UUID(e["run"]["runId"])
    assert e["job"]["namespace"] and e["job"]["name"]
    assert e["producer"].startswith("https://")
    assert e["schemaURL"].startswith("https://openlineage.io/spec/")
    job_type = e["job"]["facets"]["jobType"]
    assert job_type["processingType"] == "BATCH" and job_type["integration"] == "SPLITMESH"
    for facet in [job_type, *e["run"]["facets"].values()]:
        assert facet["_producer"] and facet["_schemaURL"].startswith("https://openlineage.io/")
    for d in [*e.get("inputs", []), *e.get("outputs", [])]:
        assert d["namespace"] and d["name"]


@pytest.fixture
def mesh(tmp_path):
    rng = np.random.default_rng(2)
    n = 200
    df = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n)})
    df["y"] = (df.x0 - df.x1 > 0).astype(int)
    return write_vertical_mesh(
        df, {"bank": ["x0"], "insurer": ["x1"]}, label="y", label_domain="bank",
        folder=tmp_path / "mesh", extra={"training": {"epochs": 1, "batch_size": 64}},
    )  # fmt: skip


def test_a_run_sends_its_events_to_the_server_openlineage_url_names(clean_env, endpoint, mesh):
    url, received = endpoint
    clean_env.setenv("OPENLINEAGE_URL", url)
    res = train_mesh(load_mesh(mesh), Path("out"), progress=False)
    (run,) = res["runs"]
    assert [p for p, _ in received] == ["/api/v1/lineage"] * 2
    events = [e for _, e in received]
    for e in events:
        _check_event(e)
    assert [(e["eventType"], e["run"]["runId"]) for e in events] == [
        ("START", run["run_uuid"]),
        ("COMPLETE", run["run_uuid"]),
    ]
    # inputs: the domains' files by their absolute paths; outputs: the published products
    spec = load_mesh(mesh)
    files = {str((mesh.parent / spec.domain(d).source).resolve()) for d in ("bank", "insurer")}
    assert {(d["namespace"], d["name"]) for d in events[1]["inputs"]} == {
        ("file", f) for f in files
    }
    assert len(events[1]["outputs"]) == 2
    # the run's own record holds the same events, and says where they were sent
    kept = [json.loads(x) for x in Path("out/lineage.jsonl").read_text().splitlines()]
    assert [e["run"]["runId"] for e in kept] == [e["run"]["runId"] for e in events]
    assert res["lineage_transport"] == "http"


def test_an_unreachable_server_does_not_stop_the_run_and_the_file_keeps_the_event(clean_env):
    clean_env.setenv("OPENLINEAGE_URL", "http://127.0.0.1:9")  # discard port: refused
    lineage = Lineage(Path("lineage.jsonl"))
    lineage.emit("START", str(uuid.uuid4()), "mesh.x")
    assert len(lineage.failures) == 1 and "START" in lineage.failures[0]
    assert json.loads(Path("lineage.jsonl").read_text())["eventType"] == "START"


def test_an_openlineage_yml_in_the_working_folder_chooses_the_transport(clean_env, tmp_path):
    Path("openlineage.yml").write_text(
        f"transport:\n  type: file\n  log_file_path: {tmp_path / 'shared.jsonl'}\n  append: true\n"
    )
    lineage = Lineage(Path("run.jsonl"))
    assert lineage.transport == "file"
    lineage.emit("START", str(uuid.uuid4()), "mesh.x")
    assert json.loads((tmp_path / "shared.jsonl").read_text())["eventType"] == "START"


def test_without_configuration_events_go_to_the_runs_file_only(clean_env):
    lineage = Lineage(Path("run.jsonl"))
    assert lineage.remote is None and lineage.transport is None


def test_a_sql_source_names_the_files_it_reads(tmp_path):
    data = tmp_path / "data"
    (data / "parts").mkdir(parents=True)
    pd.DataFrame({"id": [1, 2], "x": [0.1, 0.2]}).to_csv(data / "x.csv", index=False)
    for i in range(2):
        pd.DataFrame({"id": [1, 2], "y": [i, 1 - i]}).to_csv(
            data / "parts" / f"{i}.csv", index=False
        )
    (tmp_path / "mesh.yaml").write_text(
        """
name: joined
label: {domain: d, column: y}
domains:
  - name: d
    key: id
    data_dirs: [data]
    source:
      sql: >-
        SELECT x.id, x.x, p.y FROM read_csv('data/x.csv') x
        JOIN read_csv('data/parts/*.csv') p USING (id) WHERE p.y <> 'none'
"""
    )
    (ds,) = [lineage_inputs(load_mesh(tmp_path / "mesh.yaml"))]
    assert {(d["namespace"], d["name"]) for d in ds} == {
        ("file", str(data / "x.csv")),
        ("file", str(data / "parts" / "0.csv")),
        ("file", str(data / "parts" / "1.csv")),
    }
