"""deploy/kubernetes.py: manifests for any mesh, valid against the Kubernetes schemas."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from splitmesh.deploy.kubernetes import KUBERNETES_VERSION, KubernetesManifests
from splitmesh.deploy.layout import COORDINATOR, HEALTH_PORT, PORT, MeshLayout
from splitmesh.mesh.spec import load_mesh
from splitmesh.node.config import NodeConfig


@pytest.fixture
def manifests(folders_mesh) -> KubernetesManifests:
    return KubernetesManifests(MeshLayout(folders_mesh), namespace="mesh-test", image="sm:1")


def _objects(m: KubernetesManifests) -> list[dict]:
    return [o for objs in m.files().values() for o in objs]


def _kind(m: KubernetesManifests, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in _objects(m) if o["kind"] == kind}


def test_every_manifest_validates_against_the_kubernetes_schemas(folders_mesh):
    layout = MeshLayout(folders_mesh)
    for data in ("claim", "host"):
        m = KubernetesManifests(layout, namespace="mesh-test", image="sm:1", data=data)
        for obj in _objects(m):
            # strict: an unknown or misspelt field is an error too
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    # the check bites: a misspelt field of a pod is refused
    (sts, *_) = _kind(m, "StatefulSet").values()
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBERNETES_VERSION, strict=True)


def test_each_secret_holds_only_its_own_partys_key(manifests):
    secrets = _kind(manifests, "Secret")
    assert set(secrets) == {f"{p}-tls" for p in manifests.layout.parties}
    for name, secret in secrets.items():
        party = name.removesuffix("-tls")
        files = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        assert set(files) == {"ca.crt", "tls.crt", "tls.key"}
        cert = x509.load_pem_x509_certificate(files["tls.crt"])
        assert cert.subject.rfc4514_string() == f"CN={party}"
        key = load_pem_private_key(files["tls.key"], None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    # and a pod mounts only its own party's Secret
    pods = [*_kind(manifests, "StatefulSet").values(), *_kind(manifests, "Job").values()]
    for obj in pods:
        party = obj["metadata"]["labels"]["splitmesh.io/party"]
        vols = obj["spec"]["template"]["spec"]["volumes"]
        assert [v["secret"]["secretName"] for v in vols if "secret" in v] == [f"{party}-tls"]


def test_each_node_mounts_only_its_own_data_read_only_and_keeps_state_on_a_volume(folders_mesh):
    layout = MeshLayout(folders_mesh)
    for data in ("claim", "host"):
        m = KubernetesManifests(layout, namespace="mesh-test", image="sm:1", data=data)
        for name, sts in _kind(m, "StatefulSet").items():
            pod = sts["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            mounts = {v["mountPath"]: v for v in container["volumeMounts"]}
            data_mounts = [p for p in mounts if p.startswith("/data")]
            assert data_mounts == [f"/data/{name}"], name
            assert mounts[f"/data/{name}"]["readOnly"] is True
            assert "/state" in mounts
            assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
            sources = [v for v in pod["volumes"] if "persistentVolumeClaim" in v or "hostPath" in v]
            if data == "claim":
                assert [v["persistentVolumeClaim"]["claimName"] for v in sources] == [
                    f"{name}-data"
                ]
            else:
                assert [v["hostPath"]["path"] for v in sources] == [
                    str(mo.host) for mo in layout.mounts[name]
                ]


def test_pods_run_non_root_read_only_without_capabilities_and_probe_grpc_health(manifests):
    pods = [*_kind(manifests, "StatefulSet").values(), *_kind(manifests, "Job").values()]
    assert len(pods) == len(manifests.layout.parties)
    for obj in pods:
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for c in [*pod["containers"], *pod.get("initContainers", [])]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
    for sts in _kind(manifests, "StatefulSet").values():
        (c,) = sts["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": HEALTH_PORT}
        # the node file the ConfigMap carries opens that plaintext health port
        config = _kind(manifests, "ConfigMap")[f"{sts['metadata']['name']}-config"]
        node = NodeConfig.model_validate(yaml.safe_load(config["data"]["node.yaml"]))
        assert node.health_listen == f"0.0.0.0:{HEALTH_PORT}"


def test_only_the_coordinator_reaches_the_nodes_and_the_nodes_reach_nothing(manifests):
    policies = _kind(manifests, "NetworkPolicy")
    assert set(policies) == set(manifests.layout.parties)
    coordinator = {"splitmesh.io/party": COORDINATOR}
    for name in manifests.layout.domains:
        spec = policies[name]["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["egress"] == []
        (rule,) = spec["ingress"]
        (source,) = rule["from"]
        assert coordinator.items() <= source["podSelector"]["matchLabels"].items()
        assert rule["ports"] == [{"protocol": "TCP", "port": PORT}]
    assert policies[COORDINATOR]["spec"]["ingress"] == []


def test_the_coordinator_job_waits_for_the_nodes_then_trains_its_mesh_file(manifests):
    (job,) = _kind(manifests, "Job").values()
    pod = job["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][:2] == ["mesh", "wait"]
    assert pod["containers"][0]["args"][0] == "train" and "--resume" in pod["containers"][0]["args"]
    mesh = _kind(manifests, "ConfigMap")[f"{COORDINATOR}-config"]["data"]["mesh.yaml"]
    spec = yaml.safe_load(mesh)
    assert [n["address"] for n in spec["transport"]["nodes"]] == [
        f"{d}:{PORT}" for d in manifests.layout.domains
    ]


def test_written_files_keep_keys_owner_only_and_list_every_manifest(manifests, tmp_path):
    written = manifests.write(tmp_path / "k8s")
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.name.endswith("-secret.yaml"):
            assert mode == 0o600, path
        else:
            assert mode & 0o044, path  # readable by the team
    kustomization = yaml.safe_load((tmp_path / "k8s" / "kustomization.yaml").read_text())
    manifest_files = {p.name for p in written} - {"kustomization.yaml", "README.md"}
    assert set(kustomization["resources"]) == manifest_files
    # what was written parses back to the same objects
    again = [
        o
        for f in kustomization["resources"]
        for o in yaml.safe_load_all((tmp_path / "k8s" / f).read_text())
    ]
    assert [o["kind"] for o in again] == [o["kind"] for o in _objects(manifests)]


def test_the_cli_renders_the_shipped_examples(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from splitmesh.cli import app

    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    for example in ("fraud", "hm", "movielens"):
        out = tmp_path / example
        done = CliRunner().invoke(
            app,
            [
                "deploy",
                "kubernetes",
                str(root / "examples" / example / "mesh.yaml"),
                "--out",
                str(out),
                "--extract",
                "none",  # rendering only: the examples' data need not be here
            ],
        )
        assert done.exit_code == 0, done.output
        mesh = load_mesh(root / "examples" / example / "mesh.yaml")
        assert {f"{d}.yaml" for d in mesh.domain_names} <= {p.name for p in out.iterdir()}


def _cluster() -> str | None:
    if shutil.which("kubectl") is None:
        return "no kubectl on this machine"
    probe = subprocess.run(
        ["kubectl", "version", "--request-timeout=5s", "-o", "json"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return "kubectl reaches no cluster (kubectl version failed)"
    return None


def test_a_reachable_cluster_accepts_the_manifests(manifests, tmp_path):
    why = _cluster()
    if why:
        pytest.skip(f"{why}: the manifests were checked against the schemas only")
    out = tmp_path / "k8s"
    manifests.write(out)
    kubectl = ["kubectl", "--request-timeout=30s"]
    # the namespace for real, then the API server validates and admits every other object
    # (pod security included) without creating it: a real run needs the image in the
    # cluster's registry
    subprocess.run([*kubectl, "apply", "-f", str(out / "namespace.yaml")], check=True)
    try:
        rest = [
            f"--filename={out / f}"
            for f in yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
            if f != "namespace.yaml"
        ]
        done = subprocess.run(
            [*kubectl, "apply", "--dry-run=server", *rest], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    finally:
        subprocess.run([*kubectl, "delete", "namespace", manifests.namespace, "--wait=false"])
