"""vfs/budget.py: the figures derived from RLIMIT_NOFILE, and who gets EMFILE or ENFILE."""

from __future__ import annotations

import errno
import logging

import pytest

from vfs.budget import FILE_SHARE, ConnectionAccount, DescriptorBudget


@pytest.mark.parametrize(("limit", "reserve", "total", "per_connection"), [
    (256, 64, 192, 48), (1024, 128, 896, 224), (1 << 20, 1 << 17, 917504, 229376)])
def test_the_figures_in_docs_backends(limit: int, reserve: int, total: int,
                                      per_connection: int) -> None:
    budget = DescriptorBudget(limit)
    assert (budget.reserve, budget.total, budget.per_connection) == \
        (reserve, total, per_connection)


def test_a_greedy_connection_gets_emfile_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    budget = DescriptorBudget(256)
    greedy, other = ConnectionAccount("greedy"), ConnectionAccount("other")
    files = budget.per_connection // FILE_SHARE
    for _ in range(files):
        budget.check_open(greedy)
        budget.file_opened(greedy)
    with caplog.at_level(logging.WARNING, logger="vfs.budget"):
        for _ in range(3):
            with pytest.raises(OSError) as exc:
                budget.check_open(greedy)
            assert exc.value.errno == errno.EMFILE
    assert len(caplog.records) == 1 and "greedy" in caplog.text
    budget.check_open(other)  # the others go on
    budget.file_closed(greedy)
    budget.check_open(greedy)
    assert budget.held == files - 1 and greedy.held == (files - 1) * FILE_SHARE


def test_the_total_is_enfile_for_everyone() -> None:
    budget = DescriptorBudget(256)
    for _ in range(budget.total):
        budget.node_opened()
    assert budget.full()
    with pytest.raises(OSError) as exc:
        budget.check_open(ConnectionAccount("anyone"))
    assert exc.value.errno == errno.ENFILE
    budget.node_closed()
    budget.check_open(None)
