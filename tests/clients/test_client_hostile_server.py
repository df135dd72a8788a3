"""The client library against a server that lies (tests/clients/lying_server.py): every
bad reply is a clear error (ProtocolError, which closes the connection, or OSError(EIO)
for one bad reply on a connection that goes on), never a wrong value, a hang or an
exception of another kind."""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio

from ninep.clients import Client, ProtocolError, Tree, VersionError
from ninep.clients.fid import Fid, GetattrFields
from ninep.wire.constants import GETATTR_MODE, IOHDRSZ, XATTR_SIZE_MAX
from ninep.wire.dirent import pack_dirent
from ninep.wire.messages import (
    NOTAG,
    Qid,
    Rattach,
    Rerror,
    Rgetattr,
    Rlerror,
    Rlopen,
    Rread,
    Rreaddir,
    Rreadlink,
    Rversion,
    Rwalk,
    Rwrite,
    Rxattrwalk,
    Tgetattr,
    Tlopen,
    Tread,
    Treaddir,
    Treadlink,
    Tversion,
    Twalk,
    Twrite,
    Txattrwalk,
    encode,
)

from .lying_server import DATA, FILE, ROOT, STALL, LyingServer, frame, u32

HANG = 30  # seconds after which a wait is a hang (never a speed assertion)
MSIZE = 65536


@pytest_asyncio.fixture
async def liar() -> AsyncIterator[LyingServer]:
    server = await LyingServer(MSIZE).start()
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def tree(liar: LyingServer) -> AsyncIterator[Tree]:
    client = await Client.connect(liar.url, MSIZE)
    try:
        yield await client.attach("root")
    finally:
        await client.close()


async def eio(call: object) -> OSError:
    """The OSError(EIO) that ``call`` (an awaitable) raises, within HANG seconds."""
    with pytest.raises(OSError) as caught:
        await asyncio.wait_for(call, HANG)  # type: ignore[arg-type]
    assert caught.value.errno == errno.EIO, caught.value
    assert not isinstance(caught.value, ConnectionError)
    return caught.value


async def getattr_soon(fid: Fid) -> GetattrFields | OSError:
    """What Fid.getattr_soon's callback is given (the request must be taken)."""
    answer: asyncio.Future[GetattrFields | OSError] = asyncio.get_running_loop().create_future()
    assert fid.getattr_soon(answer.set_result)
    return await asyncio.wait_for(answer, HANG)


async def broken(call: object, client: Client) -> ProtocolError:
    """The ProtocolError that ``call`` raises; the connection is closed by then."""
    with pytest.raises(ProtocolError) as caught:
        await asyncio.wait_for(call, HANG)  # type: ignore[arg-type]
    assert client.closed
    return caught.value


async def still_works(tree: Tree) -> None:
    assert await tree.read_bytes("f") == DATA


# --- framing -------------------------------------------------------------------


async def test_a_frame_over_msize_is_refused_from_its_size_field(
        liar: LyingServer, tree: Tree) -> None:
    # only the size field and the header come: the body is never sent, so a client
    # that waited to buffer it would hang here
    liar.lie(Tgetattr, lambda tag, _: frame(Rgetattr.type, tag, size=MSIZE + 1))
    error = await broken(tree.stat("f"), tree.root.client)
    assert "exceeds msize" in str(error)


async def test_a_frame_smaller_than_a_header_is_refused(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tgetattr, lambda tag, _: u32(3) + b"\0" * 8)
    await broken(tree.stat("f"), tree.root.client)


async def test_a_truncated_body_closes_the_connection(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tgetattr, lambda tag, _: frame(Rgetattr.type, tag, b"\0" * 20))
    await broken(tree.stat("f"), tree.root.client)


async def test_a_truncated_body_on_the_callback_path_closes_the_connection(
        liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tgetattr, lambda tag, _: frame(Rgetattr.type, tag, b"\0" * 20))
    fid = await tree.root.walk(("f",))
    result = await getattr_soon(fid)
    assert isinstance(result, ProtocolError)
    assert fid.client.closed


