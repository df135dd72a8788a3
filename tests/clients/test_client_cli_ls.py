"""``ninep ls -l`` of a large directory: right lines, owners by name, nothing on stderr."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import subprocess
import sys
from pathlib import Path

from ninep.clients import Client
from tests.clients.targets import Target

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = 2000  # enough that the old client queued thousands of requests at exit


def _ls(target: Target, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ninep.clients.cli", "ls", *target.cli_args(), *argv],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


async def _populate(target: Target, directory: str) -> None:
    async with await Client.connect(target.url) as client:
        root = await client.attach(target.uname, "", target.n_uname)
        await root.mkdir(directory, 0o755)

        async def make(n: int) -> None:
            await root.write_bytes(f"{directory}/f{n:05d}", b"x" * (n % 7))
        for start in range(0, ENTRIES, 200):
            await asyncio.gather(*(make(n) for n in range(start, min(start + 200, ENTRIES))))
        await root.symlink("f00000", f"{directory}/zlink")


def test_ls_long_of_a_large_directory(ninep_target: Target) -> None:
    asyncio.run(_populate(ninep_target, "big"))
    done = _ls(ninep_target, "-l", "big")
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == ENTRIES + 1
    user, group = pwd.getpwuid(0).pw_name, grp.getgrgid(0).gr_name  # the attach is uid 0
    for n, line in enumerate(lines[:ENTRIES]):
        fields = line.split()
        assert fields[0] == "-rw-rw-rw-" and fields[2:5] == [user, group, str(n % 7)], line
        assert fields[-1] == f"f{n:05d}"
    assert lines[-1].startswith("lrwxrwxrwx") and lines[-1].endswith(" zlink -> f00000")
    numeric = _ls(ninep_target, "-l", "-n", "big/f00003").stdout.split()
    assert numeric[2:5] == ["0", "0", "3"] and numeric[-1] == "big/f00003"


async def test_an_entry_removed_after_the_readdir_is_left_out(ninep_target: Target) -> None:
    from ninep.clients.cli import _ls_entry

    async with await Client.connect(ninep_target.url) as client:
        root = await client.attach(ninep_target.uname, "", ninep_target.n_uname)
        await root.write_bytes("soon-gone", b"")
        [entry] = [e for e in await root.scandir() if e.name == "soon-gone"]
        assert (await _ls_entry(root, entry, numeric=True) or "").endswith(" soon-gone")
        await root.remove("soon-gone")
        assert await _ls_entry(root, entry, numeric=True) is None
