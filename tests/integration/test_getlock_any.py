"""Tgetlock with type UNLCK, which is what Linux's v9fs asks (v9fs_file_getlock sends
P9_LOCK_TYPE_UNLCK whatever F_GETLK's caller wanted): every mount answers it alike,
with any lock another owner holds on the range, a read lock included."""

from __future__ import annotations

from pathlib import Path

import pytest

from ninep.clients import LOCK_RDLCK, LOCK_UNLCK, LOCK_WRLCK, Client
from tests.hostile.serverproc import serve_process


@pytest.mark.asyncio
@pytest.mark.parametrize("mount", ["ram", "host"])
async def test_getlock_unlck_reports_a_read_lock_of_another_owner(
        tmp_path: Path, mount: str) -> None:
    export = tmp_path / "export"
    export.mkdir()
    args = ["--mount", "/ram=ram", "--mount", f"/host=passthrough:{export}"]
    with serve_process(args, tmp_path) as server:
        url = f"tcp://127.0.0.1:{server.port}"
        one, two = await Client.connect(url), await Client.connect(url)
        try:
            tree1, tree2 = await one.attach(uname="root"), await two.attach(uname="root")
            await tree1.write_bytes(f"{mount}/f", b"x" * 100)
            a = await tree1.open(f"{mount}/f", "r+b")
            b = await tree2.open(f"{mount}/f", "r+b")
            await a.lock(LOCK_RDLCK, 10, 20, proc_id=7)
            held = await b.getlock(LOCK_UNLCK, 0, 0, proc_id=8)
            assert (held.type, held.start, held.length) == (LOCK_RDLCK, 10, 20)
            # a reader's own question still sees no conflict with another reader
            assert (await b.getlock(LOCK_RDLCK, 0, 0, proc_id=8)).type == LOCK_UNLCK
            assert (await b.getlock(LOCK_WRLCK, 0, 0, proc_id=8)).type == LOCK_RDLCK
            # outside the range, and for the holder itself: nothing
            assert (await b.getlock(LOCK_UNLCK, 30, 5, proc_id=8)).type == LOCK_UNLCK
            assert (await a.getlock(LOCK_UNLCK, 0, 0, proc_id=7)).type == LOCK_UNLCK
        finally:
            await one.close()
            await two.close()
