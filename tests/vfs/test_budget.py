"""vfs/budget.py: the figures derived from RLIMIT_NOFILE, and who gets EMFILE or ENFILE."""

from __future__ import annotations

import errno
import logging

import pytest

from ninep.vfs.budget import ConnectionAccount, DescriptorBudget


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
    for _ in range(budget.per_connection):
        budget.check_open(greedy)
        budget.opened(greedy)
    with caplog.at_level(logging.WARNING, logger="ninep.vfs.budget"):
        for _ in range(3):
            with pytest.raises(OSError) as exc:
                budget.check_open(greedy)
            assert exc.value.errno == errno.EMFILE
    assert len(caplog.records) == 1 and "greedy" in caplog.text
    budget.check_open(other)  # the others go on
    budget.closed(greedy)
    budget.check_open(greedy)
    assert budget.held == greedy.held == budget.per_connection - 1


def test_the_total_is_enfile_for_everyone() -> None:
    budget = DescriptorBudget(256)
    for _ in range(budget.total):
        budget.opened(None)
    assert budget.full()
    with pytest.raises(OSError) as exc:
        budget.check_open(ConnectionAccount("anyone"))
    assert exc.value.errno == errno.ENFILE
    budget.closed(None)
    budget.check_open(None)
