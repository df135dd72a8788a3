"""Open files against a real server: modes, big transfers, concurrency, Tflush, locks."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import Awaitable, Callable

import pytest

from ninep.clients import LOCK_RDLCK, LOCK_UNLCK, LOCK_WRLCK, Client, RemoteFile, TextFile, Tree
from ninep.wire.messages import (
    NOTAG,
    Message,
    Rflush,
    Tflush,
    Tlopen,
    Tread,
    Tsetattr,
    Twrite,
)
from tests.clients.targets import Target

Quirk = Callable[[str], None]


class Recorder:
    """A Client.trace hook: every message both ways, and the most tags in flight at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, Message]] = []
        self.received: list[tuple[int, Message]] = []
        self.events: list[tuple[str, int, Message]] = []
        self.outstanding: set[int] = set()
        self.peak = 0

    def __call__(self, way: str, tag: int, msg: Message) -> None:
        self.events.append((way, tag, msg))
        if way == "->":
            self.sent.append((tag, msg))
            if tag != NOTAG:
                self.outstanding.add(tag)
                self.peak = max(self.peak, len(self.outstanding))
        else:
            self.received.append((tag, msg))
            self.outstanding.discard(tag)

    def sent_of(self, kind: type[Message]) -> list[Message]:
        return [m for _, m in self.sent if isinstance(m, kind)]


@pytest.mark.asyncio
async def test_binary_round_trip_and_seek(tree: Tree) -> None:
    async with await tree.open("f", "wb") as f:
        assert isinstance(f, RemoteFile)
        assert await f.write(b"hello world") == 11
        assert await f.tell() == 11
    async with await tree.open("f", "rb") as f:
        assert await f.read(5) == b"hello"
        assert await f.tell() == 5
        assert await f.read() == b" world"
        assert await f.read() == b""
        assert await f.seek(-5, os.SEEK_END) == 6
        assert await f.read(100) == b"world"
        assert await f.seek(-3, os.SEEK_CUR) == 8
        assert await f.read() == b"rld"
        assert await f.pread(0, 4) == b"hell"
        with pytest.raises(OSError) as info:
            await f.write(b"x")
        assert info.value.errno == errno.EBADF
        with pytest.raises(OSError):
            await f.seek(-1)
    assert f.closed
    with pytest.raises(ValueError):
        await f.read()


@pytest.mark.asyncio
async def test_text_mode(tree: Tree) -> None:
    text = "grüße, 9P — ünïcödé\n" * 500
    async with await tree.open("t.txt", "w") as f:
        assert isinstance(f, TextFile)
        assert await f.write(text) == len(text)
    async with await tree.open("t.txt") as f:
        assert await f.read(7) == text[:7]
        assert await f.tell() == len(text[:7].encode())
        rest = await f.read()
        assert text[:7] + rest == text
    async with await tree.open("t.txt", "r+") as f:
        await f.read(3)
        await f.write("XYZ")  # lands right after the three characters read
    assert (await tree.read_bytes("t.txt")).decode().startswith("grüXYZ")


@pytest.mark.asyncio
async def test_modes_create_truncate_append_exclusive(tree: Tree, client: Client) -> None:
    recorder = Recorder()
    client.trace = recorder
    with pytest.raises(FileNotFoundError) as info:
        await tree.open("nope", "rb")
    assert info.value.filename == "nope"
    await tree.write_bytes("f", b"0123456789")
    async with await tree.open("f", "r+b") as f:
        await f.write(b"ab")
    assert await tree.read_bytes("f") == b"ab23456789"
    async with await tree.open("f", "ab") as f:
        await f.write(b"++")
        await f.seek(0)
        await f.write(b"--")  # append mode writes at the end whatever the position
    assert await tree.read_bytes("f") == b"ab23456789++--"
    before = len(recorder.sent_of(Tsetattr))
    async with await tree.open("f", "wb") as f:
        await f.write(b"new")
    assert await tree.read_bytes("f") == b"new"
    # O_TRUNC never reaches Tlopen; truncation is a Tsetattr(size=0), as Linux sends it
    assert len(recorder.sent_of(Tsetattr)) == before + 1
    assert all(not m.flags & 0o1000 for m in recorder.sent_of(Tlopen))  # type: ignore[attr-defined]
    with pytest.raises(FileExistsError):
        await tree.open("f", "xb")
    async with await tree.open("g", "xb", 0o640) as f:
        await f.write(b"g")
    assert (await tree.stat("g")).st_mode & 0o777 == 0o640
    async with await tree.open("h", "a+b") as f:
        await f.write(b"abc")
        await f.seek(0)
        assert await f.read() == b"abc"


