"""The coordinator's network file: what it sets on the transport it connects."""

from __future__ import annotations

import pytest

from splitmesh.errors import ConfigError
from splitmesh.transport.network import MeshNetwork, NodeAddress


def test_the_network_file_caps_replies_and_names_a_missing_node():
    net = MeshNetwork(
        insecure=True, max_reply_mb=3, nodes=[NodeAddress(name="a", address="127.0.0.1:1")]
    )
    t = net.connect(["a"], "mesh.yaml")
    try:
        assert t.max_reply == 3 * 2**20
    finally:
        t.close()
    assert MeshNetwork(nodes=[]).max_reply_mb == 1024  # protobuf's own limit is 2 GB
    with pytest.raises(ConfigError, match="no node named b"):
        net.connect(["a", "b"], "mesh.yaml")