# --- version -------------------------------------------------------------------


@pytest.mark.parametrize("reply", [Rversion(MSIZE * 2, "9P2000.L"), Rversion(MSIZE, "9P2000"),
                                   Rversion(100, "9P2000.L")])
async def test_a_bad_rversion_is_refused(liar: LyingServer, reply: Rversion) -> None:
    liar.lie(Tversion, lambda tag, _: encode(tag, reply))
    with pytest.raises(ProtocolError):
        await asyncio.wait_for(Client.connect(liar.url, MSIZE), HANG)


async def test_an_rversion_on_another_tag_is_refused(liar: LyingServer) -> None:
    liar.lie(Tversion, lambda tag, _: encode(7, Rversion(MSIZE, "9P2000.L")))
    with pytest.raises(ProtocolError):
        await asyncio.wait_for(Client.connect(liar.url, MSIZE), HANG)


async def test_an_rlerror_to_tversion_with_errno_zero_is_a_version_error(
        liar: LyingServer) -> None:
    liar.lie(Tversion, lambda tag, _: encode(tag, Rlerror(0xFFFFFFFF)))
    with pytest.raises(VersionError):
        await asyncio.wait_for(Client.connect(liar.url, MSIZE), HANG)


# --- I/O counts ----------------------------------------------------------------


async def test_an_rread_longer_than_asked_is_eio(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tread, lambda tag, msg: encode(tag, Rread(b"x" * (msg.count + 1)))  # type: ignore[attr-defined]
             if msg.count < 1000 else None)  # type: ignore[attr-defined]
    async with await tree.open("f", "rb") as f:
        await eio(f.fid.read(0, 10))
    liar.lies.clear()
    await still_works(tree)


async def test_an_rwrite_count_larger_than_sent_is_eio(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Twrite, lambda tag, msg: encode(tag, Rwrite(len(msg.data) + 4096)))  # type: ignore[attr-defined]
    async with await tree.open("f", "r+b") as f:
        await eio(f.fid.write(0, b"abc"))
        await eio(f.pwrite(0, b"abc"))
    liar.lies.clear()
    await still_works(tree)


@pytest.mark.parametrize("iounit", [0, MSIZE * 16, 1])
async def test_io_is_capped_to_msize_whatever_iounit_says(
        liar: LyingServer, tree: Tree, iounit: int) -> None:
    liar.lie(Tlopen, lambda tag, _: encode(tag, Rlopen(FILE, iounit)))
    async with await tree.open("f", "rb") as f:
        assert 0 < f.fid.io_size <= MSIZE - IOHDRSZ
        await f.fid.read(0, 1 << 30)
    assert all(m.count <= MSIZE - IOHDRSZ for m in liar.sent(Tread))  # type: ignore[attr-defined]


# --- walks and listings --------------------------------------------------------


async def test_an_rwalk_with_more_qids_than_names_is_eio(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Twalk, lambda tag, msg: encode(tag, Rwalk((FILE,) * (len(msg.wnames) + 1)))  # type: ignore[attr-defined]
             if msg.wnames else None)  # type: ignore[attr-defined]
    await eio(tree.root.walk(("f",)))
    await eio(tree.root.walk(("f", "g")))


async def test_a_clone_answered_with_qids_is_eio(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Twalk, lambda tag, _: encode(tag, Rwalk((FILE,))))
    await eio(tree.root.clone())


def _listing(*entries: bytes) -> bytes:
    return b"".join(entries)


@pytest.mark.parametrize("name", ["a/b", "..\x00x", "", "../../etc", "/"])
async def test_an_rreaddir_name_that_is_no_file_name_is_eio(
        liar: LyingServer, tree: Tree, name: str) -> None:
    liar.lie(Treaddir, lambda tag, msg: encode(tag, Rreaddir(
        pack_dirent(FILE, 1, 8, "ok") + pack_dirent(FILE, 2, 8, name)))
        if msg.offset == 0 else None)  # type: ignore[attr-defined]
    await eio(tree.listdir(""))


