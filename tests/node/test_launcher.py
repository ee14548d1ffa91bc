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
