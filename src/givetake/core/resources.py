"""What this process may use of the machine."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
