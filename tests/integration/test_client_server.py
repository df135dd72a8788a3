"""The client library against our server over real sockets: locks across connections,
open files that are renamed or unlinked, xattrs set at clunk, and 50 clients at once."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os

import pytest

from ninep.clients import LOCK_UNLCK, LOCK_WRLCK, Client, Tree
from tests.conftest import RunningServer


async def connect(server: RunningServer, unix: bool = False, n_uname: int = 0) -> tuple[Client, Tree]:
    client = await Client.connect(server.unix_url if unix else server.tcp_url)
    return client, await client.attach(uname="root", n_uname=n_uname)


@pytest.mark.asyncio
async def test_locks_conflict_across_connections_and_die_with_them(
        ninep_server: RunningServer) -> None:
    one, tree1 = await connect(ninep_server)
    two, tree2 = await connect(ninep_server, unix=True)
    try:
        await tree1.write_bytes("/shared", b"x" * 10)
        a = await tree1.open("/shared", "r+b")
        b = await tree2.open("/shared", "r+b")
        await a.lock(LOCK_WRLCK, 0, 0, proc_id=7)
        with pytest.raises(BlockingIOError):
            await b.lock(LOCK_WRLCK, 0, 0, proc_id=7)  # same proc_id, other connection
        holder = await b.getlock(LOCK_WRLCK, 0, 0, proc_id=8)
        assert (holder.type, holder.proc_id) == (LOCK_WRLCK, 7)
        waiting = asyncio.ensure_future(b.lock(LOCK_WRLCK, 0, 0, block=True, proc_id=8))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await one.close()  # the holder's connection goes: its lock with it
        await asyncio.wait_for(waiting, 10)
        assert (await b.getlock(LOCK_WRLCK, 0, 0, proc_id=8)).type == LOCK_UNLCK
        await b.close()
    finally:
        await two.close()


@pytest.mark.asyncio
async def test_cancelling_a_blocked_lock_flushes_it(ninep_server: RunningServer) -> None:
    client, tree = await connect(ninep_server)
    try:
        await tree.write_bytes("/f", b"")
        a = await tree.open("/f", "r+b")
        b = await tree.open("/f", "r+b")
        await a.lock(LOCK_WRLCK, proc_id=1)
        waiting = asyncio.ensure_future(b.lock(LOCK_WRLCK, block=True, proc_id=2))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await a.lock(LOCK_UNLCK, proc_id=1)
        await b.lock(LOCK_WRLCK, proc_id=3)  # proc 2's abandoned request holds nothing
        assert (await a.getlock(LOCK_WRLCK, proc_id=1)).proc_id == 3
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_open_unlink_read_write_stat_truncate(ninep_server: RunningServer) -> None:
    client, tree = await connect(ninep_server)
    try:
        f = await tree.open("/victim", "w+b")
        await f.write(b"0123456789")
        await tree.remove("/victim")
        assert not await tree.exists("/victim")
        st = await f.stat()
        assert st.st_nlink == 0 and st.st_size == 10
        await f.seek(0)
        assert await f.read() == b"0123456789"
        await f.pwrite(10, b"more")
        await f.truncate(12)
        assert await f.pread(0, 100) == b"0123456789mo"
        await f.close()
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_an_open_file_follows_its_rename(ninep_server: RunningServer) -> None:
    client, tree = await connect(ninep_server)
    try:
        await tree.mkdir("/a")
        await tree.mkdir("/b")
        f = await tree.open("/a/old", "w+b")
        await f.write(b"before ")
        await tree.rename("/a/old", "/b/new")
        await f.write(b"after")
        await f.truncate(12)
        assert (await f.stat()).st_size == 12
        await f.close()
        assert await tree.read_bytes("/b/new") == b"before after"
        assert not await tree.exists("/a/old")
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_xattrs_take_effect_at_clunk(ninep_server: RunningServer) -> None:
    client, tree = await connect(ninep_server)
    try:
        await tree.write_bytes("/x", b"")
        await tree.setxattr("/x", "user.colour", b"blue")
        await tree.setxattr("/x", "trusted.secret", b"s")
        assert await tree.getxattr("/x", "user.colour") == b"blue"
        assert set(await tree.listxattr("/x")) >= {"user.colour", "trusted.secret"}
        with pytest.raises(OSError) as info:
            await tree.setxattr("/x", "user.colour", b"red", flags=1)  # XATTR_CREATE
        assert info.value.errno == errno.EEXIST
        await tree.removexattr("/x", "user.colour")
        with pytest.raises(OSError) as info:
            await tree.getxattr("/x", "user.colour")
        assert info.value.errno == errno.ENODATA
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_permissions_follow_the_attaching_uid(ninep_server: RunningServer) -> None:
    root, rtree = await connect(ninep_server, n_uname=0)
    user, utree = await connect(ninep_server, n_uname=1000)
    try:
        await rtree.write_bytes("/secret", b"root only")
        await rtree.chmod("/secret", 0o600)
        with pytest.raises(PermissionError):
            await utree.read_bytes("/secret")
        with pytest.raises(PermissionError):
            await utree.write_bytes("/mine", b"")  # / is root's 0755
        await rtree.mkdir("/home", 0o755)
        await rtree.chown("/home", 1000, 1000)
        await utree.write_bytes("/home/mine", b"ok")
        assert (await utree.stat("/home/mine")).st_uid == 1000
    finally:
        await root.close()
        await user.close()


async def _mixed_work(server: RunningServer, index: int) -> str:
    client, tree = await connect(server, unix=index % 2 == 1)
    try:
        base = f"/c{index}"
        await tree.mkdir(base)
        payload = os.urandom(3000 + index * 1000)
        await tree.write_bytes(f"{base}/data", payload)
        for n in range(20):
            await tree.write_bytes(f"{base}/small{n}", b"%d" % n)
        assert len(await tree.listdir(base)) == 21
        await tree.rename(f"{base}/data", f"{base}/renamed")
        assert await tree.read_bytes(f"{base}/renamed") == payload
        for n in range(0, 20, 2):
            await tree.remove(f"{base}/small{n}")
        await tree.symlink("renamed", f"{base}/link")
        assert await tree.readlink(f"{base}/link") == "renamed"
        st = await tree.stat(f"{base}/renamed")
        assert st.st_size == len(payload)
        return hashlib.sha256(payload).hexdigest()
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_fifty_concurrent_connections_doing_mixed_work(ninep_server: RunningServer) -> None:
    digests = await asyncio.wait_for(
        asyncio.gather(*(_mixed_work(ninep_server, i) for i in range(50))), 120)
    assert len(set(digests)) == 50
    client, tree = await connect(ninep_server)
    try:
        names = set(await tree.listdir("/"))
        assert {f"c{i}" for i in range(50)} <= names
        for i in range(50):
            assert len(await tree.listdir(f"/c{i}")) == 12  # 10 small, renamed, link
    finally:
        await client.close()
