"""Back servers for the 9p backend's tests: real ``ninep serve`` processes and Debian's diod.

Each is a process on a free port (or a UNIX socket), stopped with the backend that
imports it, so the acceptance suite (factories.py) opens a 9p import like any backend.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ninep.backends.registry import open_backend
from ninep.vfs.node import Backend
from tests.conftest import free_port

__all__ = ["BackServer", "import_server", "start_diod", "start_ninep"]

DIOD = shutil.which("diod") or "/usr/sbin/diod"
ROOT_ATTACH = {"uname": "root", "uid": "0"}  # the suite changes owners: attach as root


@dataclass
class BackServer:
    """A back server process and the URL the 9p backend reaches it at."""

    argv: list[str]
    url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    ready: Path | None = field(default=None)  # the UNIX socket, for unix:// servers

    def start(self) -> BackServer:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=out,
                                         cwd=self.log.parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            if self._listening():
                return self
            time.sleep(0.05)
        raise AssertionError(f"{self.argv[0]} did not start listening on {self.url}")

    def _listening(self) -> bool:
        kind = socket.AF_UNIX if self.ready is not None else socket.AF_INET
        address: str | tuple[str, int] = str(self.ready) if self.ready is not None else \
            ("127.0.0.1", int(self.url.rsplit(":", 1)[1]))
        try:
            with socket.socket(kind) as probe:
                probe.settimeout(0.2)
                probe.connect(address)
            return True
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_ninep(scratch: Path, *mounts: str, unix: bool = False) -> BackServer:
    """``ninep serve --mount ...`` on a free TCP port or a UNIX socket in ``scratch``."""
    if unix:
        sock = scratch / f"back-{len(list(scratch.glob('back-*.sock')))}.sock"
        url, ready = f"unix://{sock}", sock
    else:
        url, ready = f"tcp://127.0.0.1:{free_port()}", None
    argv = [sys.executable, "-m", "ninep", "serve", "--log-level", "warning", "--listen", url]
    for mount in mounts:
        argv += ["--mount", mount]
    return BackServer(argv, url, scratch / "back.log", ready=ready).start()


def start_diod(scratch: Path, export: Path) -> BackServer:
    """Debian's diod exporting ``export`` (no auth), as tests/clients/conftest.py runs it."""
    if not os.path.exists(DIOD):
        pytest.skip("diod is not installed (apt-get install diod)")
    for parent in [export, *export.parents]:  # diod drops to the user: keep the path traversable
        if parent != parent.parent:
            os.chmod(parent, os.stat(parent).st_mode | 0o755)
    url = f"tcp://127.0.0.1:{free_port()}"
    argv = [DIOD, "-f", "-n", "-c", "/dev/null", "-d", "0", "-e", str(export), "-l",
            url.removeprefix("tcp://")]
    return BackServer(argv, url, scratch / "diod.log").start()


async def import_server(server: BackServer, aname: str = "", **options: str) -> Backend:
    """A 9p backend importing ``server`` (through the registry, as --mount opens it);
    closing the backend stops the server."""
    try:
        backend = await open_backend("9p", server.url,
                                     {**ROOT_ATTACH, "aname": aname, **options})
    except BaseException:
        server.stop()
        raise
    opened_close = backend.close

    async def close() -> None:
        try:
            await opened_close()
        finally:
            server.stop()

    backend.close = close  # type: ignore[method-assign]
    backend.back_server = server  # type: ignore[attr-defined]
    return backend
