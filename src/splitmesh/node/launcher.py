"""``splitmesh mesh up``: a whole mesh on this machine, one process per node on 127.0.0.1.

Creates the certificates, writes each node's file and the coordinator's mesh file, starts
the node processes at once, waits until each one's gRPC health service says SERVING, and
stops them all at once on exit.

Each node is its own process, in its own session, running ``splitmesh node serve`` on its
own node file, as on a host of its own. Where the platform has a fork server, the nodes are
forked from one that has already imported what every node imports (torch and pandas are
most of a second of CPU each time), instead of each interpreter importing it again.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from splitmesh.errors import TransportError
from splitmesh.node.config import (
    MeshNetwork,
    MeshRef,
    NodeAddress,
    NodeConfig,
    NodeLimits,
    TlsConfig,
    dump,
    load_mesh_network,
    load_node_config,
)
from splitmesh.transport.grpc import Endpoint, TlsFiles, create_certificates, wait_serving
from splitmesh.transport.grpc.server import CANNOT_LISTEN
from splitmesh.transport.grpc.tls import read_fingerprints

COORDINATOR = "coordinator"


# What the fork server imports once for every node. Nothing here may import grpc: a
# process that forks must not have initialised it. onnx (0.5 s, nearly all of it
# ml_dtypes' initialisation) is what torch's exporter imports when a domain publishes its
# part: once here rather than once per domain at the end of every run.
_PRELOAD = [
    "torch", "pandas", "duckdb", "splitmesh.split.domain", "splitmesh.split.node",
    "splitmesh.privacy.protections", "onnx", "torch.onnx",
]  # fmt: skip


def _serve_node(config: str, log: str) -> None:
    """A node forked from the fork server: its own session (a signal to it reaches nothing
    else), its output to its log, then the same ``splitmesh node serve`` as ever."""
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from splitmesh.cli import _main

    # the command as the console script runs it: an error is one clear line, not a trace
    sys.argv = ["splitmesh", "node", "serve", "--config", config]
    sys.exit(_main())


class _Forked:
    """A node process forked from the fork server, with the part of Popen's API the mesh
    uses."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process, self.pid = process, process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired("splitmesh node serve", timeout or 0)
        return code


def _fork_server():
    """The fork server's context, preloading what nodes import; None where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _signal(pid: int, sig: int) -> None:
    """``sig`` to a node's whole session; to the node alone if it has not made one yet."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):  # else gone already
            os.kill(pid, sig)


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free now.

    Every socket stays bound until all are picked: closed one by one, the kernel may hand
    the same ephemeral port out twice (two nodes of one mesh then fought for one port)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def _one_thread() -> None:
    """The coordinator shares this host's cores with its nodes: one torch thread, as each
    node has (node/serve.py). With torch's default (a thread per core) OpenMP workers spin
    between the top's small ops on the core a node needs: on the fraud mesh over gRPC the
    coordinator burnt 2.4 s of CPU instead of 1.0 for the same steps, and each epoch took
    10-30 % longer."""
    import torch

    torch.set_num_threads(1)


