"""Pipelines that wire data, parties, transport and reporting for the reference use cases."""
