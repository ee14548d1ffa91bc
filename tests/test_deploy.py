"""deploy/: the compose stack's files stay valid; the stack itself runs where docker can."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from splitmesh.node.config import load_mesh_network, load_node_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NODES = ["payments", "cardholder", "security", "fraud-labels"]


@pytest.fixture
def deployed(tmp_path) -> Path:
    """deploy/ copied and set up (certificates, node files) in a scratch folder."""
    d = tmp_path / "deploy"
    generated = ["certs", "out", "fraud.yaml", "coordinator.yaml", *(f"{n}.yaml" for n in NODES)]
    shutil.copytree(DEPLOY, d, ignore=shutil.ignore_patterns(*generated))
    shutil.copytree(DEPLOY.parent / "examples" / "fraud", tmp_path / "examples" / "fraud")
    env = {**os.environ, "SPLITMESH": str(Path(sys.executable).parent / "splitmesh")}
    subprocess.run([str(d / "setup.sh")], check=True, env=env, capture_output=True)
    return d


def test_setup_writes_valid_node_files_holding_the_coordinators_fingerprint(deployed):
    from splitmesh.mesh.spec import load_mesh

    prints = yaml.safe_load((deployed / "certs" / "fingerprints.json").read_text())
    for name in NODES:
        cfg = load_node_config(deployed / "nodes" / f"{name}.yaml")
        assert cfg.name == name and cfg.tls is not None and not cfg.insecure
        assert cfg.accept == [prints["coordinator"]]
        assert cfg.mesh.file == Path("/etc/splitmesh/fraud.yaml") and cfg.mesh.domain == name
    mesh = load_mesh_network(deployed / "mesh.yaml")
    assert [n.name for n in mesh.nodes] == NODES and mesh.tls is not None
    # the nodes' mesh file reads the mounted CSV; the coordinator's adds the network
    fraud = load_mesh(deployed / "fraud.yaml")
    assert sorted(fraud.domain_names) == sorted(NODES)
    assert all("/data/creditcard.csv" in d.source.sql for d in fraud.domains)
    coordinator = load_mesh(deployed / "coordinator.yaml")
    assert [n.name for n in coordinator.transport.nodes] == NODES


def test_compose_file_has_one_container_per_party_each_with_its_own_key(deployed):
    compose = yaml.safe_load((deployed / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"coordinator", *NODES}
    for name, svc in services.items():
        keys = [v for v in svc["volumes"] if v.split(":")[0].endswith(".key")]
        assert keys == [f"./certs/{name}.key:" + keys[0].split(":", 1)[1]], name


def _docker_engine() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "docker is installed but its engine is not reachable (docker info failed)"
    return None


def test_compose_stack_trains_over_mutual_tls(deployed, creditcard_path):
    why = _docker_engine()
    if why:
        pytest.skip(f"{why}: the compose stack cannot run here")
    env = {
        **os.environ,
        "SPLITMESH_DATA": str(creditcard_path.parent),
        "SPLITMESH_DATA_FILE": creditcard_path.name,
        "SPLITMESH": str(Path(sys.executable).parent / "splitmesh"),
    }
    subprocess.run([str(deployed / "setup.sh"), "--force"], check=True, env=env)
    compose = ["docker", "compose", "-f", str(deployed / "compose.yaml")]
    up = ["up", "--build", "--abort-on-container-exit", "--exit-code-from", "coordinator"]
    try:
        subprocess.run([*compose, *up], check=True, env=env, timeout=1800)
        assert (deployed / "out" / "results.json").is_file()
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, capture_output=True)