class LocalMesh:
    """Node processes on loopback for ``nodes`` ({name: its mesh file and domain}).

    ``models``: each node saves its trained part under ``models/<name>`` (default: in its
    state folder).
    """

    def __init__(
        self,
        workdir: str | Path,
        nodes: dict[str, MeshRef],
        *,
        insecure: bool = False,
        deadline_s: float = 60.0,
        models: str | Path | None = None,
        policy: str | Path | None = None,
        limits: NodeLimits | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.policy = Path(policy).resolve() if policy is not None else None  # every node's copy
        self.models = Path(models).resolve() if models is not None else None
        self.nodes, self.insecure, self.deadline_s = nodes, insecure, deadline_s
        self.limits = limits or NodeLimits()
        self.procs: dict[str, subprocess.Popen | _Forked] = {}
        self.configs: dict[str, Path] = {}
        self.addresses: dict[str, str] = {}
        self.mesh_file = self.workdir / "mesh.yaml"

    # -- files ---------------------------------------------------------------------------------
    def write_files(self) -> Path:
        certs = self.workdir / "certs"
        # every party gets an identity (it signs PSI and its audit log), even in plaintext
        prints = self._certificates(certs, [COORDINATOR, *self.nodes])
        ids = {
            p: TlsConfig(ca=certs / "ca.crt", cert=certs / f"{p}.crt", key=certs / f"{p}.key")
            for p in [COORDINATOR, *self.nodes]
        }
        tls = {} if self.insecure else ids
        ports = free_ports(len(self.nodes))
        for (name, ref), port in zip(self.nodes.items(), ports, strict=True):
            cfg = NodeConfig(
                name=name,
                listen=f"127.0.0.1:{port}",
                mesh=ref,
                models=self.models / name if self.models else None,
                policy=self.policy,
                state_dir=self.workdir / "state" / name,
                tls=tls.get(name),
                identity=ids[name] if self.insecure else None,
                accept=[] if self.insecure else [prints[COORDINATOR]],
                insecure=self.insecure,
                limits=self.limits,
            )
            self.configs[name] = dump(cfg, self.workdir / "nodes" / f"{name}.yaml")
            self.addresses[name] = cfg.listen
        mesh = MeshNetwork(
            tls=tls.get(COORDINATOR),
            insecure=self.insecure,
            deadline_s=self.deadline_s,
            nodes=self._node_addresses(),
        )
        return dump(mesh, self.mesh_file)

    def _node_addresses(self) -> list[NodeAddress]:
        return [NodeAddress(name=n, address=a) for n, a in self.addresses.items()]

    def _move(self, names: list[str]) -> None:
        """Give these nodes new ports (their node files and the mesh file rewritten)."""
        for name, port in zip(names, free_ports(len(names)), strict=True):
            cfg = load_node_config(self.configs[name]).model_copy(
                update={"listen": f"127.0.0.1:{port}"}
            )
            dump(cfg, self.configs[name])
            self.addresses[name] = cfg.listen
        mesh = load_mesh_network(self.mesh_file)
        dump(mesh.model_copy(update={"nodes": self._node_addresses()}), self.mesh_file)

    def _certificates(self, certs: Path, parties: list[str]) -> dict[str, str]:
        """The workdir's mesh identities, kept across runs (a node's audit log stays signed
        by one key); a new CA only when a party has none, retiring the logs of old keys."""
        known = certs / "fingerprints.json"
        if known.is_file():
            prints = read_fingerprints(known)
            files = [certs / f"{p}.{ext}" for p in parties for ext in ("crt", "key")]
            if set(parties) <= set(prints) and all(f.is_file() for f in files):
                return prints
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for log in (self.workdir / "state").glob("*/audit.jsonl"):
            for f in (log, log.with_name(log.name + ".head")):
                f.rename(f.with_name(f"{f.name}.retired-{stamp}"))
        return create_certificates(certs, parties, force=True)

    def outputs(self, name: str) -> Path:
        """Where node ``name`` writes its scores (its default outputs folder)."""
        return self.workdir / "state" / name / "outputs"

    # -- processes -------------------------------------------------------------------------------
    def start(self, name: str) -> subprocess.Popen | _Forked:
        """Start (or restart) one node's process from its node file."""
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        ctx = _fork_server()
        if ctx is not None:
            process = ctx.Process(
                target=_serve_node, args=(str(self.configs[name]), str(log)), name=name
            )
            process.start()
            self.procs[name] = _Forked(process)
            return self.procs[name]
        cmd = [
            sys.executable,
            "-m",
            "splitmesh.cli",
            "node",
            "serve",
            "--config",
            str(self.configs[name]),
        ]
        with open(log, "ab") as out:
            self.procs[name] = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self.procs[name]

    def wait_ready(self, names: list[str] | None = None, timeout: float = 180.0) -> None:
        """Until every named node's health service says SERVING (asked as the coordinator,
        over the same mutual TLS); a node that exits meanwhile shows its log."""
        names = list(names or self.procs)
        tls = None if self.insecure else TlsFiles.for_party(self.workdir / "certs", COORDINATOR)

        def exited(name: str) -> str | None:
            code = self.procs[name].poll()
            if code is None:
                return None
            return f"exited with code {code} while starting:\n{self._tail(name)}"

        endpoints = [Endpoint(n, self.addresses[n]) for n in names]
        wait_serving(endpoints, tls=tls, timeout=timeout, failed=exited)

    def _wait_moving_taken_ports(self, attempts: int = 3) -> None:
        """wait_ready; a node that could not bind the port picked for it (another process
        took it between the pick and the bind) is started again on a new one."""
        for attempt in range(attempts):
            try:
                return self.wait_ready()
            except TransportError:
                taken = [
                    n
                    for n, p in self.procs.items()
                    if p.poll() is not None and CANNOT_LISTEN in self._tail(n)
                ]
                if not taken or attempt == attempts - 1:
                    raise
                self._move(taken)
                for name in taken:
                    self.start(name)

    def _log(self, name: str) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _tail(self, name: str, lines: int = 15) -> str:
        return "\n".join(self._log(name).splitlines()[-lines:])

    def up(self, meanwhile: Callable[[], object] | None = None) -> Path:
        """Start every node, run ``meanwhile`` (the coordinator's own loading) while they
        start, wait until all serve; nothing left running if any of that fails."""
        self.write_files()
        failed: list[BaseException] = []

        def start_all() -> None:
            try:
                for name in self.nodes:
                    self.start(name)
            except BaseException as exc:  # re-raised below, in the caller's thread
                failed.append(exc)

        # the first start waits while the fork server imports: meanwhile, the caller's own
        starter = threading.Thread(target=start_all, name="mesh-up")
        try:
            starter.start()
            try:
                if meanwhile is not None:
                    meanwhile()
            finally:  # every node it will start is started before any is stopped
                starter.join()
            if failed:
                raise failed[0]
            self._wait_moving_taken_ports()
        except BaseException:
            self.down()
            raise
        _one_thread()
        return self.mesh_file

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        self._stop([name], sig, timeout)

    def _stop(self, names: list[str], sig: int, timeout: float) -> None:
        """Signal every named node at once, then wait: their grace periods overlap."""
        live = {n: p for n in names if (p := self.procs.get(n)) is not None and p.poll() is None}
        for proc in live.values():
            _signal(proc.pid, sig)
        deadline = time.monotonic() + timeout
        for proc in live.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc.pid, signal.SIGKILL)
                proc.wait()

    def down(self) -> None:
        self._stop(list(self.procs), signal.SIGTERM, 10.0)

    def __enter__(self) -> LocalMesh:
        self.up()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()
