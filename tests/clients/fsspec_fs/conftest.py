"""A `ninep serve --mount /=ram` process for the fsspec tests, and fsspec's suite fixtures.

fsspec's abstract suites (fsspec.tests.abstract) take their filesystem from the
fixtures ``fs``, ``fs_path`` and ``fs_join`` of an AbstractFixtures subclass:
NinepFixtures gives each test a fresh directory on one server for the session.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

fsspec = pytest.importorskip("fsspec", reason="fsspec is in the test extra: scripts/setup-env")

from fsspec.tests.abstract import AbstractFixtures  # type: ignore[import-untyped]  # noqa: E402

from ninep.clients.fsspec_fs import NinepFileSystem  # noqa: E402
from tests.hostile.serverproc import ServerProcess, serve_process  # noqa: E402

# the RAM root belongs to root: attach as uid 0, as tests/clients does for ninep
ROOT_IDENTITY: dict[str, Any] = {"uname": "root", "n_uname": 0}


@pytest.fixture(scope="session")
def ram_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server process over TCP for every fsspec test."""
    with serve_process(["--mount", "/=ram"], tmp_path_factory.mktemp("fsspec-server")) as server:
        yield server


@pytest.fixture
def ninep_fs(ram_server: ServerProcess) -> Iterator[NinepFileSystem]:
    """A fresh (uncached) filesystem instance, closed after the test."""
    fs = NinepFileSystem(port=ram_server.port, skip_instance_cache=True, **ROOT_IDENTITY)
    try:
        yield fs
    finally:
        fs.close()


@pytest.fixture
def scratch(ninep_fs: NinepFileSystem) -> Iterator[str]:
    """A fresh directory on the server, removed after the test."""
    path = f"/t-{uuid.uuid4().hex[:12]}"
    ninep_fs.mkdir(path)
    yield path
    if ninep_fs.exists(path):
        ninep_fs.rm(path, recursive=True)


class NinepFixtures(AbstractFixtures):  # type: ignore[misc]  # fsspec is untyped
    """fsspec's suite fixtures bound to the server above."""

    @pytest.fixture
    def fs(self, ninep_fs: NinepFileSystem) -> NinepFileSystem:
        return ninep_fs

    @pytest.fixture
    def fs_path(self, scratch: str) -> str:
        return scratch

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return posixpath.join
