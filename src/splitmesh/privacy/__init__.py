"""Protections of what crosses the boundary, the attacks that measure what still leaks,
and the audit that runs both (``splitmesh privacy audit``)."""
