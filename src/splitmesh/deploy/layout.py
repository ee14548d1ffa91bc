"""What every party of a mesh gets when it runs in a container of its own.

One mesh file is shared by every party, with each domain's source rewritten to the folder
its container mounts (``/data/<domain>``); a container mounts only its own domain's folders,
so the other domains' paths lead nowhere inside it. Each node gets a node file (its own
certificate, the coordinator's fingerprint, its state on a volume, a plaintext port that
serves only the gRPC health service for probes); the coordinator gets the mesh file plus the
network. Certificates are made in memory: the CA's key is thrown away, so nobody can mint
another party later.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from splitmesh.errors import ConfigError
from splitmesh.mesh.spec import DomainSpec, MeshSpec, SqlSource, load_mesh
from splitmesh.transport.grpc.tls import check_party_name, fingerprint
from splitmesh.transport.identity import issue_certificates

COORDINATOR = "coordinator"
PORT, HEALTH_PORT = 50051, 50052
CONFIG_DIR, TLS_DIR, STATE_DIR, OUT_DIR = "/etc/splitmesh", "/etc/splitmesh/tls", "/state", "/out"
MESH_FILE, NODE_FILE, POLICY_FILE = "mesh.yaml", "node.yaml", "policy.yaml"
UID = 10001  # the image's unprivileged user (deploy/Dockerfile)


@dataclasses.dataclass(frozen=True)
class Mount:
    """A folder of the domain's own data (on this host) and where its container sees it."""

    host: Path
    container: str


@dataclasses.dataclass(frozen=True)
class Identity:
    """A party's certificate and key (PEM) and the mesh CA's certificate."""

    ca: bytes
    cert: bytes
    key: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


class MeshLayout:
    """Every party's files for the mesh file at ``path``, as containers see them."""

    def __init__(
        self,
        path: str | Path,
        *,
        sets: Sequence[str] = (),
        policy: str | Path | None = None,
        days: int = 365,
    ) -> None:
        self.path = Path(path)
        self.spec: MeshSpec = load_mesh(self.path, sets)
        if self.spec.products is not None:
            raise ConfigError(
                f"mesh file {self.path}: products: {self.spec.products!r} is not carried into "
                "containers yet",
                hint="deploy a copy of the mesh file without products:",
            )
        self.domains = [d.name for d in self.spec.domains]
        for name in self.domains:
            self._check_name(name)
        self.policy = Path(policy).read_text() if policy is not None else None
        self.mounts = {d.name: _mounts(d, self.spec.base) for d in self.spec.domains}
        self.extracted: dict[str, Path] = {}
        self._mesh = self._mesh_document()  # a path no container could read fails here
        ca, issued = issue_certificates([COORDINATOR, *self.domains], days=days)
        self.identities = {p: Identity(ca, cert, key) for p, (cert, key) in issued.items()}

    def shared_folders(self) -> dict[str, list[str]]:
        """Domains whose containers would mount a folder another domain reads too (the
        whole of a table of which each domain selects its columns, labels included)."""
        out: dict[str, list[str]] = {}
        for a in self.domains:
            for b in self.domains:
                if a != b and any(
                    _overlap(m.host, n.host) for m in self.mounts[a] for n in self.mounts[b]
                ):
                    out.setdefault(a, []).append(b)
        return out

    def extract(self, folder: str | Path, domains: list[str]) -> None:
        """Each of ``domains`` gets its own table, read here by its own source and written
        as ``folder/<domain>/<domain>.parquet``: its container then mounts that alone."""
        from splitmesh.data.sources import write_parquet

        for name in domains:
            d = self.spec.domain(name)
            target = Path(folder).resolve() / name / f"{name}.parquet"
            write_parquet(d.source_for(self.spec.base), name, target)
            self.extracted[name] = target
            self.mounts[name] = [Mount(target.parent, f"/data/{name}")]
        self._mesh = self._mesh_document()

    def _check_name(self, name: str) -> None:
        try:
            check_party_name(name)
        except ConfigError as exc:
            raise ConfigError(
                f"mesh file {self.path}: domain {name!r} cannot name a node: {exc}"
            ) from None
        if name == COORDINATOR:
            raise ConfigError(f"mesh file {self.path}: a domain may not be named {COORDINATOR!r}")

    @property
    def parties(self) -> list[str]:
        return [COORDINATOR, *self.domains]

    @property
    def label_domain(self) -> str:
        return self.spec.label.domain

    def mesh_document(self) -> dict[str, Any]:
        """The mesh file every party reads, each domain's source in its container's folders."""
        return copy.deepcopy(self._mesh)

    def _mesh_document(self) -> dict[str, Any]:
        domains = [
            self._containerised(d, self.mounts[d.name]).model_dump(mode="json", exclude_unset=True)
            for d in self.spec.domains
        ]
        doc = self.spec.model_dump(mode="json", exclude_unset=True, exclude={"base", "transport"})
        return {**doc, "domains": domains}

    def coordinator_document(self, address: str = "{name}:" + str(PORT)) -> dict[str, Any]:
        """The coordinator's mesh file: the shared one plus the nodes' network."""
        return {
            **self.mesh_document(),
            "transport": {
                "tls": {f: f"{TLS_DIR}/{n}" for f, n in _TLS_FILES.items()},
                "deadline_s": 120,
                "retries": 8,  # a node restarted by its orchestrator comes back on its own
                "nodes": [{"name": d, "address": address.format(name=d)} for d in self.domains],
            },
        }

    def node_document(self, name: str) -> dict[str, Any]:
        """Node ``name``'s node file: its TLS files, whom it serves, its state volume."""
        doc = {
            "name": name,
            "listen": f"0.0.0.0:{PORT}",
            "health_listen": f"0.0.0.0:{HEALTH_PORT}",
            "mesh": {"file": f"{CONFIG_DIR}/{MESH_FILE}", "domain": name},
            "state_dir": STATE_DIR,
            "tls": {f: f"{TLS_DIR}/{n}" for f, n in _TLS_FILES.items()},
            "accept": [self.identities[COORDINATOR].fingerprint],
        }
        if self.policy is not None:
            doc["policy"] = f"{CONFIG_DIR}/{POLICY_FILE}"
        return doc

    def _containerised(self, d: DomainSpec, mounts: list[Mount]) -> DomainSpec:
        dirs = [m.container for m in mounts]
        if d.name in self.extracted:  # its own table, exactly as its source selected it
            inside = f"{dirs[0]}/{self.extracted[d.name].name}"
            return d.model_copy(update={"source": inside, "data_dirs": dirs})
        if isinstance(d.source, SqlSource):
            sql = _rewrite_sql(d, self.spec.base, mounts, self.path)
            return d.model_copy(update={"source": SqlSource(sql=sql), "data_dirs": dirs})
        source = Path(d.source)
        source = source if source.is_absolute() else self.spec.base / source
        inside = dirs[0] if source.is_dir() else f"{dirs[0]}/{source.name}"
        return d.model_copy(update={"source": inside, "data_dirs": dirs})


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people and kubectl: no anchors, files embedded as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(*docs: Any) -> str:
    """``docs`` as one YAML stream, keys in the order given."""
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False)