@pytest.mark.asyncio
async def test_large_file_in_many_chunks(tree: Tree, client: Client) -> None:
    recorder = Recorder()
    client.trace = recorder
    data = os.urandom(5 * 1024 * 1024 + 12345)
    async with await tree.open("big", "wb") as f:
        await f.write(data)
    io_size = client.msize - 24
    writes = recorder.sent_of(Twrite)
    assert len(writes) >= len(data) // io_size
    assert max(len(m.data) for m in writes) <= io_size  # type: ignore[attr-defined]
    assert recorder.peak > 1  # several Twrites in flight
    recorder.peak = 0
    assert (await tree.stat("big")).st_size == len(data)
    async with await tree.open("big", "rb") as f:
        back = await f.read()
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    assert recorder.peak > 1  # several Treads in flight
    async with await tree.open("big", "rb") as f:
        await f.seek(3 * io_size - 7)
        assert await f.read(2 * io_size + 11) == data[3 * io_size - 7:5 * io_size + 4]
        assert await f.pread(len(data) - 10, 1000) == data[-10:]
    async with await tree.open("big", "r+b") as f:
        await f.pwrite(io_size - 1, b"\xff" * (io_size + 2))
    patched = data[:io_size - 1] + b"\xff" * (io_size + 2) + data[2 * io_size + 1:]
    assert await tree.read_bytes("big") == patched


@pytest.mark.asyncio
async def test_many_concurrent_requests(tree: Tree, client: Client) -> None:
    recorder = Recorder()
    client.trace = recorder
    payloads = {f"file{i}": os.urandom(1000 + i * 37) for i in range(40)}
    await asyncio.gather(*(tree.write_bytes(name, data) for name, data in payloads.items()))
    stats = await asyncio.gather(*(tree.stat(name) for name in payloads for _ in range(5)))
    assert [s.st_size for s in stats] == [len(d) for d in payloads.values() for _ in range(5)]
    contents = await asyncio.gather(*(tree.read_bytes(name) for name in payloads))
    assert contents == list(payloads.values())
    assert recorder.peak >= 20
    assert sorted(await tree.listdir()) == sorted(payloads)


def check_flushes(recorder: Recorder) -> int:
    """Every request left unanswered was flushed, and every Tflush got Rflush; returns flushes."""
    open_requests: dict[int, Message] = {}
    flushed: set[int] = set()
    for way, tag, msg in recorder.events:
        if way == "->":
            open_requests[tag] = msg
            if isinstance(msg, Tflush):
                flushed.add(msg.oldtag)
        else:
            request = open_requests.pop(tag)
            if isinstance(request, Tflush):
                assert isinstance(msg, Rflush)
    assert set(open_requests) <= flushed, f"unanswered and never flushed: {open_requests}"
    assert not any(isinstance(m, Tflush) for m in open_requests.values())
    return len(flushed)


async def cancel_at_nth_read(client: Client, make: Callable[[], Awaitable[object]],
                             nth: int) -> Recorder:
    """Run ``make()`` and cancel it as its nth Tread goes on the wire."""
    recorder = Recorder()
    victim: list[asyncio.Future[object]] = []

    def cancel_on_send(way: str, tag: int, msg: Message) -> None:
        recorder(way, tag, msg)
        if way == "->" and isinstance(msg, Tread) and len(recorder.sent_of(Tread)) == nth:
            victim[0].cancel()

    client.trace = cancel_on_send
    victim.append(asyncio.ensure_future(make()))
    with pytest.raises(asyncio.CancelledError):
        await victim[0]
    client.trace = None
    assert client.pending == 0  # flushed tags are released only after their Rflush
    return recorder


@pytest.mark.asyncio
@pytest.mark.parametrize(("size", "nth"), [(1000, 1), (4 * 1024 * 1024, 4)])
async def test_cancelled_reads_are_flushed(tree: Tree, client: Client, size: int,
                                           nth: int) -> None:
    data = os.urandom(size)
    await tree.write_bytes("f", data)
    f = await tree.open("f", "rb")
    assert isinstance(f, RemoteFile)
    flushes = 0
    for _ in range(30):  # a reply can beat the cancellation; the server cannot be slowed
        await f.seek(0)
        recorder = await cancel_at_nth_read(client, f.read, nth)
        flushes += check_flushes(recorder)
        if flushes:
            break
    assert flushes, "no request was ever still in flight when cancelled"
    assert await f.pread(0, 100) == data[:100]  # the connection is still good
    await f.close()


@pytest.mark.asyncio
async def test_open_file_survives_unlink(tree: Tree, quirk: Quirk) -> None:
    quirk("unlinked-fid-by-path")
    f = await tree.open("f", "w+b")
    await f.write(b"still here")
    await tree.remove("f")
    assert not await tree.exists("f")
    assert (await f.stat()).st_size == 10
    await f.seek(0)
    assert await f.read() == b"still here"
    await f.truncate(5)
    assert (await f.stat()).st_size == 5
    await f.fsync()
    await f.fsync(datasync=True)
    await f.close()


