"""Real node processes on 127.0.0.1 over mutual TLS: equality with in-process runs,
a node killed mid-run then --resume, a hung node, and data changed behind a checkpoint."""

from __future__ import annotations

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
from splitmesh.mesh.spec import MeshSpec, load_mesh
from splitmesh.node.config import MeshRef, dump, load_mesh_network, load_node_config
from splitmesh.node.launcher import LocalMesh
from splitmesh.usecases.fraud import fraud_mesh
from splitmesh.usecases.train import run_id, run_mode
from tests.conftest import CREDITCARD
from tests.test_cli import splitmesh


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The real subset when present, else a synthetic table of the same schema."""
    if CREDITCARD.is_file():
        return CREDITCARD
    path = tmp_path_factory.mktemp("data") / "creditcard.csv"
    write_creditcard_csv(path, synthetic_creditcard(3000, seed=1, fraud_rate=0.05))
    return path


@pytest.fixture(scope="module")
def fraud(tmp_path_factory, data) -> Path:
    """The fraud preset's mesh file over ``data``."""
    return fraud_mesh(tmp_path_factory.mktemp("fraud"), data=data)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, fraud):
    spec = load_mesh(fraud)
    nodes = {d: MeshRef(file=fraud, domain=d) for d in spec.domain_names}
    with LocalMesh(tmp_path_factory.mktemp("mesh"), nodes, deadline_s=20) as local:
        yield local


def config(fraud: Path, mesh: LocalMesh | None, *sets: str, network=None) -> MeshSpec:
    # a checkpoint after every epoch: the tests stop nodes after a given epoch's
    base = ["training.epochs=4", "training.batch_size=64", "training.patience=2",
            "training.checkpoint_interval=0", *sets]  # fmt: skip
    spec = load_mesh(fraud, base)
    if mesh is not None:
        spec = spec.model_copy(update={"transport": network or load_mesh_network(mesh.mesh_file)})
    return spec


def same_run(a: dict, b: dict) -> None:
    assert a["mode"] == b["mode"]
    for k in ("roc_auc", "average_precision", "log_loss"):
        assert a["metrics"][k] == pytest.approx(b["metrics"][k], rel=1e-6), k
    assert a["best_epoch"] == b["best_epoch"]


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
def test_training_over_grpc_equals_in_process(mesh, fraud, tmp_path, mode):
    remote = run_mode(config(fraud, mesh), mode, tmp_path / "grpc", progress=False)
    local = run_mode(config(fraud, None), mode, tmp_path / "local", progress=False)
    assert remote["transport"] == "grpc" and local["transport"] == "in-process"
    same_run(remote, local)
    assert remote["wire_bytes"] == local["wire_bytes"] > 0  # one wire format


def test_each_node_applies_its_own_protections_keyed_by_its_own_key(tmp_path, fraud):
    """Each node applies the protections of its own mesh file, with noise keyed by its own
    private key: two runs on the same nodes agree; another party cannot redraw it."""
    import yaml

    raw = yaml.safe_load(fraud.read_text())
    raw["privacy"] = {
        "labels": {"epsilon": 2.0},
        "gradients": {"max_norm": 0.05, "sigma": 0.5},
        "embeddings": {"clip": 2.0, "noise_multiplier": 0.3},
    }
    protected = fraud.with_name("protected.yaml")
    protected.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_mesh(protected)
    nodes = {d: MeshRef(file=protected, domain=d) for d in spec.domain_names}
    mode = "label-preserving"
    with LocalMesh(tmp_path / "nodes", nodes, deadline_s=20) as local:
        remote = run_mode(config(protected, local), mode, tmp_path / "grpc", progress=False)
        again = run_mode(config(protected, local), mode, tmp_path / "again", progress=False)
    same_run(remote, again)
    local_run = run_mode(config(protected, None), mode, tmp_path / "local", progress=False)
    # in process every party's key derives from this user's key, not the nodes' keys
    assert local_run["metrics"]["log_loss"] != remote["metrics"]["log_loss"]
    # what each node said it applied, from its own mesh file
    eps = remote["privacy"]["epsilon"]
    assert eps[spec.label.domain]["labels"] == 2.0
    assert all(eps[d]["embeddings"] > 0 for d in spec.embedding_domains)
    assert "gradients" in remote["privacy"]["applied"][spec.label.domain]
    assert not remote["privacy"]["notes"]


