"""Real node processes on 127.0.0.1 over mutual TLS: equality with in-process runs,
a node killed mid-run then --resume, a hung node, and data changed behind a checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from splitmesh.data.datasets.creditcard import synthetic_creditcard, write_creditcard_csv
from splitmesh.errors import DataError, PartyError, RunInterrupted
from splitmesh.node.config import dump, load_mesh_network, load_node_config
from splitmesh.node.launcher import LocalMesh
from splitmesh.split.trainer import TrainConfig
from splitmesh.usecases.fraud import (
    FraudConfig,
    fraud_nodes,
    load_table,
    run_fraud,
    run_id,
    run_mode,
)
from tests.conftest import CREDITCARD


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The real subset when present, else a synthetic table of the same schema."""
    if CREDITCARD.is_file():
        return CREDITCARD
    path = tmp_path_factory.mktemp("data") / "creditcard.csv"
    write_creditcard_csv(path, synthetic_creditcard(3000, seed=1))
    return path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, data):
    local = LocalMesh(tmp_path_factory.mktemp("mesh"), fraud_nodes(data), deadline_s=20)
    with local:
        yield local


def config(data: Path, mesh: LocalMesh | None, **kw) -> FraudConfig:
    base = FraudConfig(
        data=str(data),
        train=TrainConfig(epochs=4, batch_size=64, patience=2, select_metric="log_loss"),
        modes=("label-sharing", "label-preserving"),
        reference=False,
        transport="grpc" if mesh else "local",
        mesh=str(mesh.mesh_file) if mesh else None,
    )
    return dataclasses.replace(base, **kw)


def same_run(a: dict, b: dict) -> None:
    assert a["mode"] == b["mode"]
    assert a["epoch_losses"] == pytest.approx(b["epoch_losses"], rel=1e-6)
    for k in ("roc_auc", "average_precision", "log_loss"):
        assert a["metrics"][k] == pytest.approx(b["metrics"][k], rel=1e-6), k
    assert a["best_epoch"] == b["best_epoch"]


def test_training_over_grpc_equals_in_process(mesh, data):
    remote = run_fraud(config(data, mesh), progress=False)
    local = run_fraud(config(data, None), progress=False)
    for r, loc in zip(remote["runs"], local["runs"], strict=True):
        assert r["transport"] == "grpc" and loc["transport"] == "local"
        same_run(r, loc)
        assert r["wire_bytes"] > 0
    # only the label owner's counts reached the coordinator, never the rows themselves
    assert remote["runs"][0]["nodes"]["fraud-labels"]["data"]["rows"] > 0


def test_pipelined_int8_run_over_grpc_equals_in_process(mesh, data):
    """Compression and pipelining change the arithmetic the same way on either transport."""
    kw = dict(modes=("label-preserving",), wire_dtype="int8", pipeline=True)
    remote = run_fraud(config(data, mesh, **kw), progress=False)["runs"][0]
    local = run_fraud(config(data, None, **kw), progress=False)["runs"][0]
    same_run(remote, local)


def _wait_for_checkpoint(directory: Path, epoch: int, timeout: float = 60) -> None:
    manifest = directory / "checkpoint.json"
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if manifest.exists() and json.loads(manifest.read_text()).get("epoch", 0) >= epoch:
            return
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of epoch {epoch} in {timeout} s")


def _in_thread(fn):
    box: dict = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def test_node_killed_mid_run_then_resume_finishes_the_same_run(mesh, data, tmp_path):
    mode = "label-preserving"
    train = TrainConfig(epochs=10, batch_size=16, patience=None)
    cfg = config(data, mesh, train=train, checkpoint_dir=str(tmp_path / "ckpt"))
    thread, box = _in_thread(lambda: run_mode(mode, None, cfg, progress=False))
    _wait_for_checkpoint(tmp_path / "ckpt" / run_id(cfg, mode), epoch=2)
    mesh.stop("cardholder", signal.SIGKILL)
    thread.join(60)
    err = box.get("error")
    assert isinstance(err, RunInterrupted), box
    assert "'cardholder'" in str(err) and "consistent checkpoint of epoch" in str(err)
    assert "--resume" in err.hint
    saved_epoch = err.checkpoint["epoch"]
    assert 2 <= saved_epoch < 10

    mesh.start("cardholder")
    mesh.wait_ready(["cardholder"])
    resumed = run_mode(mode, None, cfg, progress=False, resume=True)
    local = config(data, None, train=train)
    uninterrupted = run_mode(mode, load_table(local), local, progress=False)
    same_run(resumed, uninterrupted)
    assert resumed["epochs_run"] == 10


