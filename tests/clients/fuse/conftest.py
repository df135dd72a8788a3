"""A real ``ninep serve`` process and a real FUSE mount of it (``ninep fuse``), per module.

Every test gets a fresh directory in the mounted tree. The mount is unmounted
with ``fusermount3 -u`` whatever the tests do; the tests skip only where this
machine has no /dev/fuse, no fusermount3 or no libfuse for mfusepy to load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.serverproc import ServerProcess, serve_process

ROOT = Path(__file__).resolve().parents[3]
MSIZE = 16384  # small, so that reads, writes and listings cross many 9P messages
FUSERMOUNT = shutil.which("fusermount3")


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if FUSERMOUNT is None:
        return "no fusermount3 (Debian package fuse3; scripts/setup-env --with-test-tools)"
    try:
        import mfusepy  # type: ignore[import-untyped]  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse here: {exc}"
    return None


MISSING = _fuse_missing()


@pytest.fixture(scope="module")
def fuse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if MISSING:
        pytest.skip(MISSING)
    with serve_process(["--mount", "/=ram"], tmp_path_factory.mktemp("fuse-server"),
                       log_level="warning") as server:
        yield server


@pytest.fixture(scope="module")
def mountpoint(fuse_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Path]:
    """The server's tree mounted through ``ninep fuse``; unmounted after the module."""
    base = tmp_path_factory.mktemp("fuse")
    with fuse_mount(f"tcp://127.0.0.1:{fuse_server.port}", base / "mnt", base / "fuse.log"):
        yield base / "mnt"


class FuseMount:
    """Starts ``ninep fuse`` as a process; unmounts and reaps it on exit."""

    def __init__(self, server: str, mnt: Path, log: Path, *options: str) -> None:
        self.server, self.mnt, self.log, self.options = server, mnt, log, options
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Path:
        self.mnt.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ninep", "fuse", "--msize", str(MSIZE), *self.options,
                 self.server, str(self.mnt)], stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"ninep fuse did not mount: {self.log.read_text()}")
            time.sleep(0.05)
        return self.mnt

    def __exit__(self, *exc_info: object) -> None:
        assert self.proc is not None
        if os.path.ismount(self.mnt):
            done = subprocess.run([str(FUSERMOUNT), "-u", str(self.mnt)], capture_output=True)
            if done.returncode != 0:  # busy (a failed test left a file open): detach it
                subprocess.run([str(FUSERMOUNT), "-u", "-z", str(self.mnt)], capture_output=True)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def fuse_mount(server: str, mnt: Path, log: Path, *options: str) -> FuseMount:
    return FuseMount(server, mnt, log, *options)


@pytest.fixture
def workdir(mountpoint: Path) -> Path:
    """A fresh directory in the mounted tree."""
    path = mountpoint / f"t-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    return path
