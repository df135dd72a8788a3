"""CPU time per operation, of a server and of the client tool that loads it.

On a machine where the servers and the clients share the CPUs, ops/s alone cannot
say whether a server could go faster: the client's own CPU per operation bounds
what more server processes can win. With S the server's and C the client's CPU
time per operation (both from the kernel's accounting: /proc/PID/stat for the
server's processes, getrusage(RUSAGE_CHILDREN) for the client, which has exited),
one server process serves at most 1/S operations a second, and any number of
processes on P CPUs at most P/(S + C); so N processes can beat one by at most
``ceiling(S, C, P) = max(1, P * S / (S + C))``: at P = 2 that is 1.4 only when the
server spends at least 2.33 times the client's CPU per operation.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants now (a supervisor and its workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # gone meanwhile
            continue
        todo += [int(child) for child in children]
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (all its threads) so far."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:  # gone meanwhile: its time is lost to the figure
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def children_cpu_seconds() -> float:
    """CPU time of this process's children that have exited and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Cost:
    """CPU microseconds per operation: the server's processes, and the client's."""

    server_us: float
    client_us: float


class CpuMeter:
    """Measure around one client run: ``start()``, run the client to its exit,
    ``stop(operations)``. Only the client may exit meanwhile (it is the only
    child reaped between the two), and the server's processes must stay up."""

    def __init__(self, server_pid: int) -> None:
        self._pids = process_tree(server_pid)
        self._server = 0.0
        self._client = 0.0

    def start(self) -> None:
        self._server = sum(cpu_seconds(pid) for pid in self._pids)
        self._client = children_cpu_seconds()

    def stop(self, operations: float) -> Cost:
        server = sum(cpu_seconds(pid) for pid in self._pids) - self._server
        client = children_cpu_seconds() - self._client
        per_op = 1e6 / operations if operations else 0.0
        return Cost(server * per_op, client * per_op)


def ceiling(cost: Cost, cpus: int) -> float:
    """The most that any number of server processes can serve, over what one
    process can, when the client's and the servers' processes share ``cpus``
    CPUs (module docstring)."""
    total = cost.server_us + cost.client_us
    if cost.server_us <= 0 or total <= 0:
        return 0.0
    return max(1.0, cpus * cost.server_us / total)
