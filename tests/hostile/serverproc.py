"""A real ``ninep serve`` process for hostile-client tests, and its /proc figures.

Bounds asserted against these figures are sizes and counts, never times.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port, wait_for_port

__all__ = ["ServerProcess", "serve_process"]


@dataclass
class ServerProcess:
    """A server started by :func:`serve_process`; ``log`` is its stderr file."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def status(self, key: str) -> int:
        """A figure of /proc/PID/status in kB (``VmRSS``, ``VmHWM``, ``Threads``...)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def rss_kib(self) -> int:
        return self.status("VmRSS")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextmanager
def serve_process(args: Sequence[str], tmp: Path, env: dict[str, str] | None = None,
                  log_level: str = "info") -> Iterator[ServerProcess]:
    """``python -m ninep serve ARGS`` on a free 127.0.0.1 port; stopped (SIGTERM) after."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ninep", "serve", "--log-level", log_level,
             "--listen", f"tcp://127.0.0.1:{port}", *args],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    running = ServerProcess(proc, port, log)
    try:
        wait_for_port(port, proc, 30)
        yield running
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
