"""vfs/budget.py: the figures derived from RLIMIT_NOFILE and the reserve for max_connections;
who gets EMFILE or ENFILE."""

from __future__ import annotations

import errno
import logging

import pytest

from ninep.vfs.budget import SERVER_DESCRIPTORS, ConnectionAccount, DescriptorBudget


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


@pytest.mark.parametrize(("limit", "wanted", "held", "reserve", "total"), [
    (20000, 1024, 1024, 1088, 18912),  # the lead's host: every connection fits
    (1 << 20, 1024, 1024, 1088, 1047488),  # systemd's usual hard limit
    (1024, 1024, 448, 512, 512),  # a default soft limit: lowered, half for files
    (256, 1024, 64, 128, 128),  # tests/hostile/test_descriptors.py's
    (512, 20, 20, 84, 428),
])
def test_the_reserve_holds_max_connections_sockets(limit: int, wanted: int, held: int,
                                                  reserve: int, total: int) -> None:
    budget = DescriptorBudget(limit)
    assert budget.hold_connections(wanted) == held
    assert (budget.connections, budget.reserve, budget.total) == (held, reserve, total)
    assert budget.reserve >= held + SERVER_DESCRIPTORS and budget.total >= limit // 2
    budget.configure(limit)  # sized again from the same limit: the connections stay held
    assert (budget.reserve, budget.total) == (reserve, total)


def test_a_limit_that_holds_no_connection_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"descriptor limit .* of 80 cannot hold"):
        DescriptorBudget(80).hold_connections(1024)