async def test_dot_and_dotdot_in_an_rreaddir_are_left_out(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Treaddir, lambda tag, msg: encode(tag, Rreaddir(
        pack_dirent(ROOT, 1, 4, ".") + pack_dirent(ROOT, 2, 4, "..")
        + pack_dirent(FILE, 3, 8, "f"))) if msg.offset == 0 else None)  # type: ignore[attr-defined]
    assert await tree.listdir("") == ["f"]


async def test_an_rreaddir_longer_than_asked_is_eio(liar: LyingServer, tree: Tree) -> None:
    entries = b"".join(pack_dirent(FILE, n + 1, 8, f"name{n:04}") for n in range(200))
    liar.lie(Treaddir, lambda tag, _: encode(tag, Rreaddir(entries)))
    fid = await tree.root.clone()
    await fid.lopen(0)
    await eio(fid.readdir(0, 256))


async def test_an_rreaddir_entry_overrunning_the_reply_is_eio(
        liar: LyingServer, tree: Tree) -> None:
    liar.lie(Treaddir, lambda tag, _: encode(tag, Rreaddir(pack_dirent(FILE, 1, 8, "f")[:-1])))
    await eio(tree.listdir(""))


async def test_an_rreaddir_that_never_advances_is_eio(liar: LyingServer, tree: Tree) -> None:
    # every batch ends on the cookie it was asked from: a listing that never ends
    liar.lie(Treaddir, lambda tag, msg: encode(tag, Rreaddir(
        pack_dirent(FILE, msg.offset, 8, "f"))))  # type: ignore[attr-defined]
    await eio(tree.listdir(""))
    assert len(liar.sent(Treaddir)) <= 2


async def test_an_rreaddir_whose_cookies_go_round_is_eio(liar: LyingServer, tree: Tree) -> None:
    # 0 -> "a" (1) -> "b" (2) -> "c" (1) -> "b" (2) ...: each batch advances, the listing never ends
    after = {0: ("a", 1), 1: ("b", 2), 2: ("c", 1)}
    liar.lie(Treaddir, lambda tag, msg: encode(tag, Rreaddir(pack_dirent(
        FILE, after[msg.offset][1], 8, after[msg.offset][0]))))  # type: ignore[attr-defined]
    await eio(tree.listdir(""))
    assert len(liar.sent(Treaddir)) == 3


# --- attributes, links, xattrs ---------------------------------------------------


def _getattr(qid: Qid, mode: int) -> Rgetattr:
    return Rgetattr(0x7FF, qid, mode, 0, 0, 1, 0, 0, 4096, 0, *([0] * 10))


@pytest.mark.parametrize("qid,mode", [(ROOT, 0o100644), (FILE, 0o040755),
                                      (Qid(2, 0, 2), 0o100644), (FILE, 0o120777),
                                      (FILE, 0o644)])
async def test_an_rgetattr_whose_qid_contradicts_its_mode_is_eio(
        liar: LyingServer, tree: Tree, qid: Qid, mode: int) -> None:
    liar.lie(Tgetattr, lambda tag, _: encode(tag, _getattr(qid, mode)))
    fid = await tree.root.walk(("f",))
    await eio(fid.getattr())
    result = await getattr_soon(fid)
    assert isinstance(result, OSError) and result.errno == errno.EIO
    assert not isinstance(result, ConnectionError)
    liar.lies.clear()
    await still_works(tree)


async def test_a_mode_that_valid_does_not_vouch_for_is_not_checked(
        liar: LyingServer, tree: Tree) -> None:
    # 9P2000.L leaves a field outside the valid mask undefined: a mode of 0 there is no lie
    reply = replace(_getattr(FILE, 0), valid=0x7FF & ~GETATTR_MODE)
    liar.lie(Tgetattr, lambda tag, _: encode(tag, reply))
    fid = await tree.root.walk(("f",))
    assert (await fid.getattr()).mode == 0
    result = await getattr_soon(fid)
    assert isinstance(result, GetattrFields) and result.mode == 0


