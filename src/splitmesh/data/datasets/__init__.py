"""Loaders and synthetic generators for the reference use cases' schemas."""