def test_a_protection_only_the_coordinator_asks_for_is_reported_as_not_applied(
    mesh, fraud, tmp_path
):
    """Nodes apply their own mesh file's protections: a coordinator's --set cannot make a
    run claim one the domains did not apply."""
    sets = ("privacy.embeddings.noise_multiplier=1.0",)
    run = run_mode(config(fraud, mesh, *sets), "label-preserving", tmp_path, progress=False)
    assert run["privacy"]["applied"] == {}
    assert any("applies none (its own file)" in n for n in run["notes"])


def test_pipelined_int8_run_over_grpc_equals_in_process(mesh, fraud, tmp_path):
    """Compression and pipelining change the arithmetic the same way on either transport."""
    sets = ("wire_dtype=int8", "training.pipeline=true")
    mode = "label-preserving"
    remote = run_mode(config(fraud, mesh, *sets), mode, tmp_path / "grpc", progress=False)
    local = run_mode(config(fraud, None, *sets), mode, tmp_path / "local", progress=False)
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


def test_node_killed_mid_run_then_resume_finishes_the_same_run(mesh, fraud, tmp_path):
    mode = "label-preserving"
    sets = ("training.epochs=10", "training.batch_size=16", "training.patience=null")
    spec, out = config(fraud, mesh, *sets), tmp_path / "out"
    thread, box = _in_thread(lambda: run_mode(spec, mode, out, progress=False))
    _wait_for_checkpoint(out / "checkpoints" / run_id(spec, mode), epoch=2)
    mesh.stop("cardholder", signal.SIGKILL)
    try:
        thread.join(60)
        err = box.get("error")
        assert isinstance(err, RunInterrupted), box
        assert "'cardholder'" in str(err) and "consistent checkpoint of epoch" in str(err)
        assert "--resume" in err.hint
        saved_epoch = err.checkpoint["epoch"]
        assert 2 <= saved_epoch < 10
    finally:  # the module's later tests need the whole mesh, whatever happened here
        mesh.start("cardholder")
        mesh.wait_ready(["cardholder"])
    resumed = run_mode(spec, mode, out, progress=False, resume=True)
    uninterrupted = run_mode(config(fraud, None, *sets), mode, tmp_path / "local", progress=False)
    same_run(resumed, uninterrupted)
    assert resumed["epochs_run"] == 10


def test_hung_node_stops_the_run_at_the_deadline(mesh, fraud, tmp_path):
    net = load_mesh_network(mesh.mesh_file).model_copy(update={"deadline_s": 1.5, "retries": 0})
    sets = ("training.epochs=50", "training.batch_size=16", "training.patience=null")
    spec, out = config(fraud, mesh, *sets, network=net), tmp_path / "out"
    thread, box = _in_thread(lambda: run_mode(spec, "label-sharing", out, progress=False))
    _wait_for_checkpoint(out / "checkpoints" / run_id(spec, "label-sharing"), epoch=1)
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
        run_mode(spec, "label-sharing", tmp_path / "other", progress=False, checkpoints=False)
    resumed = run_mode(spec, "label-sharing", out, progress=False, resume=True)
    assert resumed["epochs_run"] == 50


def test_a_failure_while_the_coordinator_loads_leaves_no_node_running(fraud, tmp_path):
    """`up` starts the nodes in a thread while the coordinator loads its own modules; if
    that loading fails, every node started (or about to be) is stopped."""
    spec = load_mesh(fraud)
    local = LocalMesh(tmp_path, {d: MeshRef(file=fraud, domain=d) for d in spec.domain_names})

    def fail() -> None:
        raise RuntimeError("the coordinator could not load")

    with pytest.raises(RuntimeError, match="could not load"):
        local.up(meanwhile=fail)
    assert set(local.procs) == set(spec.domain_names)
    assert all(p.poll() is not None for p in local.procs.values())


