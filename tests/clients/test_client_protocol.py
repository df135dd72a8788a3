"""The connection layer against a scripted fake server: version, tags, replies, Tflush."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from ninep.clients import Client, ProtocolError, VersionError
from ninep.wire.framing import Framer
from ninep.wire.messages import (
    NOTAG,
    Message,
    Qid,
    Rattach,
    Rclunk,
    Rflush,
    Rgetattr,
    Rlerror,
    Rread,
    Rversion,
    Rwalk,
    Tattach,
    Tclunk,
    Tflush,
    Tgetattr,
    Tread,
    Tversion,
    Twalk,
    decode,
    encode,
)

ROOT = Qid(0x80, 0, 1)
Handler = Callable[["FakeServer", int, Message], Awaitable[None]]
Starter = Callable[..., Awaitable[tuple["FakeServer", str]]]


class FakeServer:
    """A 9P peer on 127.0.0.1 whose answers a test scripts; records what it received."""

    def __init__(self, handler: Handler | None = None, version: str = "9P2000.L",
                 msize: int = 8192) -> None:
        self.handler = handler
        self.version = version
        self.msize = msize
        self.received: list[tuple[int, Message]] = []
        self.arrived = asyncio.Condition()
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    async def start(self, unix_path: str | None = None) -> str:
        if unix_path is not None:
            self.server = await asyncio.start_unix_server(self._serve, unix_path)
            return f"unix://{unix_path}"
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"tcp://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def reply(self, tag: int, msg: Message) -> None:
        assert self.writer is not None
        self.writer.write(encode(tag, msg))

    async def wait_for(self, kind: type[Message], count: int = 1) -> list[tuple[int, Message]]:
        """Wait until ``count`` messages of ``kind`` arrived; return them."""
        def found() -> list[tuple[int, Message]]:
            return [(t, m) for t, m in self.received if isinstance(m, kind)]
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(found()) >= count), 5)
        return found()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        framer = Framer(1 << 20)
        while data := await reader.read(65536):
            for frame in framer.feed(data):
                tag, msg = decode(frame)
                async with self.arrived:
                    self.received.append((tag, msg))
                    self.arrived.notify_all()
                await self._answer(tag, msg)

    async def _answer(self, tag: int, msg: Message) -> None:
        if isinstance(msg, Tversion):
            self.reply(tag, Rversion(min(msg.msize, self.msize), self.version))
        elif isinstance(msg, Tattach):
            self.reply(tag, Rattach(ROOT))
        elif isinstance(msg, Tclunk):
            self.reply(tag, Rclunk())
        elif self.handler is not None:
            await self.handler(self, tag, msg)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[Starter]:
    servers: list[FakeServer] = []

    async def start(handler: Handler | None = None, unix_path: str | None = None,
                    **kwargs: object) -> tuple[FakeServer, str]:
        server = FakeServer(handler, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server, await server.start(unix_path)

    yield start
    for server in servers:
        await server.stop()


def getattr_reply(size: int = 0) -> Rgetattr:
    return Rgetattr(0x7FF, Qid(0, 0, 9), 0o100644, 0, 0, 1, 0, size, 4096, 0,
                    *([0] * 10))


@pytest.mark.asyncio
async def test_version_negotiation_and_notag(fake: Starter) -> None:
    server, url = await fake(msize=16384)
    async with await Client.connect(url, msize=65536) as client:
        assert client.msize == 16384
        assert client.version == "9P2000.L"
    tag, msg = server.received[0]
    assert tag == NOTAG and msg == Tversion(65536, "9P2000.L")


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", ["unknown", "9P2000", "9P2000.u"])
async def test_version_refused(fake: Starter, answer: str) -> None:
    _, url = await fake(version=answer)
    with pytest.raises(VersionError, match=repr(answer)):
        await Client.connect(url)


@pytest.mark.asyncio
async def test_version_answered_with_error(fake: Starter) -> None:
    server, url = await fake()

    async def refuse(tag: int, msg: Message) -> None:
        server.reply(tag, Rlerror(errno.EIO))

    server._answer = refuse  # type: ignore[method-assign]
    with pytest.raises(VersionError, match="refused"):
        await Client.connect(url)


@pytest.mark.asyncio
async def test_msize_larger_than_asked_is_a_protocol_error(fake: Starter) -> None:
    server, url = await fake()

    async def greedy(tag: int, msg: Message) -> None:
        server.reply(tag, Rversion(1 << 22, "9P2000.L"))

    server._answer = greedy  # type: ignore[method-assign]
    with pytest.raises(ProtocolError, match="msize"):
        await Client.connect(url, msize=8192)


@pytest.mark.asyncio
async def test_replies_out_of_order(fake: Starter) -> None:
    held: list[tuple[int, Tgetattr]] = []

    async def hold(server: FakeServer, tag: int, msg: Message) -> None:
        assert isinstance(msg, Tgetattr)
        held.append((tag, msg))
        if len(held) == 10:
            for t, m in reversed(held):
                server.reply(t, getattr_reply(size=m.request_mask))

    _, url = await fake(hold)
    async with await Client.connect(url) as client:
        tree = await client.attach()
        results = await asyncio.gather(*(tree.root.getattr(mask) for mask in range(1, 11)))
        assert [r.size for r in results] == list(range(1, 11))
        tags = {t for t, _ in held}
        assert len(tags) == 10 and NOTAG not in tags


@pytest.mark.asyncio
async def test_rlerror_becomes_oserror_with_path(fake: Starter) -> None:
    async def enoent(server: FakeServer, tag: int, msg: Message) -> None:
        server.reply(tag, Rlerror(errno.ENOENT))

    _, url = await fake(enoent)
    async with await Client.connect(url) as client:
        tree = await client.attach()
        with pytest.raises(FileNotFoundError) as info:
            await tree.stat("/no/such")
        assert info.value.errno == errno.ENOENT
        assert info.value.filename == "/no/such"


@pytest.mark.asyncio
async def test_cancel_sends_tflush_and_keeps_tag_until_rflush(fake: Starter) -> None:
    async def never(server: FakeServer, tag: int, msg: Message) -> None:
        if isinstance(msg, Tgetattr):
            server.reply(tag, getattr_reply())  # answered at once
        # Tread and Tflush: the test answers by hand

    server, url = await fake(never)
    async with await Client.connect(url) as client:
        tree = await client.attach()
        task = asyncio.ensure_future(tree.root.read(0, 100))
        [(read_tag, _)] = await server.wait_for(Tread)
        task.cancel()
        [(flush_tag, flush)] = await server.wait_for(Tflush)
        assert flush == Tflush(read_tag) and flush_tag != read_tag
        # Until Rflush the old tag stays reserved: a new request must not reuse it.
        await tree.root.getattr()
        [(getattr_tag, _)] = await server.wait_for(Tgetattr)
        assert getattr_tag not in (read_tag, flush_tag)
        assert not task.done()  # the cancelled caller waits for Rflush
        server.reply(flush_tag, Rflush())
        with pytest.raises(asyncio.CancelledError):
            await task
        await tree.root.getattr()  # lowest free tag again: the flushed one is reusable
        gets = await server.wait_for(Tgetattr, 2)
        assert gets[1][0] == min(read_tag, flush_tag)


@pytest.mark.asyncio
async def test_reply_before_rflush_is_honoured(fake: Starter) -> None:
    """flush(5): a Twalk answered before Rflush bound newfid, so the client clunks it."""
    walks: list[tuple[int, Twalk]] = []

    async def slow_walk(server: FakeServer, tag: int, msg: Message) -> None:
        if isinstance(msg, Twalk):
            walks.append((tag, msg))
        elif isinstance(msg, Tflush):
            old_tag, walk = walks[-1]
            server.reply(old_tag, Rwalk(tuple(Qid(0, 0, 5) for _ in walk.wnames)))
            server.reply(tag, Rflush())

    server, url = await fake(slow_walk)
    async with await Client.connect(url) as client:
        tree = await client.attach()
        task = asyncio.ensure_future(tree.walk("a/b"))
        await server.wait_for(Twalk)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        newfid = walks[-1][1].newfid
        clunks = await server.wait_for(Tclunk)
        assert [m for _, m in clunks] == [Tclunk(newfid)]


@pytest.mark.asyncio
async def test_flushed_walk_without_reply_frees_the_fid(fake: Starter) -> None:
    async def flush_only(server: FakeServer, tag: int, msg: Message) -> None:
        if isinstance(msg, Tflush):
            server.reply(tag, Rflush())

    server, url = await fake(flush_only)
    async with await Client.connect(url) as client:
        tree = await client.attach()
        task = asyncio.ensure_future(tree.walk("a"))
        [(_, walk)] = await server.wait_for(Twalk)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert isinstance(walk, Twalk)
        assert client.take_fid() == walk.newfid  # never bound, so free again
        assert not [m for _, m in server.received if isinstance(m, Tclunk)]


@pytest.mark.asyncio
async def test_connection_loss_fails_pending_requests(fake: Starter) -> None:
    async def hang_up(server: FakeServer, tag: int, msg: Message) -> None:
        assert server.writer is not None
        server.writer.close()

    _, url = await fake(hang_up)
    client = await Client.connect(url)
    tree = await client.attach()
    with pytest.raises(ConnectionError):
        await tree.root.getattr()
    assert client.closed
    with pytest.raises(ConnectionError):
        await tree.root.getattr()
    await client.close()


@pytest.mark.asyncio
async def test_wrong_reply_type_is_a_protocol_error(fake: Starter) -> None:
    async def confused(server: FakeServer, tag: int, msg: Message) -> None:
        server.reply(tag, Rread(b"x"))

    _, url = await fake(confused)
    async with await Client.connect(url) as client:
        tree = await client.attach()
        with pytest.raises(ProtocolError, match="Tgetattr was answered by Rread"):
            await tree.root.getattr()


@pytest.mark.asyncio
async def test_long_walks_are_split_by_sixteen(fake: Starter) -> None:
    async def walk(server: FakeServer, tag: int, msg: Message) -> None:
        assert isinstance(msg, Twalk)
        server.reply(tag, Rwalk(tuple(Qid(0x80, 0, 7) for _ in msg.wnames)))

    server, url = await fake(walk)
    async with await Client.connect(url) as client:
        tree = await client.attach()
        fid = await tree.walk("/".join(f"d{i}" for i in range(40)))
        walks = [m for _, m in await server.wait_for(Twalk, 3) if isinstance(m, Twalk)]
        assert [len(w.wnames) for w in walks] == [16, 16, 8]
        assert walks[0].fid == tree.root.fid
        assert walks[1].fid == walks[1].newfid == walks[0].newfid == fid.fid
        await fid.clunk()


@pytest.mark.asyncio
async def test_connect_refused() -> None:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(f"tcp://127.0.0.1:{port}")


@pytest.mark.asyncio
async def test_unix_socket_url(fake: Starter, tmp_path: Path) -> None:
    async def answer(server: FakeServer, tag: int, msg: Message) -> None:
        server.reply(tag, Rwalk(()) if isinstance(msg, Twalk) else getattr_reply(size=42))

    _, url = await fake(answer, unix_path=str(tmp_path / "9p.sock"))
    assert url.startswith("unix:///")
    async with await Client.connect(url) as client:
        tree = await client.attach()
        assert (await tree.stat("")).st_size == 42