@pytest.mark.parametrize("ecode", [0, 0xFFFFFFFF, 4096, 512])
async def test_an_rlerror_errno_that_is_no_errno_is_eio(
        liar: LyingServer, tree: Tree, ecode: int) -> None:
    liar.lie(Tgetattr, lambda tag, _: encode(tag, Rlerror(ecode)))
    fid = await tree.root.walk(("f",))
    await eio(fid.getattr())
    result = await getattr_soon(fid)
    assert isinstance(result, OSError) and result.errno == errno.EIO


async def test_an_rlerror_errno_passes_through(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tgetattr, lambda tag, _: encode(tag, Rlerror(errno.EACCES)))
    with pytest.raises(PermissionError):
        await tree.stat("f")


async def test_an_rerror_is_eio(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tgetattr, lambda tag, _: encode(tag, Rerror("no such thing")))
    error = await eio(tree.root.getattr())
    assert "no such thing" in str(error)


@pytest.mark.parametrize("target", ["x" * 5000, "a\0b", ""])
async def test_an_rreadlink_that_is_no_link_target_is_eio(
        liar: LyingServer, tree: Tree, target: str) -> None:
    liar.lie(Treadlink, lambda tag, _: encode(tag, Rreadlink(target)))
    await eio(tree.readlink("f"))


async def test_an_rxattrwalk_over_xattr_size_max_reads_nothing(
        liar: LyingServer, tree: Tree) -> None:
    liar.lie(Txattrwalk, lambda tag, _: encode(tag, Rxattrwalk(1 << 40)))
    liar.lie(Tread, lambda tag, msg: encode(tag, Rread(b"v" * msg.count)))  # type: ignore[attr-defined]
    await eio(tree.getxattr("f", "user.big"))
    assert not liar.sent(Tread)
    liar.lie(Txattrwalk, lambda tag, _: encode(tag, Rxattrwalk(XATTR_SIZE_MAX)))
    assert len(await tree.getxattr("f", "user.max")) == XATTR_SIZE_MAX


# --- tags ----------------------------------------------------------------------


async def test_a_reply_to_a_tag_not_in_flight_closes_the_connection(
        liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tgetattr, lambda tag, _: encode((tag + 1) % NOTAG, _getattr(FILE, 0o100644)))
    await broken(tree.stat("f"), tree.root.client)


async def test_a_reply_of_the_wrong_type_closes_the_connection(
        liar: LyingServer, tree: Tree) -> None:
    liar.lie(Twalk, lambda tag, _: encode(tag, Rattach(FILE)))
    await broken(tree.root.walk(("f",)), tree.root.client)


async def test_a_wrong_type_on_the_callback_path_closes_the_connection(
        liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tgetattr, lambda tag, _: encode(tag, Rattach(FILE)))
    fid = await tree.root.walk(("f",))
    assert isinstance(await getattr_soon(fid), ProtocolError)
    assert fid.client.closed


async def test_a_duplicate_reply_closes_the_connection(
        liar: LyingServer, tree: Tree, caplog: pytest.LogCaptureFixture) -> None:
    liar.lie(Tgetattr, lambda tag, _: encode(tag, _getattr(FILE, 0o100644)) * 2)
    with caplog.at_level(logging.ERROR):
        # the first answer is taken; the second, to a tag no longer in flight, breaks off
        try:
            await asyncio.wait_for(tree.stat("f"), HANG)
        except ProtocolError:
            pass
        await broken(tree.stat("f"), tree.root.client)
    assert "not in flight" in caplog.text


async def test_a_stalled_request_is_flushed(liar: LyingServer, tree: Tree) -> None:
    liar.lie(Tread, lambda tag, _: STALL)
    async with await tree.open("f", "rb") as f:
        stuck = asyncio.ensure_future(f.fid.read(0, 10))
        await asyncio.sleep(0.1)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(stuck, HANG)
        liar.lies.clear()
        assert await asyncio.wait_for(f.fid.read(0, 5), HANG) == DATA[:5]


def test_u32_packs_little_endian() -> None:
    assert u32(3) == struct.pack("<I", 3)
