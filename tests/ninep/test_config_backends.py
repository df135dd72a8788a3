"""The synthetic kinds a config can mount (symlink, random, clock, inline, null, zero) and
how a synthetic directory lists them: with their real DT type."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from ninep.backends.registry import open_backend
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import DT_DIR, DT_LNK, DT_REG, Cred

ROOT = Cred(0, 0)


async def tree() -> Namespace:
    mounts = [("/dev/null", await open_backend("null"), False),
              ("/dev/random", await open_backend("random"), False),
              ("/clock", await open_backend("clock"), False),
              ("/link", await open_backend("symlink", "/dev/null"), False),
              ("/motd", await open_backend("inline", "hi"), False),
              ("/data", await open_backend("ram"), False)]
    return await Namespace.build(mounts, name="t")


async def read(ns: Namespace, *names: str, size: int = 4096) -> bytes:
    loc = ns.root()
    for name in names:
        loc = await ns.walk(loc, name, ROOT)
    handle = await ns.open(loc, 0, ROOT)
    return bytes(await handle.read(0, size))


def test_a_synthetic_directory_lists_mounted_files_with_their_types() -> None:
    async def scenario() -> dict[str, int]:
        ns = await tree()
        entries = await ns.readdir(ns.root(), 0, 100)
        return {e.name: e.dtype for e in entries}
    types = asyncio.run(scenario())
    assert types == {".": DT_DIR, "..": DT_DIR, "dev": DT_DIR, "clock": DT_REG,
                     "link": DT_LNK, "motd": DT_REG, "data": DT_DIR}


def test_a_file_mounted_over_a_directory_lists_as_a_file(tmp_path: Path) -> None:
    async def scenario() -> dict[str, int]:
        ns = await Namespace.build([("/", await open_backend("ram"), False),
                                    ("/motd", await open_backend("inline", "x"), False),
                                    ("/sub", await open_backend("ram"), False)], name="t")
        return {e.name: e.dtype for e in await ns.readdir(ns.root(), 2, 100)}
    assert asyncio.run(scenario()) == {"motd": DT_REG, "sub": DT_DIR}


def test_random_clock_and_symlink() -> None:
    async def scenario() -> None:
        ns = await tree()
        one, two = await read(ns, "dev", "random"), await read(ns, "dev", "random")
        assert len(one) == 4096 and one != two
        before = time.time()
        text = (await read(ns, "clock")).decode()
        found = re.fullmatch(r"(\d+)\.(\d{9}) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)\n", text)
        assert found and abs(int(found[1]) - before) < 5
        clock = await ns.walk(ns.root(), "clock", ROOT)
        assert (await ns.getattr(clock)).size == len(text)
        link = await ns.walk(ns.root(), "link", ROOT)
        assert await ns.readlink(link, ROOT) == "/dev/null"
        assert await read(ns, "motd") == b"hi\n"
    asyncio.run(scenario())
