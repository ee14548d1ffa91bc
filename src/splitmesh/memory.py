"""What a process has used: its peak resident memory, which every run reports per party."""

from __future__ import annotations

import sys


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (0.0 where the platform has no
    ``resource`` module)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts KiB, macOS bytes
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
