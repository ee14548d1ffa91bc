"""splitmesh: split learning across the domains of a data mesh."""

__version__ = "0.1.0"