def test_a_second_node_on_a_running_nodes_state_folder_is_refused(mesh):
    """Two nodes on one state folder would interleave one access log (its chain then no
    longer verifies) and overwrite each other's checkpoints: the second one must not start."""
    name = next(iter(mesh.configs))
    state = load_node_config(mesh.configs[name]).state_dir
    log = (state / "audit.jsonl").read_bytes()
    done = splitmesh("node", "serve", "--config", str(mesh.configs[name]))
    assert done.returncode != 0
    out = " ".join((done.stdout + done.stderr).split())
    assert (
        f"state folder {state} is in use by another running node (pid {mesh.procs[name].pid})"
        in out
    )
    assert "Traceback" not in out
    assert (state / "audit.jsonl").read_bytes() == log  # not a record more


def test_resume_refused_when_a_node_restarts_on_other_data(mesh, fraud, data, tmp_path):
    mode = "label-sharing"
    spec = config(fraud, mesh, "training.epochs=2", "training.patience=null")
    out = tmp_path / "out"
    run_mode(spec, mode, out, progress=False)
    # the run finished; forget that, so --resume has a checkpoint to go back to
    manifest = out / "checkpoints" / run_id(spec, mode) / "checkpoint.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({k: v for k, v in m.items() if k not in ("done", "result")}))

    fewer = tmp_path / "fewer.csv"
    pd.read_csv(data, index_col=0).iloc[:-25].to_csv(fewer)
    other = fraud_mesh(tmp_path / "other", data=fewer)
    path = mesh.configs["security"]
    original = path.read_text()
    node = load_node_config(path)
    dump(node.model_copy(update={"mesh": node.mesh.model_copy(update={"file": other})}), path)
    try:
        mesh.stop("security")
        mesh.start("security")
        mesh.wait_ready(["security"])
        with pytest.raises(DataError, match=r"'security'.*rows.*resume refused"):
            run_mode(spec, mode, out, progress=False, resume=True)
    finally:
        path.write_text(original)
        mesh.stop("security")
        mesh.start("security")
        mesh.wait_ready(["security"])


def test_mesh_up_fraud_runs_the_preset_on_node_processes(tmp_path, data):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "splitmesh.cli", "mesh", "up", "fraud",
           "--workdir", str(tmp_path / "mesh"), "--data", str(data), "--mode", "label-preserving",
           "--epochs", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mutual TLS" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert [r["transport"] for r in results["runs"]] == ["grpc"]
    assert results["mesh"] == "credit-fraud" and (out / "mesh.yaml").is_file()
    logs = list((tmp_path / "mesh" / "logs").glob("*.log"))
    assert len(logs) == 4 and all("listening on" in p.read_text() for p in logs)


def test_nodes_mask_their_embeddings_and_a_policy_requiring_it_is_enforced(tmp_path, fraud):
    """Secure aggregation over gRPC: each node masks its embeddings with keys agreed with
    the other nodes (the coordinator relays them, signed) and the run equals in process;
    a node whose policy requires it refuses, at Hello, a mesh file without it."""
    import yaml

    from splitmesh.errors import PolicyError

    raw = yaml.safe_load(fraud.read_text())
    raw["model"] = {**raw.get("model", {}), "aggregation": "sum"}
    raw["privacy"] = {"secure_aggregation": True}
    secure = fraud.with_name("secure.yaml")
    secure.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec, mode = load_mesh(secure), "label-preserving"
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "version": "1", "participants": [{"name": d} for d in spec.domain_names],
        "label_placement": [mode], "privacy": {"secure_aggregation": True},
    }))  # fmt: skip
    nodes = {d: MeshRef(file=secure, domain=d) for d in spec.domain_names}
    with LocalMesh(tmp_path / "nodes", nodes, deadline_s=20, policy=policy) as local:
        remote = run_mode(config(secure, local), mode, tmp_path / "grpc", progress=False)
    same_run(remote, run_mode(config(secure, None), mode, tmp_path / "local", progress=False))
    applied = remote["privacy"]["applied"]
    assert all("secure_aggregation" in applied[d] for d in spec.embedding_domains)
    plain = {d: MeshRef(file=fraud, domain=d) for d in spec.domain_names}
    refused = pytest.raises(PolicyError, match=r"policy rule 'privacy.secure_aggregation'")
    with LocalMesh(tmp_path / "plain", plain, deadline_s=20, policy=policy) as local, refused:
        run_mode(config(fraud, local), mode, tmp_path / "refused", progress=False)
