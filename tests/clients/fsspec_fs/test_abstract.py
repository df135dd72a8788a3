"""fsspec's own abstract test suites (fsspec.tests.abstract) run against `ninep serve`."""

from __future__ import annotations

import pytest

abstract = pytest.importorskip("fsspec.tests.abstract")

from tests.clients.fsspec_fs.conftest import NinepFixtures  # noqa: E402


class TestNinepCopy(abstract.AbstractCopyTests, NinepFixtures):  # type: ignore[misc]
    pass


class TestNinepGet(abstract.AbstractGetTests, NinepFixtures):  # type: ignore[misc]
    pass


class TestNinepPut(abstract.AbstractPutTests, NinepFixtures):  # type: ignore[misc]
    pass


class TestNinepOpen(abstract.AbstractOpenTests, NinepFixtures):  # type: ignore[misc]
    pass


class TestNinepPipe(abstract.AbstractPipeTests, NinepFixtures):  # type: ignore[misc]
    pass
