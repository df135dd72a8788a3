"""Passthrough FIFOs (backends/passthrough/handle.py): opens that wait for the other end
are bounded and cancellable, reads and writes wait on the event loop, and open files
count against the connection's descriptor share."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ninep.backends.passthrough import PassthroughBackend
from ninep.backends.passthrough.handle import FIFO_WAITS_PER_CONNECTION
from ninep.backends.registry import open_backend
from ninep.vfs.budget import BUDGET, ConnectionAccount
from ninep.vfs.node import OpenFlags
from ninep.vfs.request import ConnectionScope, enter, leave

O_RDONLY, O_WRONLY, O_RDWR, O_NONBLOCK = 0, 1, 2, 0o4000


@pytest.fixture
async def export(tmp_path: Path) -> AsyncIterator[tuple[Path, PassthroughBackend]]:
    root = tmp_path / "export"
    root.mkdir()
    os.mkfifo(root / "fifo")
    backend = await open_backend("passthrough", str(root), {})
    assert isinstance(backend, PassthroughBackend)
    yield root, backend
    await backend.close()


@contextmanager
def connection(name: str = "client") -> Iterator[ConnectionAccount]:
    """What the transport does around a request: name the connection."""
    account = ConnectionAccount(name)
    token = enter(ConnectionScope(account))
    try:
        yield account
    finally:
        leave(token)


def fifo_threads() -> int:
    return sum(t.name == "passthrough-fifo-open" for t in threading.enumerate())


async def until(predicate: object) -> None:
    for _ in range(500):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_a_cancelled_open_ends_its_thread_and_leaks_nothing(
        export: tuple[Path, PassthroughBackend]) -> None:
    _root, fs = export
    fifo = await fs.root.walk("fifo")
    fds = len(os.listdir("/proc/self/fd"))
    for accmode in (O_RDONLY, O_WRONLY):  # waiting for a writer, and for a reader
        waiting = asyncio.ensure_future(fifo.open(OpenFlags(accmode)))
        await until(lambda: fifo_threads() == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await until(lambda: fifo_threads() == 0)
        await until(lambda: fifo.pins == 0)  # type: ignore[attr-defined]
    assert len(os.listdir("/proc/self/fd")) == fds


async def test_opens_that_need_not_wait_take_no_thread(
        export: tuple[Path, PassthroughBackend]) -> None:
    _root, fs = export
    fifo = await fs.root.walk("fifo")
    with pytest.raises(OSError) as exc:  # O_NONBLOCK writer, no reader: as open(2)
        await fifo.open(OpenFlags(O_WRONLY | O_NONBLOCK))
    assert exc.value.errno == errno.ENXIO
    reader = await fifo.open(OpenFlags(O_RDONLY | O_NONBLOCK))
    writer = await fifo.open(OpenFlags(O_WRONLY))  # a reader is there: no wait
    both = await fifo.open(OpenFlags(O_RDWR))
    assert fifo_threads() == 0
    assert await writer.write(0, b"hello") == 5
    assert bytes(await reader.read(0, 100)) == b"hello"
    with pytest.raises(BlockingIOError):  # the client asked O_NONBLOCK: no wait
        await reader.read(0, 100)
    for handle in (reader, writer, both):
        await handle.close()


async def test_a_cancelled_read_consumes_nothing(
        export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    writer = os.open(root / "fifo", os.O_RDWR | os.O_NONBLOCK)
    try:
        handle = await (await fs.root.walk("fifo")).open(OpenFlags(O_RDONLY))
        waiting = asyncio.ensure_future(handle.read(0, 100))
        await asyncio.sleep(0.05)
        assert not waiting.done() and fifo_threads() == 0  # waits on the event loop
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        os.write(writer, b"kept")
        assert bytes(await asyncio.wait_for(handle.read(0, 100), 10)) == b"kept"
        await handle.close()
    finally:
        os.close(writer)


async def test_waiting_opens_are_capped_per_connection(
        export: tuple[Path, PassthroughBackend]) -> None:
    _root, fs = export
    fifo = await fs.root.walk("fifo")
    with connection("greedy") as greedy:
        waiting = [asyncio.ensure_future(fifo.open(OpenFlags(O_RDONLY)))
                   for _ in range(FIFO_WAITS_PER_CONNECTION)]
        await until(lambda: greedy.fifo_waits == FIFO_WAITS_PER_CONNECTION)
        with pytest.raises(OSError) as exc:
            await fifo.open(OpenFlags(O_RDONLY))
        assert exc.value.errno == errno.EAGAIN
    with connection("other"):
        other = asyncio.ensure_future(fifo.open(OpenFlags(O_RDONLY)))  # another connection may wait
        await until(lambda: fifo_threads() == FIFO_WAITS_PER_CONNECTION + 1)
    for task in [*waiting, other]:
        task.cancel()
    await asyncio.gather(*waiting, other, return_exceptions=True)
    await until(lambda: fifo_threads() == 0)
    assert greedy.fifo_waits == 0


async def test_closing_the_backend_wakes_waiting_opens(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    fs = await open_backend("passthrough", str(tmp_path), {})
    fifo = await fs.root.walk("fifo")
    waiting = asyncio.ensure_future(fifo.open(OpenFlags(O_RDONLY)))
    await until(lambda: fifo_threads() == 1)
    await fs.close()
    with pytest.raises(OSError) as exc:
        await waiting
    assert exc.value.errno == errno.EBADF
    await until(lambda: fifo_threads() == 0)


async def test_open_files_and_new_nodes_count_against_the_connection_share(
        export: tuple[Path, PassthroughBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    root, fs = export
    for i in range(4):
        (root / f"f{i}").write_bytes(b"x")
    monkeypatch.setattr(BUDGET, "per_connection", 6)  # three files: a node and a handle each
    held = BUDGET.held
    with connection() as account:
        handles = [await (await fs.root.walk(f"f{i}")).open(OpenFlags(O_RDONLY)) for i in range(3)]
        assert account.held == 6
        with pytest.raises(OSError) as exc:  # its nodes are pinned: the walk is refused
            await fs.root.walk("f3")
        assert exc.value.errno == errno.EMFILE
        with pytest.raises(OSError) as exc:  # a create is refused before it creates
            await fs.root.create("new", OpenFlags(O_RDWR), 0o644, 0, 0)
        assert exc.value.errno == errno.EMFILE
        assert not (root / "new").exists()
        await handles[0].close()  # its node is closable now: the next walk makes room
        await (await (await fs.root.walk("f3")).open(OpenFlags(O_RDONLY))).close()
        for handle in handles[1:]:
            await handle.close()
    with connection("other") as other:  # another connection was never refused
        await (await (await fs.root.walk("f0")).open(OpenFlags(O_RDONLY))).close()
    assert account.logged == {"emfile"} and not other.logged
    assert BUDGET.held <= held + 5  # node descriptors the fids' nodes still hold


async def test_a_connection_at_its_share_has_its_reopenable_nodes_closed(
        export: tuple[Path, PassthroughBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    root, fs = export
    for i in range(40):
        (root / f"f{i}").write_bytes(b"x")
    monkeypatch.setattr(BUDGET, "per_connection", 16)
    with connection() as account:
        nodes = [await fs.root.walk(f"f{i}") for i in range(40)]  # fids keep them all
        assert account.held <= 16
        assert [(await n.getattr()).size for n in nodes] == [1] * 40  # reopened by name
    assert not account.logged


async def test_unlinked_files_held_by_fids_fill_only_their_connections_share(
        export: tuple[Path, PassthroughBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    root, fs = export
    monkeypatch.setattr(BUDGET, "per_connection", 16)
    kept = []
    with connection("greedy"), pytest.raises(OSError) as exc:
        for i in range(40):  # descriptors of unlinked files cannot be closed and reopened
            node, handle = await fs.root.create(f"u{i}", OpenFlags(O_RDWR), 0o644, 0, 0)
            await handle.close()
            await fs.root.unlink(f"u{i}", False)
            kept.append(node)
    assert exc.value.errno == errno.EMFILE and len(kept) <= 16
    (root / "f").write_bytes(b"x")
    with connection("other"):
        await (await (await fs.root.walk("f")).open(OpenFlags(O_RDONLY))).close()


async def test_closing_a_fifo_ends_a_read_waiting_on_it(
        export: tuple[Path, PassthroughBackend]) -> None:
    root, fs = export
    writer = os.open(root / "fifo", os.O_RDWR | os.O_NONBLOCK)
    try:
        fds = len(os.listdir("/proc/self/fd"))
        handle = await (await fs.root.walk("fifo")).open(OpenFlags(O_RDONLY))
        waiting = asyncio.ensure_future(handle.read(0, 100))
        await asyncio.sleep(0.05)
        await handle.close()  # a clunk while the read waits: no descriptor left behind
        with pytest.raises(OSError) as exc:
            await asyncio.wait_for(waiting, 10)
        assert exc.value.errno == errno.EBADF
        assert len(os.listdir("/proc/self/fd")) <= fds + 1  # the fifo node's O_PATH
    finally:
        os.close(writer)
