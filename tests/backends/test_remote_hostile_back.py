"""The 9p backend importing a back server that lies (tests/clients/lying_server.py): a
real front server process answers its clients EIO for each bad reply, never wrong data
or a hang, logs no traceback, and its other mounts keep working."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from ninep.clients import Client, Tree
from ninep.wire.dirent import pack_dirent
from ninep.wire.messages import (
    Rgetattr,
    Rlerror,
    Rread,
    Rreaddir,
    Rwrite,
    Tgetattr,
    Tread,
    Treaddir,
    Twrite,
    encode,
)
from tests.clients.lying_server import DATA, FILE, LyingServer, lying_in_thread
from tests.hostile.serverproc import ServerProcess, serve_process

HANG = 30  # seconds after which a wait is a hang (never a speed assertion)


@contextmanager
def front_of(tmp: Path) -> Iterator[tuple[ServerProcess, LyingServer]]:
    """A front server with a local ram mount at / and the lying server at /imp."""
    with lying_in_thread() as liar, \
            serve_process(["--mount", "/=ram", "--mount", f"/imp=9p:{liar.url}"], tmp) as front:
        yield front, liar


@asynccontextmanager
async def attach(front: ServerProcess) -> AsyncIterator[Tree]:
    async with await Client.connect(f"tcp://127.0.0.1:{front.port}") as client:
        yield await client.attach("root", "", 0)


async def eio(call: Coroutine[Any, Any, object]) -> None:
    """``call`` fails with EIO. A hang fails the test without waiting for the cancelled
    request's Rflush too (a front that lost the request would never send it)."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=HANG)
    assert done, "no answer: the request hangs"
    with pytest.raises(OSError) as caught:
        task.result()
    assert caught.value.errno == errno.EIO, caught.value


async def healthy(front: ServerProcess, tree: Tree) -> None:
    """The front lives, its other mount answers, and it logged no traceback."""
    await asyncio.wait_for(tree.write_bytes("local", b"here"), HANG)
    assert await asyncio.wait_for(tree.read_bytes("local"), HANG) == b"here"
    assert front.alive()
    assert "Traceback" not in front.log_text()


async def test_an_rread_longer_than_asked_is_eio_through_the_front(tmp_path: Path) -> None:
    with front_of(tmp_path) as (front, liar):
        async with attach(front) as tree:
            assert await asyncio.wait_for(tree.read_bytes("imp/f"), HANG) == DATA
            liar.lie(Tread, lambda tag, msg: encode(tag, Rread(b"!" * (msg.count + 7))))  # type: ignore[attr-defined]
            async with await tree.open("imp/f", "rb") as f:
                await eio(f.pread(0, 4))
            await healthy(front, tree)


async def test_an_rwrite_count_larger_than_sent_is_eio_through_the_front(
        tmp_path: Path) -> None:
    with front_of(tmp_path) as (front, liar):
        async with attach(front) as tree:
            liar.lie(Twrite, lambda tag, msg: encode(tag, Rwrite(len(msg.data) * 2 + 1)))  # type: ignore[attr-defined]
            async with await tree.open("imp/f", "r+b") as f:
                await eio(f.pwrite(0, b"abc"))
            await healthy(front, tree)


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", "nul\0name"])
async def test_a_listed_name_with_a_slash_or_nul_is_eio_through_the_front(
        tmp_path: Path, name: str) -> None:
    with front_of(tmp_path) as (front, liar):
        async with attach(front) as tree:
            liar.lie(Treaddir, lambda tag, msg: encode(tag, Rreaddir(
                pack_dirent(FILE, 1, 8, "f") + pack_dirent(FILE, 2, 8, name)))
                if msg.offset == 0 else None)  # type: ignore[attr-defined]
            await eio(tree.listdir("imp"))
            await healthy(front, tree)


@pytest.mark.parametrize("ecode", [0, 0xFFFFFFFF])
async def test_an_errno_that_is_none_is_eio_through_the_front(
        tmp_path: Path, ecode: int) -> None:
    with front_of(tmp_path) as (front, liar):
        async with attach(front) as tree:
            # walked first: a walk that fails past its first name is ENOENT (walk(5))
            fid = await asyncio.wait_for(tree.walk("imp/f"), HANG)
            liar.lie(Tgetattr, lambda tag, msg: encode(tag, Rlerror(ecode))
                     if liar.on(msg, ("f",)) else None)
            await eio(fid.getattr())
            await healthy(front, tree)


async def test_an_rgetattr_with_nanoseconds_past_a_second_is_eio_through_the_front(
        tmp_path: Path) -> None:
    # sec * 10**9 + nsec, split again for the front's own Rgetattr, overflows its int64
    top = (1 << 63) - 1
    lie = Rgetattr(0x3FFF, FILE, 0o100644, 0, 0, 1, 0, 5, 4096, 0,
                   top, (1 << 64) - 1, top, 0, top, 0, top, 0, 0, 0)
    with front_of(tmp_path) as (front, liar):
        async with attach(front) as tree:
            fid = await asyncio.wait_for(tree.walk("imp/f"), HANG)
            liar.lie(Tgetattr, lambda tag, msg: encode(tag, lie) if liar.on(msg, ("f",))
                     else None)
            await eio(fid.getattr())
            await healthy(front, tree)

