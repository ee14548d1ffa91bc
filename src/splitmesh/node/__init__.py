"""Domain nodes: their configuration, the process that serves one, and a local launcher."""
