"""The overlay under concurrent requests, over layers that wait at every call (as a thread-pool
backend such as passthrough does), so requests interleave inside every overlay operation."""

from __future__ import annotations

import asyncio
import random

import pytest
from test_overlay import list_all, snapshot
from test_overlay_model import apply, random_op, seed, visible

from ninep.backends.overlay import OverlayBackend
from ninep.backends.overlay.markers import WORK_DIR
from ninep.backends.ram import RamBackend
from ninep.vfs.node import Attr, Backend, DirEntry, Handle, Node, SetAttr, StatFs

ASYNC = pytest.mark.asyncio
SEEDS = 4


class Waiting(Node):
    """A node that lets the loop run other requests before each call."""

    def __init__(self, inner: Node) -> None:
        self.inner = inner

    async def getattr(self) -> Attr:
        await asyncio.sleep(0)
        return await self.inner.getattr()

    async def setattr(self, changes: SetAttr) -> None:
        await asyncio.sleep(0)
        await self.inner.setattr(changes)

    async def walk(self, name: str) -> Node:
        await asyncio.sleep(0)
        return Waiting(await self.inner.walk(name))

    async def open(self, flags: int) -> Handle:
        await asyncio.sleep(0)
        return WaitingHandle(await self.inner.open(flags))

    async def readdir(self, cookie: int, count: int) -> list[DirEntry]:
        await asyncio.sleep(0)
        return await self.inner.readdir(cookie, count)

    async def listing_end(self) -> int | None:
        await asyncio.sleep(0)
        return await self.inner.listing_end()

    async def create(self, name: str, flags: int, mode: int, uid: int,
                     gid: int) -> tuple[Node, Handle]:
        await asyncio.sleep(0)
        node, handle = await self.inner.create(name, flags, mode, uid, gid)
        return Waiting(node), WaitingHandle(handle)

    async def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Node:
        await asyncio.sleep(0)
        return Waiting(await self.inner.mkdir(name, mode, uid, gid))

    async def symlink(self, name: str, target: str, uid: int, gid: int) -> Node:
        await asyncio.sleep(0)
        return Waiting(await self.inner.symlink(name, target, uid, gid))

    async def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Node:
        await asyncio.sleep(0)
        return Waiting(await self.inner.mknod(name, mode, rdev, uid, gid))

    async def link(self, name: str, target: Node) -> None:
        await asyncio.sleep(0)
        assert isinstance(target, Waiting)
        await self.inner.link(name, target.inner)

    async def rename(self, oldname: str, newdir: Node, newname: str) -> None:
        await asyncio.sleep(0)
        assert isinstance(newdir, Waiting)
        await self.inner.rename(oldname, newdir.inner, newname)

    async def unlink(self, name: str, is_dir: bool) -> None:
        await asyncio.sleep(0)
        await self.inner.unlink(name, is_dir)

    async def readlink(self) -> str:
        await asyncio.sleep(0)
        return await self.inner.readlink()

    async def statfs(self) -> StatFs:
        return await self.inner.statfs()

    async def xattr_get(self, name: str) -> bytes:
        await asyncio.sleep(0)
        return await self.inner.xattr_get(name)

    async def xattr_list(self) -> list[str]:
        await asyncio.sleep(0)
        return await self.inner.xattr_list()

    async def xattr_set(self, name: str, value: bytes, flags: int) -> None:
        await asyncio.sleep(0)
        await self.inner.xattr_set(name, value, flags)

    async def xattr_remove(self, name: str) -> None:
        await asyncio.sleep(0)
        await self.inner.xattr_remove(name)


class WaitingHandle(Handle):
    def __init__(self, inner: Handle) -> None:
        self.inner = inner

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        await asyncio.sleep(0)
        return await self.inner.read(offset, size)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        await asyncio.sleep(0)
        return await self.inner.write(offset, data)

    async def close(self) -> None:
        await self.inner.close()


class WaitingBackend(Backend):
    def __init__(self, inner: RamBackend) -> None:
        self.inner = inner
        self.root = Waiting(inner.root)


async def worker(fs: OverlayBackend, rng: random.Random, steps: int) -> None:
    tree: dict[str, object] = {}
    for _ in range(steps):
        try:
            tree = await visible(fs.root)
        except OSError:  # another worker removed a name between listing and walking it
            pass
        await apply(fs.root, random_op(rng, tree))  # any errno is fine; nothing else is


@pytest.mark.parametrize("seed_value", range(SEEDS))
@ASYNC
async def test_concurrent_requests_leave_a_consistent_overlay(seed_value: int) -> None:
    lower, upper = RamBackend(), RamBackend()
    seed(lower)
    before = await snapshot(lower.root)
    fs = OverlayBackend(WaitingBackend(lower), WaitingBackend(upper))
    await fs.start()
    rng = random.Random(seed_value)
    await asyncio.gather(*(worker(fs, random.Random(rng.random()), 40) for _ in range(4)))
    live = await visible(fs.root)
    for directory in [k for k, v in live.items() if isinstance(v, tuple) and v[0] == 0o40000]:
        listed = [e.name for e in await list_all(await walk_path(fs.root, directory))]
        assert len(listed) == len(set(listed))
    # What the overlay's cached nodes show is what a fresh start makes of the upper layer.
    fresh = OverlayBackend(lower, upper)
    await fresh.start()
    assert await visible(fresh.root) == live
    if WORK_DIR in [e.name for e in await list_all(upper.root)]:
        assert await list_all(await upper.root.walk(WORK_DIR)) == []  # no copy left behind
    assert await snapshot(lower.root) == before


async def walk_path(root: Node, path: str) -> Node:
    node = root
    for part in path.split("/")[1:]:
        node = await node.walk(part)
    return node


@ASYNC
async def test_unlink_during_copy_up_leaves_no_file_behind() -> None:
    lower, upper = RamBackend(), RamBackend()
    lower.add_file("big", bytes(range(256)) * 40000)
    before = await snapshot(lower.root)
    fs = OverlayBackend(WaitingBackend(lower), WaitingBackend(upper))
    await fs.start()
    node = await fs.root.walk("big")
    copy = asyncio.create_task(node.setattr(SetAttr(mode=0o600)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await fs.root.unlink("big", False)
    with pytest.raises(FileNotFoundError):
        await copy
    assert [e.name for e in await list_all(fs.root)] == []
    assert await list_all(await upper.root.walk(WORK_DIR)) == []
    assert await snapshot(lower.root) == before


class GatedLower(Waiting):
    """A lower root whose first walk waits until the test opens the gate."""

    def __init__(self, inner: Node, gate: asyncio.Event) -> None:
        super().__init__(inner)
        self.gate, self.armed = gate, True

    async def walk(self, name: str) -> Node:
        if self.armed:
            self.armed = False
            await self.gate.wait()
        return await super().walk(name)


@ASYNC
async def test_a_lookup_overtaken_by_an_unlink_does_not_bring_the_file_back() -> None:
    lower = RamBackend()
    lower.add_file("f", b"lower")
    gate = asyncio.Event()
    gated = WaitingBackend(lower)
    gated.root = GatedLower(lower.root, gate)
    fs = OverlayBackend(gated, RamBackend())
    await fs.start()
    slow = asyncio.create_task(fs.root.walk("f"))  # read the upper, now waits for the lower
    await asyncio.sleep(0)
    await fs.root.unlink("f", False)  # its own lookup passes the gate: the whole unlink runs
    gate.set()
    with pytest.raises(FileNotFoundError):
        await slow  # it read the layers while they changed, so it looked again
    with pytest.raises(FileNotFoundError):
        await fs.root.walk("f")
