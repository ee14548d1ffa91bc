"""A Docker Compose stack for any mesh: one container per party, each with only its own key.

Each node mounts only its own domain's folders (read-only), keeps its state in a named
volume, and is healthy when the standard gRPC health service says so; the coordinator
starts once every node is healthy. Containers run as the user who rendered the stack
(group 0, as the image's writable folders expect), so the owner-only key files they mount
stay readable to them and to nobody else; the network between them has no way out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from splitmesh.deploy.layout import (
    CONFIG_DIR,
    COORDINATOR,
    HEALTH_PORT,
    MESH_FILE,
    NODE_FILE,
    OUT_DIR,
    POLICY_FILE,
    STATE_DIR,
    TLS_DIR,
    MeshLayout,
    container_env,
    dump_yaml,
)
from splitmesh.io import atomic_write_bytes, atomic_write_text


def _repository() -> Path | None:
    """The source tree this splitmesh runs from, when it has the Dockerfile (an editable
    install): the stack can then build its image."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "deploy" / "Dockerfile").is_file() else None


class ComposeStack:
    """``layout``'s mesh as a compose project in a folder of its own."""

    def __init__(self, layout: MeshLayout, *, image: str) -> None:
        self.layout, self.image = layout, image

    def document(self) -> dict[str, Any]:
        services = {d: self._node(d) for d in self.layout.domains}
        services[COORDINATOR] = self._coordinator()
        repo = _repository()
        if repo is not None:  # one image for every party, built once
            build = {"context": str(repo), "dockerfile": "deploy/Dockerfile"}
            for svc in services.values():
                svc["build"] = build
        return {
            "name": f"splitmesh-{self.layout.spec.name}".lower(),
            "services": services,
            "volumes": {f"{d}-state": {} for d in self.layout.domains},
            # internal: no party reaches anything outside the mesh
            "networks": {"mesh": {"internal": True}},
        }

    def _base(self, party: str, command: list[str], volumes: list[str]) -> dict[str, Any]:
        return {
            "image": f"${{SPLITMESH_IMAGE:-{self.image}}}",
            "user": "${SPLITMESH_UID:?run as the owner of the key files}:0",
            "command": command,
            "read_only": True,
            "tmpfs": ["/tmp"],
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "environment": container_env(party),
            "networks": ["mesh"],
            "volumes": [f"./{party}/tls:{TLS_DIR}:ro", *volumes],
        }

    def _node(self, name: str) -> dict[str, Any]:
        volumes = [
            f"./{name}/{NODE_FILE}:{CONFIG_DIR}/{NODE_FILE}:ro",
            f"./{MESH_FILE}:{CONFIG_DIR}/{MESH_FILE}:ro",
            *(f"{m.host}:{m.container}:ro" for m in self.layout.mounts[name]),
            f"{name}-state:{STATE_DIR}",
        ]
        if self.layout.policy is not None:
            volumes.append(f"./{POLICY_FILE}:{CONFIG_DIR}/{POLICY_FILE}:ro")
        svc = self._base(name, ["node", "serve", "--config", f"{CONFIG_DIR}/{NODE_FILE}"], volumes)
        svc |= {
            "restart": "on-failure",
            "stop_grace_period": "30s",  # the node closes its signed access log
            "healthcheck": {
                "test": ["CMD", "splitmesh", "node", "health", f"127.0.0.1:{HEALTH_PORT}"],
                "interval": "5s",
                "timeout": "10s",
                "retries": 3,
                "start_period": "300s",  # loading the table and torch
            },
        }
        return svc

    def _coordinator(self) -> dict[str, Any]:
        mesh = f"{CONFIG_DIR}/{MESH_FILE}"
        out = f"{OUT_DIR}/{self.layout.spec.name}"
        volumes = [f"./{COORDINATOR}/{MESH_FILE}:{mesh}:ro", f"./out:{OUT_DIR}"]
        command = ["train", mesh, "--out", out, "--resume"]  # one line per epoch in the log
        svc = self._base(COORDINATOR, command, volumes)
        svc["depends_on"] = {d: {"condition": "service_healthy"} for d in self.layout.domains}
        return svc

    def write(self, out: str | Path) -> list[Path]:
        """The stack under ``out``: compose.yaml, .env, each party's folder (keys 0600)."""
        out = Path(out).resolve()
        layout, written = self.layout, []

        def put(rel: str, text: str, *, private: bool = False) -> None:
            atomic_write_bytes(out / rel, text.encode(), private=private)
            written.append(out / rel)

        put("compose.yaml", dump_yaml(self.document()))
        put(".env", f"SPLITMESH_UID={os.getuid()}\nSPLITMESH_IMAGE={self.image}\n")
        put(MESH_FILE, dump_yaml(layout.mesh_document()))
        if layout.policy is not None:
            put(POLICY_FILE, layout.policy)
        put(f"{COORDINATOR}/{MESH_FILE}", dump_yaml(layout.coordinator_document()))
        for name in layout.domains:
            put(f"{name}/{NODE_FILE}", dump_yaml(layout.node_document(name)))
        for party, ident in layout.identities.items():
            put(f"{party}/tls/ca.crt", ident.ca.decode())
            put(f"{party}/tls/tls.crt", ident.cert.decode())
            put(f"{party}/tls/tls.key", ident.key.decode(), private=True)
        (out / "out").mkdir(exist_ok=True)
        atomic_write_text(out / "README.md", self._readme())
        return [*written, out / "README.md"]

    def _readme(self) -> str:
        return "\n".join(
            [
                f"# splitmesh: mesh {self.layout.spec.name} with Docker Compose",
                "",
                "`docker compose up --build --abort-on-container-exit coordinator` from this "
                "folder: the nodes start, the coordinator trains once every node is healthy "
                "and writes its results under `out/`. `docker compose down` keeps the nodes' "
                "state volumes (checkpoints, access logs); `down -v` removes them.",
                "",
                "Each `*/tls/tls.key` is its party's private key (owner-only): keep this folder "
                "out of version control.",
                "",
            ]
        )