def test_hung_node_stops_the_run_at_the_deadline(mesh, data, tmp_path):
    net = load_mesh_network(mesh.mesh_file)
    short = dump(net.model_copy(update={"deadline_s": 1.5, "retries": 0}), tmp_path / "m.yaml")
    train = TrainConfig(epochs=50, batch_size=16, patience=None)
    cfg = config(data, mesh, train=train, checkpoint_dir=str(tmp_path / "ckpt"))
    cfg = dataclasses.replace(cfg, mesh=str(short))
    thread, box = _in_thread(lambda: run_mode("label-sharing", None, cfg, progress=False))
    _wait_for_checkpoint(tmp_path / "ckpt" / run_id(cfg, "label-sharing"), epoch=1)
    pid = mesh.procs["payments"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        thread.join(60)
    finally:
        os.kill(pid, signal.SIGCONT)
    err = box.get("error")
    assert isinstance(err, RunInterrupted), box
    assert "'payments'" in str(err) and "deadline" in str(err)
    # the node woke up still holding the abandoned run: until it has been idle for its
    # timeout, only a resume of that run is served; a new run is refused naming it
    with pytest.raises(PartyError, match=r"node 'payments' serves run [0-9a-f]{32} .*refused"):
        run_mode("label-sharing", None, dataclasses.replace(cfg, checkpoint_dir=None),
                 progress=False)  # fmt: skip
    resumed = run_mode("label-sharing", None, cfg, progress=False, resume=True)
    assert resumed["epochs_run"] == 50


def test_resume_refused_when_a_node_restarts_on_other_data(mesh, data, tmp_path):
    mode = "label-sharing"
    train = TrainConfig(epochs=2, batch_size=64, patience=None)
    cfg = config(data, mesh, train=train, checkpoint_dir=str(tmp_path / "ckpt"))
    run_mode(mode, None, cfg, progress=False)
    # the run finished; forget that, so --resume has a checkpoint to go back to
    manifest = tmp_path / "ckpt" / run_id(cfg, mode) / "checkpoint.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({k: v for k, v in m.items() if k not in ("done", "result")}))

    fewer = tmp_path / "fewer.csv"
    pd.read_csv(data).iloc[:-25].to_csv(fewer, index=False)
    path = mesh.configs["security"]
    original = path.read_text()
    node = load_node_config(path)
    dump(node.model_copy(update={"data": node.data.model_copy(update={"path": fewer})}), path)
    try:
        mesh.stop("security")
        mesh.start("security")
        mesh.wait_ready(["security"])
        with pytest.raises(DataError, match=r"'security'.*rows.*resume refused"):
            run_mode(mode, None, cfg, progress=False, resume=True)
    finally:
        path.write_text(original)
        mesh.stop("security")
        mesh.start("security")
        mesh.wait_ready(["security"])


def test_mesh_up_runs_the_job_on_node_processes(tmp_path, data):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "splitmesh.cli", "mesh", "up", "fraud",
           "--workdir", str(tmp_path / "mesh"), "--data", str(data), "--mode", "label-preserving",
           "--epochs", "2", "--patience", "0", "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mutual TLS" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert [r["transport"] for r in results["runs"]] == ["grpc"]
    logs = list((tmp_path / "mesh" / "logs").glob("*.log"))
    assert len(logs) == 4 and all("listening on" in p.read_text() for p in logs)
