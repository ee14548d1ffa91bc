"""deploy/compose.py: a stack for any mesh; its files run as rendered, with or without docker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from splitmesh.deploy.compose import ComposeStack
from splitmesh.deploy.layout import COORDINATOR, MeshLayout
from splitmesh.node.launcher import free_ports

PREFIXES = ("/etc/splitmesh", "/data", "/state", "/out")  # what a container mounts


@pytest.fixture
def stack(folders_mesh, tmp_path) -> Path:
    out = tmp_path / "stack"
    ComposeStack(MeshLayout(folders_mesh), image="sm:1").write(out)
    return out


@pytest.fixture(params=["own folders", "one file, extracted"])
def any_stack(request, folders_mesh, one_file_mesh, tmp_path) -> Path:
    """A stack of domains with folders of their own, and one whose domains read one file
    (each extracted to its own table, as splitmesh deploy does by default)."""
    out = tmp_path / "stack"
    if request.param == "own folders":
        layout = MeshLayout(folders_mesh)
    else:
        layout = MeshLayout(one_file_mesh)
        layout.extract(out / "data", list(layout.shared_folders()))
    ComposeStack(layout, image="sm:1").write(out)
    return out


def _compose(stack: Path) -> dict:
    return yaml.safe_load((stack / "compose.yaml").read_text())


def test_each_node_mounts_only_its_own_data_key_and_state(stack, folders_mesh):
    services = _compose(stack)["services"]
    domains = ["left", "right", "labels"]
    assert set(services) == {COORDINATOR, *domains}
    data = folders_mesh.parent.parent / "data"
    for name, svc in services.items():
        mounts = {v.split(":")[1]: v for v in svc["volumes"]}
        assert mounts["/etc/splitmesh/tls"] == f"./{name}/tls:/etc/splitmesh/tls:ro"
        if name == COORDINATOR:
            assert not any(p.startswith("/data") for p in mounts)
            assert set(svc["depends_on"]) == set(domains)
            continue
        assert [p for p in mounts if p.startswith("/data")] == [f"/data/{name}"]
        assert mounts[f"/data/{name}"] == f"{data / name}:/data/{name}:ro"
        assert mounts["/state"] == f"{name}-state:/state"
        assert svc["healthcheck"]["test"][1:4] == ["splitmesh", "node", "health"]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert _compose(stack)["networks"]["mesh"]["internal"] is True


def test_keys_are_owner_only_and_the_rest_readable(stack):
    for path in stack.rglob("*"):
        if path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert (mode == 0o600) if path.name == "tls.key" else bool(mode & 0o044), path
    assert f"SPLITMESH_UID={os.getuid()}" in (stack / ".env").read_text()


def _moved(value, root: Path, ports: dict[str, int]):
    """A container's view of a rendered file, moved under ``root`` and onto loopback ports."""
    if isinstance(value, dict):
        return {k: _moved(v, root, ports) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, root, ports) for v in value]
    if not isinstance(value, str):
        return value
    if value.startswith(PREFIXES):
        return f"{root}{value}"
    if value in ("0.0.0.0:50051", "0.0.0.0:50052"):
        return f"127.0.0.1:{ports[value[-5:]]}"
    return value.replace("'/data/", f"'{root}/data/")


def _materialise(
    stack: Path, scratch: Path, ports: dict[str, dict[str, int]]
) -> dict[str, tuple[list, dict]]:
    """Each service's mounts laid out under its own root (files rewritten to it), as the
    container would see them; returns each service's command and environment, moved."""
    commands = {}
    for name, svc in _compose(stack)["services"].items():
        root = scratch / name
        for volume in svc["volumes"]:
            src, dst = volume.split(":")[:2]
            if src.startswith("./"):
                source = stack / src
            elif src.startswith("/"):
                source = Path(src)
            else:  # a named volume
                source = scratch / "volumes" / src
                source.mkdir(parents=True, exist_ok=True)
            target = root / dst.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.suffix == ".yaml":
                doc = _moved(yaml.safe_load(source.read_text()), root, ports.get(name, {}))
                if "transport" in doc:
                    for node in doc["transport"]["nodes"]:
                        node["address"] = f"127.0.0.1:{ports[node['name']]['50051']}"
                target.write_text(yaml.safe_dump(doc))
            else:
                target.symlink_to(source)
        env = {k: _moved(v, root, {}) for k, v in svc.get("environment", {}).items()}
        commands[name] = ([_moved(c, root, {}) for c in svc["command"]], {**os.environ, **env})
    return commands


def test_the_rendered_stack_trains_over_mutual_tls_as_written(any_stack, tmp_path):
    """No docker needed: every party runs its rendered command on its rendered files, each
    seeing only its own mounts (moved under a folder of its own), over loopback."""
    stack = any_stack
    services = _compose(stack)["services"]
    domains = [n for n in services if n != COORDINATOR]
    free = iter(free_ports(2 * len(domains)))
    ports = {d: {"50051": next(free), "50052": next(free)} for d in domains}
    commands = _materialise(stack, tmp_path / "roots", ports)
    cli = [sys.executable, "-m", "splitmesh.cli"]
    procs = {
        d: subprocess.Popen(
            [*cli, *commands[d][0]],
            env=commands[d][1],
            stdout=open(tmp_path / f"{d}.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for d in domains
    }
    try:
        coordinator_mesh = tmp_path / "roots" / COORDINATOR / "etc/splitmesh/mesh.yaml"
        wait = subprocess.run(
            [*cli, "mesh", "wait", str(coordinator_mesh), "--timeout", "120"],
            capture_output=True,
            text=True,
        )
        logs = {d: (tmp_path / f"{d}.log").read_text() for d in domains}
        assert wait.returncode == 0, (wait.stdout, wait.stderr, logs)
        for d in domains:  # the container's health check, on the plaintext port
            health = [*cli, "node", "health", f"127.0.0.1:{ports[d]['50052']}"]
            assert subprocess.run(health, capture_output=True).returncode == 0
        command, env = commands[COORDINATOR]
        train = subprocess.run([*cli, *command], capture_output=True, text=True, env=env)
        assert train.returncode == 0, (train.stdout, train.stderr)
    finally:
        for p in procs.values():
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            p.wait(30)
    volume = tmp_path / "roots" / COORDINATOR / "out"
    assert (volume / "catalog.db").is_file()  # the run's record kept on its volume
    (out,) = [p for p in volume.iterdir() if p.is_dir() and not p.name.startswith(".")]
    results = json.loads((out / "results.json").read_text())
    assert results["runs"][0]["metrics"]["roc_auc"] > 0.8  # written into the mounted folder
    for d in domains:  # each node kept its signed log and its trained part on its volume
        state = tmp_path / "roots" / "volumes" / f"{d}-state"
        assert (state / "audit.jsonl").is_file() and any((state / "models").iterdir()), d


def _docker_engine() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "docker is installed but its engine is not reachable (docker info failed)"
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "docker has no compose plugin"
    return None


def test_the_stack_trains_in_docker(stack):
    why = _docker_engine()
    if why:
        pytest.skip(f"{why}: the compose stack ran without containers only")
    compose = ["docker", "compose", "--project-directory", str(stack)]
    up = ["up", "--build", "--abort-on-container-exit", "--exit-code-from", COORDINATOR]
    try:
        subprocess.run([*compose, *up], check=True, timeout=1800)
        assert list((stack / "out").rglob("results.json"))
    finally:
        subprocess.run([*compose, "down", "-v"], capture_output=True)
