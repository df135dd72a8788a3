"""The kernel suite's pytest wiring: the ``kernel`` marker, NINEP_SKIP_KERNEL, the boots.

Every test under tests/kernel is marked ``kernel`` (select with ``-m kernel``, leave
out with ``-m "not kernel"``). The suite runs by default; ``NINEP_SKIP_KERNEL=1`` skips
it. A missing tool (QEMU, ...) that cannot be installed is a failure that says what to
install, never a silent skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Suite

HERE = Path(__file__).resolve().parent
_suite: Suite | None = None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel: boots Linux under QEMU and mounts the server "
                                       "with v9fs (skip with NINEP_SKIP_KERNEL=1)")


def _is_kernel_item(item: pytest.Item) -> bool:
    """The tests that boot the guest (test_harness.py's unit tests do not)."""
    return Path(str(item.path)).resolve() in (HERE / "test_kernel.py",
                                               HERE / "test_mount_helper.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = os.environ.get("NINEP_SKIP_KERNEL", "") not in ("", "0")
    for item in items:
        if _is_kernel_item(item):
            item.add_marker(pytest.mark.kernel)
            if skip:
                item.add_marker(pytest.mark.skip(reason="NINEP_SKIP_KERNEL is set"))


@pytest.fixture(scope="session")
def kernel_suite(request: pytest.FixtureRequest) -> Iterator[Suite]:
    """The boots needed by the selected tests, run once (in parallel) on first use."""
    global _suite
    needed = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "boot" in callspec.params and _is_kernel_item(item):
            needed.add(callspec.params["boot"])
    _suite = Suite(needed)
    try:
        yield _suite
    finally:
        _suite.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _suite is not None:
        terminalreporter.write_sep("-", "kernel suite")
        terminalreporter.write_line(_suite.summary())
