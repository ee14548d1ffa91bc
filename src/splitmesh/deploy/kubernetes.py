"""Kubernetes manifests for any mesh: one StatefulSet per domain node, the coordinator as a Job.

Per party: a TLS Secret with only its own key, a ConfigMap with its files; per node a
Service, a state volume, its own data read-only, gRPC probes on a plaintext port that serves
only the health service; NetworkPolicies that let only the coordinator reach the nodes and
let the nodes reach nothing. Every pod runs as a non-root user on a read-only root
filesystem with no capabilities.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Literal

from splitmesh.deploy.layout import (
    CONFIG_DIR,
    COORDINATOR,
    HEALTH_PORT,
    MESH_FILE,
    NODE_FILE,
    OUT_DIR,
    POLICY_FILE,
    PORT,
    STATE_DIR,
    TLS_DIR,
    UID,
    MeshLayout,
    Mount,
    container_env,
    dump_yaml,
)
from splitmesh.io import atomic_write_bytes, atomic_write_text

KUBERNETES_VERSION = "1.30"  # the schemas the manifests are checked against (gRPC probes: 1.27+)
DataVolume = Literal["claim", "host"]


class KubernetesManifests:
    """The manifests of ``layout``'s mesh in ``namespace``, image ``image``.

    ``data``: each domain's folders come from a PersistentVolumeClaim ``<domain>-data`` that
    its team provides (``claim``), or from the folders on the cluster's node (``host``: a
    one-machine cluster such as kind, for trying it out).
    """

    def __init__(
        self,
        layout: MeshLayout,
        *,
        namespace: str,
        image: str,
        data: DataVolume = "claim",
        state_size: str = "1Gi",
        memory: str = "4Gi",
    ) -> None:
        self.layout, self.namespace, self.image, self.data = layout, namespace, image, data
        self.state_size, self.memory = state_size, memory
        self.instance = layout.spec.name

    # -- the objects --------------------------------------------------------------------------
    def files(self) -> dict[str, list[dict[str, Any]]]:
        """File name -> the objects it holds, in the order they apply."""
        out: dict[str, list[dict[str, Any]]] = {"namespace.yaml": [self._namespace()]}
        for name in self.layout.domains:
            out[f"{name}-secret.yaml"] = [self._secret(name)]
            out[f"{name}.yaml"] = [
                self._config(name, {NODE_FILE: self.layout.node_document(name)}),
                self._service(name),
                self._statefulset(name),
                self._node_policy(name),
            ]
        out[f"{COORDINATOR}-secret.yaml"] = [self._secret(COORDINATOR)]
        out[f"{COORDINATOR}.yaml"] = [
            self._config(COORDINATOR, {MESH_FILE: self.layout.coordinator_document()}),
            self._claim(f"{COORDINATOR}-out", "1Gi"),
            self._job(),
            self._coordinator_policy(),
        ]
        return out

    def _meta(self, name: str, party: str | None = None) -> dict[str, Any]:
        labels = {
            "app.kubernetes.io/name": "splitmesh",
            "app.kubernetes.io/instance": self.instance,
        }
        if party is not None:
            labels.update(self._selector(party))
        return {"name": name, "namespace": self.namespace, "labels": labels}

    def _selector(self, party: str) -> dict[str, str]:
        component = "coordinator" if party == COORDINATOR else "domain-node"
        return {
            "app.kubernetes.io/instance": self.instance,
            "app.kubernetes.io/component": component,
            "splitmesh.io/party": party,
        }

    def _namespace(self) -> dict[str, Any]:
        # the restricted Pod Security Standard: every pod here must meet it (host folders
        # are outside every standard but privileged: a trial cluster only)
        level = "privileged" if self.data == "host" else "restricted"
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": self.namespace,
                "labels": {"pod-security.kubernetes.io/enforce": level},
            },
        }

    def _secret(self, party: str) -> dict[str, Any]:
        ident = self.layout.identities[party]
        b64 = {
            k: base64.b64encode(v).decode()
            for k, v in (("ca.crt", ident.ca), ("tls.crt", ident.cert), ("tls.key", ident.key))
        }
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self._meta(f"{party}-tls", party),
            "type": "kubernetes.io/tls",
            "data": b64,
        }

    def _config(self, party: str, files: dict[str, dict]) -> dict[str, Any]:
        data = {name: dump_yaml(doc) for name, doc in files.items()}
        if party != COORDINATOR:
            data[MESH_FILE] = dump_yaml(self.layout.mesh_document())
            if self.layout.policy is not None:
                data[POLICY_FILE] = self.layout.policy
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self._meta(f"{party}-config", party),
            "data": data,
        }

    def _service(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self._meta(name, name),
            "spec": {
                "selector": self._selector(name),
                "ports": [{"name": "grpc", "port": PORT, "targetPort": "grpc"}],
            },
        }

    def _claim(self, name: str, size: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": self._meta(name, COORDINATOR),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            },
        }

    def _container(self, party: str, args: list[str], mounts: list[dict]) -> dict[str, Any]:
        return {
            "name": "coordinator" if party == COORDINATOR else "node",
            "image": self.image,
            "args": args,
            "env": [{"name": k, "value": v} for k, v in container_env(party).items()],
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"memory": self.memory},
            },
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
                *mounts,
            ],
        }

    def _pod(self, party: str, container: dict, volumes: list[dict]) -> dict[str, Any]:
        return {
            "automountServiceAccountToken": False,  # no party talks to the Kubernetes API
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "fsGroup": UID,  # the Secret's files are group-readable by the party alone
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": f"{party}-config"}},
                {"name": "tls", "secret": {"secretName": f"{party}-tls", "defaultMode": 0o440}},
                {"name": "tmp", "emptyDir": {}},
                *volumes,
            ],
        }

    def _data_volumes(self, name: str, mounts: list[Mount]) -> tuple[list[dict], list[dict]]:
        """The domain's own folders, read-only: (volume mounts, volumes)."""
        if self.data == "host":
            vols = [
                {"name": f"data-{i}", "hostPath": {"path": str(m.host), "type": "Directory"}}
                for i, m in enumerate(mounts)
            ]
            at = [
                {"name": f"data-{i}", "mountPath": m.container, "readOnly": True}
                for i, m in enumerate(mounts)
            ]
            return at, vols
        claim = {"claimName": f"{name}-data", "readOnly": True}
        at = [
            {"name": "data", "mountPath": m.container, "readOnly": True}
            | ({"subPath": str(i)} if len(mounts) > 1 else {})
            for i, m in enumerate(mounts)
        ]
        return at, [{"name": "data", "persistentVolumeClaim": claim}]

    def _statefulset(self, name: str) -> dict[str, Any]:
        at, vols = self._data_volumes(name, self.layout.mounts[name])
        args = ["node", "serve", "--config", f"{CONFIG_DIR}/{NODE_FILE}"]
        container = self._container(name, args, [*at, {"name": "state", "mountPath": STATE_DIR}])
        probe = {"grpc": {"port": HEALTH_PORT}}  # the standard gRPC health service
        container |= {
            "ports": [
                {"name": "grpc", "containerPort": PORT},
                {"name": "health", "containerPort": HEALTH_PORT},
            ],
            # loading the domain's table and torch takes a while: the startup probe waits
            "startupProbe": probe | {"periodSeconds": 5, "failureThreshold": 120},
            "readinessProbe": probe | {"periodSeconds": 5},
            "livenessProbe": probe | {"periodSeconds": 20, "failureThreshold": 6},
        }
        pod = self._pod(name, container, vols)
        pod["terminationGracePeriodSeconds"] = 30  # the node closes its signed access log
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": self._meta(name, name),
            "spec": {
                "serviceName": name,
                "replicas": 1,  # a node holds one run's state: never two of it
                "selector": {"matchLabels": self._selector(name)},
                "template": {"metadata": {"labels": self._meta(name, name)["labels"]}, "spec": pod},
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "state"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": self.state_size}},
                        },
                    }
                ],
            },
        }

    def _job(self) -> dict[str, Any]:
        mesh = f"{CONFIG_DIR}/{MESH_FILE}"
        out = f"{OUT_DIR}/{self.instance}"
        # --resume: a coordinator the Job restarts picks up the run from its checkpoints
        args = ["train", mesh, "--out", out, "--resume"]  # one line per epoch in the log
        container = self._container(COORDINATOR, args, [{"name": "out", "mountPath": OUT_DIR}])
        wait = self._container(COORDINATOR, ["mesh", "wait", mesh, "--timeout", "900"], [])
        wait["name"] = "wait-for-nodes"
        pod = self._pod(COORDINATOR, container, [])
        pod["volumes"].append(
            {"name": "out", "persistentVolumeClaim": {"claimName": f"{COORDINATOR}-out"}}
        )
        pod |= {"initContainers": [wait], "restartPolicy": "OnFailure"}
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self._meta(f"{COORDINATOR}-train", COORDINATOR),
            "spec": {
                "backoffLimit": 3,
                "template": {
                    "metadata": {"labels": self._meta(COORDINATOR, COORDINATOR)["labels"]},
                    "spec": pod,
                },
            },
        }

    def _node_policy(self, name: str) -> dict[str, Any]:
        """Only the coordinator reaches node ``name``, on its gRPC port; it reaches nobody.
        (Kubelet's probes come from the node itself, which network policies let through.)"""
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self._meta(name, name),
            "spec": {
                "podSelector": {"matchLabels": self._selector(name)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": self._selector(COORDINATOR)}}],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    }
                ],
                "egress": [],
            },
        }

    def _coordinator_policy(self) -> dict[str, Any]:
        """The coordinator takes no connections; it reaches the nodes and the cluster's DNS."""
        nodes = {
            "app.kubernetes.io/instance": self.instance,
            "app.kubernetes.io/component": "domain-node",
        }
        dns = [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self._meta(COORDINATOR, COORDINATOR),
            "spec": {
                "podSelector": {"matchLabels": self._selector(COORDINATOR)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [
                    {
                        "to": [{"podSelector": {"matchLabels": nodes}}],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    },
                    {"to": [{"namespaceSelector": {}}], "ports": dns},
                ],
            },
        }

    # -- writing ------------------------------------------------------------------------------
    def write(self, out: str | Path) -> list[Path]:
        """Every manifest under ``out`` (Secrets owner-only), a kustomization and a README."""
        out = Path(out)
        written, files = [], self.files()
        for name, objects in files.items():
            text = dump_yaml(*objects)
            atomic_write_bytes(out / name, text.encode(), private=name.endswith("-secret.yaml"))
            written.append(out / name)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": list(files),
        }
        atomic_write_text(out / "kustomization.yaml", dump_yaml(kustomization))
        atomic_write_text(out / "README.md", self._readme())
        return [*written, out / "kustomization.yaml", out / "README.md"]

    def _readme(self) -> str:
        lines = [
            f"# splitmesh: mesh {self.instance} on Kubernetes",
            "",
            f"Namespace `{self.namespace}`, image `{self.image}` (build it from the repository "
            "root with `docker build -f deploy/Dockerfile -t "
            f"{self.image} .`). Apply with `kubectl apply -k .`; follow the run with "
            f"`kubectl -n {self.namespace} logs -f job/{COORDINATOR}-train`.",
            "",
            "Each domain node reads only its own data, mounted read-only:",
            "",
            "| domain | mounted at | from (on the machine that rendered this) |",
            "|---|---|---|",
        ]
        for name in self.layout.domains:
            for m in self.layout.mounts[name]:
                lines.append(f"| {name} | `{m.container}` | `{m.host}` |")
        if self.data == "claim":
            lines += [
                "",
                "Before applying, each domain's team provides a PersistentVolumeClaim "
                "`<domain>-data` in the namespace holding those files (with several folders, "
                "folder *i* under the subdirectory `i`).",
            ]
        lines += [
            "",
            "The `*-secret.yaml` files hold private keys: keep them out of version control.",
            "",
        ]
        return "\n".join(lines)
