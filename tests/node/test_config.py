"""Node and mesh files: errors name the file and the field; the Node handler's rules."""

import numpy as np
import pytest

from splitmesh.errors import ConfigError, ProtocolError
from splitmesh.node.config import load_mesh_network, load_node_config
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.node import Node
from splitmesh.transport.messages import Ack, Bye, Forward, Hello, SetupHead

RUN_A, RUN_B = "a" * 32, "b" * 32


def write(path, text):
    path.write_text(text)
    return path


def test_node_file_paths_are_relative_to_the_file(tmp_path):
    f = write(
        tmp_path / "n.yaml",
        "name: payments\nlisten: 127.0.0.1:0\n"
        "mesh: {file: mesh.yaml, domain: payments}\ninsecure: true\n",
    )
    cfg = load_node_config(f)
    assert cfg.mesh.file == tmp_path / "mesh.yaml" and cfg.role == "mesh-domain"
    assert cfg.threads == 1 and cfg.tls is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: p\nrole: boss\nlisten: x\nmesh: {file: a, domain: p}\n", "role"),
        ("name: p\nmesh: {file: a, domain: p}\n", "listen"),
        ("name: p\nlisten: x\nmesh: {file: a, domain: p}\ncolour: red\n", "colour"),
        ("name: Bad_Name\nlisten: x\nmesh: {file: a, domain: p}\n", "name"),
        ("name: p\nlisten: x\ndata: {path: a}\n", "mesh"),
    ],
)
def test_node_file_errors_name_the_file_and_field(tmp_path, text, field):
    f = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=rf"bad\.yaml, field '{field}'"):
        load_node_config(f)


def test_mesh_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_mesh_network(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_mesh_network(write(tmp_path / "m.yaml", "nodes: [\n"))
    with pytest.raises(ConfigError, match="field 'deadline_s'"):
        load_mesh_network(write(tmp_path / "m.yaml", "deadline_s: -1\nnodes: []\n"))


def test_node_starts_a_fresh_party_per_run_and_refuses_unagreed_modes():
    made = []

    def make(hello):
        made.append(hello.mode)
        return ColumnsParty("payments", np.zeros((4, 2)), ["a", "b"])

    node = Node("payments", make, serves={"bottom"}, modes=["label-preserving"])
    with pytest.raises(ProtocolError, match=r"no open run \(Hello first\)"):
        node.handle(Forward("train", np.arange(2), 0, True))
    with pytest.raises(ProtocolError, match="does not serve SetupHead"):
        node.handle(SetupHead(4, {}, 0))
    with pytest.raises(ProtocolError, match="does not take part in label-sharing"):
        node.handle(Hello(RUN_A, "label-sharing"))
    reply = node.handle(Hello(RUN_A, "label-preserving"))
    assert isinstance(reply, Ack) and reply.info["data"]["rows"] == 4
    node.handle(Bye())
    node.handle(Hello(RUN_B, "label-preserving"))
    assert made == ["label-preserving", "label-preserving"]