def container_env(party: str) -> dict[str, str]:
    """A party's environment: the root filesystem is read-only, so caches and spills go to
    /tmp; what splitmesh keeps for the party (its catalog, keys) goes to its volume."""
    env = {"HOME": "/tmp", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib"}
    if party == COORDINATOR:  # the run's catalog beside its results, kept after the run
        return {**env, "SPLITMESH_HOME": f"{OUT_DIR}/.splitmesh",
                "SPLITMESH_CATALOG": f"{OUT_DIR}/catalog.db"}  # fmt: skip
    return {**env, "SPLITMESH_HOME": f"{STATE_DIR}/.splitmesh"}


# the TLS files' names inside a container (a Kubernetes TLS Secret's keys)
_TLS_FILES = {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"}


def _norm(p: str | Path, base: Path) -> Path:
    """Absolute and normalised, without following links or globs (they may not exist yet)."""
    p = Path(p)
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _mounts(d: DomainSpec, base: Path) -> list[Mount]:
    """The folders domain ``d`` reads: what its container mounts, read-only."""
    if d.data_dirs:
        folders = [_norm(x, base) for x in d.data_dirs]
    elif isinstance(d.source, SqlSource):
        folders = [_norm(base, base)]
    else:
        source = _norm(d.source, base)
        folders = [source if source.is_dir() else source.parent]
    root = f"/data/{d.name}"
    if len(folders) == 1:
        return [Mount(folders[0], root)]
    return [Mount(f, f"{root}/{i}") for i, f in enumerate(folders)]


def _rewrite_sql(d: DomainSpec, base: Path, mounts: list[Mount], mesh: Path) -> str:
    """Domain ``d``'s SQL with every file it reads moved to its container's folders; a file
    outside every folder the domain may read is an error here, as it would be on its node."""
    from splitmesh.data.sources import map_paths

    def move(text: str) -> str | None:
        if "://" in text:  # a remote object: no folder to mount
            return None
        target = _norm(text, base)
        for mount in mounts:
            if target == mount.host or mount.host in target.parents:
                return str(Path(mount.container) / target.relative_to(mount.host))
        raise ConfigError(
            f"mesh file {mesh}: domain {d.name!r} reads {text!r}, outside its data folders "
            f"{[str(x.host) for x in mounts]}",
            hint="list the folder under the domain's data_dirs",
        )

    return map_paths(d.source.sql, move)
