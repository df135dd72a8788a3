"""How many worker processes: ``--workers N|auto`` and ``[server] workers``."""

from __future__ import annotations

import os

__all__ = ["MAX_WORKERS", "worker_count"]

# a bound that no host needs more of and that keeps a typo from forking thousands
MAX_WORKERS = 1024


def worker_count(value: int | str) -> int:
    """``"auto"``: the CPUs this process may run on (sched_getaffinity, so a cgroup's or
    taskset's narrowing counts), else a count 1..MAX_WORKERS; ValueError otherwise."""
    if value == "auto":
        return max(len(os.sched_getaffinity(0)), 1)
    if isinstance(value, str):
        try:
            value = int(value, 10)
        except ValueError:
            raise ValueError(f"{value!r}: expected a count or \"auto\"") from None
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"{value}: expected 1..{MAX_WORKERS} or \"auto\"")
    return value