@pytest.mark.asyncio
async def test_locks(tree: Tree) -> None:
    await tree.write_bytes("f", b"x" * 100)
    a = await tree.open("f", "r+b")
    b = await tree.open("f", "r+b")
    try:
        free = await a.getlock(LOCK_WRLCK, proc_id=1)
        assert free.type == LOCK_UNLCK
        await tree.lock(a, LOCK_WRLCK, proc_id=1)
        with pytest.raises(BlockingIOError) as info:
            await b.lock(LOCK_WRLCK, proc_id=2)
        assert info.value.errno == errno.EAGAIN and info.value.filename == "f"
        conflict = await tree.getlock(b, LOCK_RDLCK, proc_id=2)
        assert conflict.type == LOCK_WRLCK
        await a.lock(LOCK_UNLCK, proc_id=1)
        await b.lock(LOCK_RDLCK, proc_id=2)
        await a.lock(LOCK_RDLCK, proc_id=1)  # shared locks coexist
        with pytest.raises(BlockingIOError):
            await a.lock(LOCK_WRLCK, proc_id=1)
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_byte_range_locks(tree: Tree, quirk: Quirk) -> None:
    quirk("whole-file-locks")
    await tree.write_bytes("f", b"x" * 100)
    async with await tree.open("f", "r+b") as a, await tree.open("f", "r+b") as b:
        assert isinstance(a, RemoteFile) and isinstance(b, RemoteFile)
        await a.lock(LOCK_WRLCK, 0, 10, proc_id=1)
        with pytest.raises(BlockingIOError):
            await b.lock(LOCK_WRLCK, 5, 10, proc_id=2)
        await b.lock(LOCK_WRLCK, 10, 10, proc_id=2)  # bytes 10..19 do not overlap 0..9
        assert (await b.getlock(LOCK_WRLCK, 50, 0, proc_id=2)).type == LOCK_UNLCK
        with pytest.raises(BlockingIOError):
            await b.lock(LOCK_WRLCK, 15, 0, proc_id=3)  # length 0: to end of file


@pytest.mark.asyncio
async def test_getlock_names_the_holder(tree: Tree, quirk: Quirk) -> None:
    quirk("getlock-echoes-caller")
    await tree.write_bytes("f", b"")
    async with await tree.open("f", "r+b") as a, await tree.open("f", "r+b") as b:
        assert isinstance(a, RemoteFile) and isinstance(b, RemoteFile)
        await a.lock(LOCK_WRLCK, 0, 0, proc_id=11)
        holder = await b.getlock(LOCK_WRLCK, 0, 0, proc_id=22)
        assert (holder.type, holder.proc_id) == (LOCK_WRLCK, 11)


@pytest.mark.asyncio
async def test_blocking_lock_waits_for_release(tree: Tree) -> None:
    await tree.write_bytes("f", b"")
    a = await tree.open("f", "r+b")
    b = await tree.open("f", "r+b")
    await a.lock(LOCK_WRLCK, proc_id=1)
    waiter = asyncio.ensure_future(b.lock(LOCK_WRLCK, block=True, proc_id=2))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await a.lock(LOCK_UNLCK, proc_id=1)
    await asyncio.wait_for(waiter, 10)
    with pytest.raises(BlockingIOError):
        await a.lock(LOCK_WRLCK, proc_id=1)
    await a.close()
    await b.close()


@pytest.mark.asyncio
async def test_server_holds_blocking_lock(tree: Tree, client: Client, quirk: Quirk) -> None:
    """A server should hold a BLOCK Tlock until granted (or flushed), not answer BLOCKED."""
    quirk("lock-never-blocks")
    await tree.write_bytes("f", b"")
    a = await tree.open("f", "r+b")
    b = await tree.open("f", "r+b")
    assert isinstance(a, RemoteFile) and isinstance(b, RemoteFile)
    await a.lock(LOCK_WRLCK, proc_id=1)
    raw = asyncio.ensure_future(b.fid.lock(LOCK_WRLCK, 1, 0, 0, 2, tree.client_id))
    await asyncio.sleep(0.3)
    assert not raw.done()
    raw.cancel()  # Tflush of a held Tlock
    with pytest.raises(asyncio.CancelledError):
        await raw
    await a.close()
    await b.close()


@pytest.mark.asyncio
async def test_many_open_files_and_fid_reuse(tree: Tree, client: Client, target: Target) -> None:
    files = [await tree.open(f"f{i}", "wb") for i in range(50)]
    fids = {f.fid.fid for f in files if isinstance(f, RemoteFile)}
    assert len(fids) == 50
    for f in files:
        await f.close()
    again = await tree.open("f0", "rb")
    assert isinstance(again, RemoteFile) and again.fid.fid in fids | {0, 1, 2}
    await again.close()
