"""Ports the launcher hands its nodes."""

from __future__ import annotations

import socket

from splitmesh.node.launcher import free_ports


def test_free_ports_are_distinct_and_free_once_returned():
    # a CI run had two nodes of one mesh given the same port (picked one by one)
    ports = free_ports(200)
    assert len(set(ports)) == 200
    with socket.socket() as s:  # released: a node can bind the port it was given
        s.bind(("127.0.0.1", ports[0]))


def test_a_node_whose_port_was_taken_before_it_bound_starts_on_another(tmp_path, monkeypatch):
    """Ports are picked free, then bound by the node process a moment later: another
    process can take one in between. That node is started again on a new port, the mesh
    file follows, and the node's log says why in one line."""
    from splitmesh.data.datasets.creditcard import synthetic_creditcard, write_creditcard_csv
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.node import launcher
    from splitmesh.node.config import MeshRef, load_mesh_network
    from splitmesh.usecases.fraud import fraud_mesh

    data = tmp_path / "creditcard.csv"
    write_creditcard_csv(data, synthetic_creditcard(500, seed=1, fraud_rate=0.05))
    mesh_file = fraud_mesh(tmp_path / "fraud", data=data)
    nodes = {d: MeshRef(file=mesh_file, domain=d) for d in load_mesh(mesh_file).domain_names}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([[taken, *free_ports(len(nodes) - 1)]])
        monkeypatch.setattr(launcher, "free_ports", lambda n: next(picks, None) or free_ports(n))
        with launcher.LocalMesh(tmp_path / "mesh", nodes, insecure=True) as mesh:
            first = next(iter(nodes))
            assert mesh.addresses[first] != f"127.0.0.1:{taken}"
            network = {n.name: n.address for n in load_mesh_network(mesh.mesh_file).nodes}
            assert network == mesh.addresses and len(set(network.values())) == len(nodes)
            log = (tmp_path / "mesh" / "logs" / f"{first}.log").read_text()
            assert f"cannot listen on 127.0.0.1:{taken}" in log
            assert "Traceback" not in log
