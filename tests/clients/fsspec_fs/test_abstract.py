"""fsspec's own abstract test suites (fsspec.tests.abstract) run against `ninep serve`."""

from __future__ import annotations

import pytest

pytest.importorskip("fsspec")

from fsspec.tests.abstract import (  # type: ignore[import-untyped]
    AbstractCopyTests,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

from tests.clients.fsspec_fs.conftest import NinepFixtures


class TestNinepCopy(AbstractCopyTests, NinepFixtures):  # type: ignore[misc]
    pass


class TestNinepGet(AbstractGetTests, NinepFixtures):  # type: ignore[misc]
    pass


class TestNinepPut(AbstractPutTests, NinepFixtures):  # type: ignore[misc]
    pass


class TestNinepOpen(AbstractOpenTests, NinepFixtures):  # type: ignore[misc]
    pass


class TestNinepPipe(AbstractPipeTests, NinepFixtures):  # type: ignore[misc]
    pass
