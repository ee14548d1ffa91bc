"""The catalog (SQLite, and PostgreSQL where a server can be started) and the OpenLineage
events a governed run leaves."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from splitmesh.data.datasets.vertical import write_vertical_mesh
from splitmesh.mesh.catalog import Catalog, CatalogError
from splitmesh.mesh.spec import load_mesh
from splitmesh.usecases.train import train_mesh
from tests.test_cli import splitmesh


@pytest.fixture
def mesh(tmp_path):
    rng = np.random.default_rng(2)
    n = 300
    df = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n)})
    df["y"] = (df.x0 - df.x1 > 0).astype(int)
    return write_vertical_mesh(
        df, {"bank": ["x0"], "insurer": ["x1"]}, label="y", label_domain="bank",
        folder=tmp_path / "mesh", extra={"training": {"epochs": 2, "batch_size": 32}},
    )  # fmt: skip


def test_a_run_leaves_catalog_rows_and_lineage_events(tmp_path, mesh, shared_catalog):
    out = tmp_path / "out"
    res = train_mesh(load_mesh(mesh), out, compare=True, progress=False)
    split, central = res["runs"]
    assert res["catalog"].endswith(str(shared_catalog))  # the user's shared catalog
    cat = Catalog(shared_catalog)
    runs = {r["id"]: r for r in cat.list_runs()}
    assert {r["status"] for r in runs.values()} == {"complete"}
    assert set(runs) == {split["run_uuid"], central["run_uuid"]}
    shown = cat.show(split["run_uuid"][:8])["run"]
    auc = next(m["value"] for m in shown["metrics"] if m["split"] == "test"
               and m["name"] == "roc_auc")  # fmt: skip
    assert auc == pytest.approx(split["metrics"]["roc_auc"])
    assert sorted(p["product_id"] for p in shown["products"]) == [
        "bank-bottom-model", "insurer-bottom-model"]  # fmt: skip
    directions = {(e["direction"], e["name"].rsplit("/", 1)[-1]) for e in shown["lineage"]}
    assert ("output", "bank-bottom-model") in directions
    assert ("input", "bank.csv") in directions or ("input", "bank.parquet") in directions
    assert len(cat.list_contracts()) == 4  # input and embedding, two domains
    product = cat.show("insurer-bottom-model")["product"]
    assert product["versions"][0]["onnx_sha256"] == split["products"][1]["onnx_sha256"]

    events = [json.loads(x) for x in (out / "lineage.jsonl").read_text().splitlines()]
    assert [(e["eventType"], e["run"]["runId"]) for e in events] == [
        ("START", split["run_uuid"]), ("COMPLETE", split["run_uuid"]),
        ("START", central["run_uuid"]), ("COMPLETE", central["run_uuid"])]  # fmt: skip
    assert len(events[1]["inputs"]) == 2 and len(events[1]["outputs"]) == 2

    r = splitmesh("catalog", "list")  # the shared catalog, as $SPLITMESH_CATALOG names it
    assert r.returncode == 0 and "insurer-bottom-model" in r.stdout
    assert split["run_uuid"] in r.stdout  # whole: catalog show takes it as printed
    r = splitmesh("catalog", "show", "nothing-here", "--catalog", str(shared_catalog))
    assert r.returncode == 12 and "nothing in catalog" in r.stderr
    r = splitmesh("catalog", "list", "--catalog", str(tmp_path / "typo.db"))
    assert r.returncode == 12 and "no catalog at" in r.stderr
    assert not (tmp_path / "typo.db").exists()


def test_a_failed_run_is_recorded_as_failed(tmp_path, mesh, shared_catalog):
    spec = load_mesh(mesh)
    gone = mesh.parent / spec.domain("insurer").source
    gone.unlink()  # the insurer's table disappears between planning and the run
    with pytest.raises(Exception, match=gone.name):
        train_mesh(spec, tmp_path / "out", progress=False)
    cat = Catalog(shared_catalog)
    (run,) = cat.list_runs()
    assert run["status"] == "failed" and gone.name in run["reason"]
    events = [json.loads(x) for x in (tmp_path / "out" / "lineage.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert gone.name in events[1]["run"]["facets"]["errorMessage"]["message"]


def _exercise(cat: Catalog) -> None:
    """The catalog's contract: runs, metrics, products, contracts; a changed contract body
    under an old version is refused and leaves the catalog as it was."""
    product = {
        "id": "bank-bottom-model", "domain": "bank", "version": "1.0.0", "status": "active",
        "input_contract": ["bank-input", "1.0.0"], "output_contract": ["bank-embedding", "1.0.0"],
        "onnx_sha256": "ab" * 32, "folder": "/x",
        "input_doc": {"id": "bank-input", "version": "1.0.0", "schema": []},
        "output_doc": {"id": "bank-embedding", "version": "1.0.0", "schema": [1]},
    }  # fmt: skip
    rid = cat.start_run("r1", "mesh.x", "label-preserving")
    cat.finish_run(rid, status="complete", scores={"test": {"roc_auc": 0.9, "n": 3}},
                   published=[product], inputs=[("file", "/a.csv")])  # fmt: skip
    shown = cat.show(rid)["run"]
    assert {m["name"] for m in shown["metrics"]} == {"roc_auc", "n"}
    changed = {**product, "input_doc": {**product["input_doc"], "schema": ["other"]}}
    rid2 = cat.start_run("r2", "mesh.x", "label-preserving")
    with pytest.raises(CatalogError, match=r"'bank-input' v1\.0\.0 is already in the catalog"):
        cat.finish_run(rid2, status="complete", scores={"test": {"roc_auc": 0.5}},
                       published=[changed])  # fmt: skip
    assert cat.show(rid2)["run"]["status"] == "running"  # the whole write rolled back
    assert cat.show(rid2)["run"]["metrics"] == []
    assert len(cat.list_products()) == 1


def test_sqlite_catalog(tmp_path):
    _exercise(Catalog(tmp_path / "cat.db"))


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server (SPLITMESH_TEST_POSTGRES_URL, or initdb + pg_ctl)."""
    if os.environ.get("SPLITMESH_TEST_POSTGRES_URL"):
        yield os.environ["SPLITMESH_TEST_POSTGRES_URL"]
        return
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    # PostgreSQL refuses to run as root: run it as nobody in a folder nobody owns
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_user and not shutil.which("runuser"):
        pytest.skip("running as root and no runuser to start PostgreSQL as another user")
    root = Path(tempfile.mkdtemp(prefix="splitmesh-pg-", dir="/tmp"))
    if as_user:
        shutil.chown(root, "nobody")
    data = root / "data"
    port = 50000 + os.getpid() % 10000
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "splitmesh"],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"), "-o",
             f"-k {root} -p {port} -c listen_addresses=''", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {exc}")
    yield f"postgresql://splitmesh@/postgres?host={root}&port={port}"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_postgresql_catalog(postgres_url):
    cat = Catalog(postgres_url)
    assert cat.url.startswith("postgresql+psycopg://")
    _exercise(cat)
    cat.close()


def test_product_versions_name_their_contracts(tmp_path, mesh):
    res = train_mesh(
        load_mesh(mesh), tmp_path / "out", progress=False, catalog=str(tmp_path / "c.db")
    )
    cat = Catalog(tmp_path / "c.db")
    versions = cat.show("bank-bottom-model")["product"]["versions"]
    version = res["runs"][0]["products"][0]["version"]
    assert versions[0]["output_contract"] == f"bank-embedding@{version}"
    assert versions[0]["input_contract"] == f"bank-input@{version}"
