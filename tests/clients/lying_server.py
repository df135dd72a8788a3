"""A scriptable raw 9P2000.L server for tests: honest about a tiny tree (a directory
with one file) until a test tells it to answer a kind of request with raw frames of its
choosing. It stands for a hostile or broken back server behind the client library."""

from __future__ import annotations

import asyncio
import errno
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ninep.wire.codec import HEADER
from ninep.wire.dirent import pack_dirent
from ninep.wire.framing import Framer
from ninep.wire.messages import (
    Message,
    Qid,
    Rattach,
    Rclunk,
    Rflush,
    Rgetattr,
    Rlerror,
    Rlopen,
    Rread,
    Rreaddir,
    Rreadlink,
    Rstatfs,
    Rversion,
    Rwalk,
    Rwrite,
    Tattach,
    Tclunk,
    Tflush,
    Tgetattr,
    Tlopen,
    Tread,
    Treaddir,
    Treadlink,
    Tstatfs,
    Tversion,
    Twalk,
    Twrite,
    Txattrwalk,
    decode,
    encode,
)

__all__ = ["DATA", "FILE", "ROOT", "STALL", "Lie", "LyingServer", "frame", "lying_in_thread"]

ROOT = Qid(0x80, 0, 1)
FILE = Qid(0, 0, 2)
DATA = b"hello, honest data\n"
STALL = b""  # a lie that answers nothing at all
# A lie: the raw bytes to send for this request, STALL for none, None for the honest answer
Lie = Callable[[int, Message], bytes | None]


def frame(msg_type: int, tag: int, body: bytes = b"", size: int | None = None) -> bytes:
    """A raw frame: ``size`` (default: the true one) type tag body."""
    return HEADER.pack(len(body) + 7 if size is None else size, msg_type, tag) + body


@dataclass
class _Node:
    qid: Qid
    mode: int


_TREE = {(): _Node(ROOT, 0o040755), ("f",): _Node(FILE, 0o100644)}


class LyingServer:
    """Listens on 127.0.0.1; ``lies[T-class]`` answers that request instead of the truth.

    ``received`` holds the requests in order (what the client sent); ``fids`` the path
    of each fid (one client connection at a time: fid numbers are per connection)."""

    def __init__(self, msize: int = 65536) -> None:
        self.msize = msize
        self.lies: dict[type[Message], Lie] = {}
        self.received: list[tuple[int, Message]] = []
        self.fids: dict[int, tuple[str, ...]] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def lie(self, kind: type[Message], answer: Lie) -> None:
        self.lies[kind] = answer

    def sent(self, kind: type[Message]) -> list[Message]:
        return [msg for _, msg in self.received if isinstance(msg, kind)]

    def on(self, msg: Message, path: tuple[str, ...]) -> bool:
        """Whether ``msg`` is a request on a fid of ``path``."""
        return self.fids.get(getattr(msg, "fid", -1)) == path

    async def start(self) -> LyingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        fids = self.fids = {}
        framer = Framer(1 << 20)
        try:
            while data := await reader.read(1 << 20):
                for raw in framer.feed(data):
                    tag, msg = decode(raw)
                    self.received.append((tag, msg))
                    lie = self.lies.get(type(msg))
                    answer = lie(tag, msg) if lie is not None else None
                    if answer is None:
                        answer = encode(tag, self._truth(fids, msg))
                    writer.write(answer)
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _truth(self, fids: dict[int, tuple[str, ...]], msg: Message) -> Message:
        """The honest answer of the tiny tree."""
        if isinstance(msg, Tversion):
            return Rversion(min(msg.msize, self.msize), "9P2000.L")
        if isinstance(msg, Tattach):
            fids[msg.fid] = ()
            return Rattach(ROOT)
        if isinstance(msg, Tflush):
            return Rflush()
        if isinstance(msg, Tclunk):
            fids.pop(msg.fid, None)
            return Rclunk()
        path = fids.get(getattr(msg, "fid", -1))
        if path is None:
            return Rlerror(errno.EBADF)
        if isinstance(msg, Twalk):
            qids = []
            for name in msg.wnames:
                node = _TREE.get((*path, name))
                if node is None:
                    break
                path = (*path, name)
                qids.append(node.qid)
            if len(qids) < len(msg.wnames) and not qids and msg.wnames:
                return Rlerror(errno.ENOENT)
            if len(qids) == len(msg.wnames):
                fids[msg.newfid] = path
            return Rwalk(tuple(qids))
        node = _TREE[path]
        if isinstance(msg, Tgetattr):
            size = len(DATA) if node.qid is FILE else 0
            return Rgetattr(0x7FF, node.qid, node.mode, 0, 0, 1, 0, size, 4096, 0,
                            *([0] * 10))
        if isinstance(msg, Tlopen):
            return Rlopen(node.qid, 0)
        if isinstance(msg, Tread):
            return Rread(DATA[msg.offset:msg.offset + msg.count])
        if isinstance(msg, Twrite):
            return Rwrite(len(msg.data))
        if isinstance(msg, Treaddir):
            data = b"" if msg.offset else pack_dirent(FILE, 1, 8, "f")
            return Rreaddir(data)
        if isinstance(msg, Treadlink):
            return Rreadlink("f")
        if isinstance(msg, Txattrwalk):
            return Rlerror(errno.ENODATA)
        if isinstance(msg, Tstatfs):
            return Rstatfs(0x01021997, 4096, 10, 5, 5, 10, 5, 0, 255)
        return Rlerror(errno.EOPNOTSUPP)


@contextmanager
def lying_in_thread(msize: int = 65536) -> Iterator[LyingServer]:
    """A LyingServer on an event loop of its own thread, for tests whose own thread
    blocks (waiting for a server process that connects to it at start-up)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(LyingServer(msize).start(), loop).result(30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def u32(value: int) -> bytes:
    return struct.pack("<I", value)
