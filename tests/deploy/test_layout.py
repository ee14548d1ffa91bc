"""deploy/layout.py: one mesh file for every container, each domain's paths in its own folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from splitmesh.deploy.layout import COORDINATOR, MeshLayout, dump_yaml
from splitmesh.errors import ConfigError
from splitmesh.mesh.spec import load_mesh
from splitmesh.node.config import load_node_config


def _reload(tmp_path: Path, doc: dict, name: str = "mesh.yaml"):
    path = tmp_path / "rendered" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(dump_yaml(doc))
    return path


def test_every_domain_reads_only_under_its_own_container_folder(folders_mesh, tmp_path):
    layout = MeshLayout(folders_mesh)
    spec = load_mesh(_reload(tmp_path, layout.mesh_document()))
    left, right, labels = (spec.domain(d) for d in ("left", "right", "labels"))
    assert left.source == "/data/left/left.csv" and left.data_dirs == ["/data/left"]
    assert right.source.sql == "SELECT id, b1, b2 FROM read_csv('/data/right/right.csv')"
    # a glob moves with its folder; a string constant is not a path and stays
    assert "read_csv('/data/labels/*.csv')" in labels.source.sql
    assert "region = 'EU'" in labels.source.sql
    assert {m.host for m in layout.mounts["right"]} == {folders_mesh.parent.parent / "data/right"}
    # everything else of the mesh is as written
    assert spec.training.epochs == 25 and spec.model.bottom == [8] and spec.transport == "local"


def test_node_and_coordinator_files_are_valid_and_trust_one_another(folders_mesh, tmp_path):
    layout = MeshLayout(folders_mesh)
    coordinator = layout.identities[COORDINATOR]
    for name in layout.domains:
        cfg = load_node_config(_reload(tmp_path, layout.node_document(name), f"{name}.yaml"))
        assert cfg.name == name and cfg.mesh.domain == name and not cfg.insecure
        assert cfg.accept == [coordinator.fingerprint]
        assert cfg.health_listen is not None and cfg.state_dir == Path("/state")
    spec = load_mesh(_reload(tmp_path, layout.coordinator_document()))
    assert [n.name for n in spec.transport.nodes] == layout.domains
    assert spec.transport.nodes[0].address == "left:50051"


def test_each_party_has_its_own_key_under_one_ca(folders_mesh):
    layout = MeshLayout(folders_mesh)
    ca = x509.load_pem_x509_certificate(layout.identities[COORDINATOR].ca)
    prints = set()
    for party, ident in layout.identities.items():
        cert = x509.load_pem_x509_certificate(ident.cert)
        assert cert.subject.rfc4514_string() == f"CN={party}"
        assert cert.issuer == ca.subject
        key = load_pem_private_key(ident.key, None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        prints.add(ident.fingerprint)
    assert len(prints) == len(layout.parties) == 4


def test_a_sql_reading_outside_its_data_dirs_is_refused_naming_the_domain(folders_mesh):
    text = folders_mesh.read_text().replace(
        "read_csv('../data/right/right.csv')", "read_csv('../data/left/left.csv')"
    )
    folders_mesh.write_text(text)
    with pytest.raises(ConfigError, match=r"domain 'right' reads '../data/left/left.csv'"):
        MeshLayout(folders_mesh)


def test_a_domain_that_cannot_name_a_node_is_refused(folders_mesh):
    raw = yaml.safe_load(folders_mesh.read_text())
    raw["domains"][0]["name"] = "Left_Side"
    folders_mesh.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="domain 'Left_Side' cannot name a node"):
        MeshLayout(folders_mesh)


def test_settings_given_with_set_are_in_the_rendered_mesh(folders_mesh, tmp_path):
    layout = MeshLayout(folders_mesh, sets=["training.epochs=7"])
    assert load_mesh(_reload(tmp_path, layout.mesh_document())).training.epochs == 7


def test_domains_reading_one_file_are_found_and_each_extracted_to_its_own_columns(
    one_file_mesh, tmp_path
):
    import pyarrow.parquet as pq

    layout = MeshLayout(one_file_mesh)
    assert layout.shared_folders() == {
        "left": ["right", "labels"],
        "right": ["left", "labels"],
        "labels": ["left", "right"],
    }
    layout.extract(tmp_path / "data", layout.domains)
    assert layout.shared_folders() == {}
    columns = {
        d: pq.read_table(layout.extracted[d]).schema.names for d in ("left", "right", "labels")
    }
    assert columns == {"left": ["id", "a1", "a2"], "right": ["id", "b1", "b2"],
                       "labels": ["id", "label"]}  # fmt: skip
    spec = load_mesh(_reload(tmp_path, layout.mesh_document()))
    assert spec.domain("right").source == "/data/right/right.parquet"
    assert [m.host for m in layout.mounts["right"]] == [tmp_path / "data" / "right"]
