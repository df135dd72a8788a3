"""The 9p backend's getattr path with no Task: Client.rpc_soon and Fid.getattr_soon in the
client library, and a front server's Tgetattr of an imported file answered by a callback
(flushed at once, dropped when late, EIO when the back server dies)."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from remote_servers import BackServer, start_ninep

from ninep.clients import Client
from ninep.clients.fid import Fid, GetattrFields
from ninep.wire.messages import Qid
from tests.hostile.serverproc import serve_process

HANG = 30  # seconds after which a wait is a hang (never a speed assertion)


class Answers:
    """What getattr_soon's callback received, and a way to wait for the next."""

    def __init__(self) -> None:
        self.got: list[GetattrFields | OSError] = []
        self._more = asyncio.Event()

    def __call__(self, answer: GetattrFields | OSError) -> None:
        self.got.append(answer)
        self._more.set()

    async def wait(self, count: int = 1) -> list[GetattrFields | OSError]:
        while len(self.got) < count:
            self._more.clear()
            await asyncio.wait_for(self._more.wait(), HANG)
        return self.got


@contextmanager
def stopped(back: BackServer) -> Iterator[int]:
    """The back server SIGSTOPped (it answers nothing, its socket stays open)."""
    assert back.proc is not None
    os.kill(back.proc.pid, signal.SIGSTOP)
    try:
        yield back.proc.pid
    finally:
        os.kill(back.proc.pid, signal.SIGCONT)


async def test_getattr_soon_answers_what_getattr_answers(tmp_path: Path) -> None:
    back = start_ninep(tmp_path, "/=ram", unix=True)
    try:
        async with await Client.connect(back.url) as client:
            tree = await client.attach("root", "", 0)
            await tree.write_bytes("f", b"12345")
            fid = await tree.walk("f")
            answers = Answers()
            assert fid.getattr_soon(answers)
            assert answers.got == []  # never from inside the call
            [fields] = await answers.wait()
            assert fields == GetattrFields.of(await fid.getattr())
            assert isinstance(fields, GetattrFields) and fields.size == 5
            # an Rlerror is the OSError getattr() raises
            unbound = Fid(client, 4000, Qid(0, 0, 0))
            with pytest.raises(OSError) as caught:
                await unbound.getattr()
            assert unbound.getattr_soon(answers)
            [_, error] = await answers.wait(2)
            assert isinstance(error, OSError) and not isinstance(error, ConnectionError)
            assert error.errno == caught.value.errno
            assert client.pending == 0
        assert not fid.getattr_soon(answers)  # closed: refused, nothing sent
    finally:
        back.stop()


async def test_getattr_soon_is_refused_at_max_inflight_and_fails_with_the_connection(
        tmp_path: Path) -> None:
    back = start_ninep(tmp_path, "/=ram", unix=True)
    try:
        async with await Client.connect(back.url, max_inflight=2) as client:
            root = (await client.attach("root", "", 0)).root
            answers = Answers()
            with stopped(back) as pid:
                assert root.getattr_soon(answers) and root.getattr_soon(answers)
                assert not root.getattr_soon(answers)  # would wait for a slot
                assert client.pending == 2
                os.kill(pid, signal.SIGKILL)
                got = await answers.wait(2)
            assert all(isinstance(a, ConnectionError) for a in got), got
            assert len(got) == 2 and client.pending == 0
    finally:
        back.stop()


async def test_a_getattr_through_the_front_is_flushed_without_the_back_server(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The front answers Tgetattr of an imported file with no Task: a Tflush of one that
    waits on a stopped back server gets its Rflush at once (before, the front's flush
    waited for the back server's), the late reply is dropped, and a getattr in flight
    when the back server dies is EIO."""
    back = start_ninep(tmp_path, "/=ram", unix=True)
    try:
        with serve_process(["--mount", f"/=9p:{back.url},uname=root,uid=0"], tmp_path) as front:
            url = f"tcp://127.0.0.1:{front.port}"
            async with await Client.connect(url) as client, await Client.connect(url) as gone:
                tree = await client.attach("root", "", 0)
                await tree.write_bytes("f", b"abc")
                await tree.write_bytes("g", b"12345")
                fid, other = await tree.walk("f"), await tree.walk("g")
                left = await (await gone.attach("root", "", 0)).walk("f")
                with stopped(back) as pid:
                    flushed = asyncio.ensure_future(fid.getattr())
                    await asyncio.sleep(0.2)  # let it reach the front and the back server
                    assert not flushed.done()
                    flushed.cancel()  # Tflush: the Rflush comes without the back server
                    with pytest.raises(asyncio.CancelledError):
                        await asyncio.wait_for(flushed, HANG)
                    assert client.pending == 0
                    abandoned = asyncio.ensure_future(left.getattr())
                    await asyncio.sleep(0.2)
                    await gone.close()  # its connection goes while the getattr waits
                    with pytest.raises(ConnectionError):
                        await abandoned
                # the back server answers both late: the front sends neither reply (it
                # would come before this one, on the tag the flushed request had)
                assert (await asyncio.wait_for(other.getattr(), HANG)).size == 5
                assert client.pending == 0
                assert "unknown tag" not in caplog.text
                with stopped(back) as pid:
                    dying = asyncio.ensure_future(fid.getattr())
                    await asyncio.sleep(0.2)
                    os.kill(pid, signal.SIGKILL)
                    with pytest.raises(OSError) as caught:
                        await asyncio.wait_for(dying, HANG)
                assert caught.value.errno == errno.EIO
            log = front.log_text()
            assert "Traceback" not in log and "unknown tag" not in log
    finally:
        back.stop()
