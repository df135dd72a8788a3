"""The pool of read buffers: sizes, what is taken back, and that nothing is shared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ninep.vfs import buffers
from ninep.vfs.buffers import KEEP, MIN_SIZE, ReadBuffer, give, take


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(buffers, "_free", {})
    yield


def test_a_view_of_the_size_asked_on_a_power_of_two() -> None:
    for size, capacity in [(0, MIN_SIZE), (1, MIN_SIZE), (4096, 4096), (4097, 8192),
                           (65536, 65536), ((1 << 20) - 11, 1 << 20)]:
        view = take(size)
        assert len(view) == size and not view.readonly
        assert type(view.obj) is ReadBuffer and len(view.obj) == capacity


def test_a_given_buffer_is_taken_again() -> None:
    first = take(65536)
    buf = first.obj
    give(first[:100])  # any view of it gives the buffer back
    again = take(60000)
    assert again.obj is buf
    assert take(60000).obj is not buf  # given once, taken once


def test_only_the_pools_own_buffers_are_taken_back() -> None:
    foreign = bytearray(65536)  # e.g. a RAM file's contents, served as a view
    give(memoryview(foreign))
    give(bytes(65536))
    give(None)
    assert take(65536).obj is not foreign
    assert buffers._free == {}


def test_at_most_keep_buffers_per_size_and_never_one_twice() -> None:
    views = [take(8192) for _ in range(KEEP + 2)]
    for view in views:
        give(view)
    give(views[0])
    assert len(buffers._free[8192]) == KEEP
    assert len({id(b) for b in buffers._free[8192]}) == KEEP
