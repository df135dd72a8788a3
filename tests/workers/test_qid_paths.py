"""qid.path is a function of the configuration, not of what a process saw first."""

from __future__ import annotations

from pathlib import Path

from ninep.backends.ram import RamBackend
from ninep.clients import Client
from ninep.vfs.namespace import Mount
from tests.hostile.serverproc import serve_process
from tests.workers.conftest import spread, wait_ready


def test_a_wide_inode_gets_the_same_qid_path_whatever_was_seen_before() -> None:
    # two workers serving one passthrough export on XFS (inode64): the same file must
    # have one qid.path in both, whichever files each worker met first
    wide = [(1 << 50) + 7, (1 << 63) + 12345, (5 << 56) | 99]
    first = Mount("/data", RamBackend(), dev=3)
    second = Mount("/data", RamBackend(), dev=3)
    seen_first = [first.qid_path(ino) for ino in wide]
    seen_second = [second.qid_path(ino) for ino in reversed(wide)][::-1]
    assert seen_first == seen_second
    assert all(path >> 48 == 3 for path in seen_first)
    assert len(set(seen_first)) == len(wide)


def test_narrow_inodes_keep_their_number_under_the_mount_device() -> None:
    mount = Mount("/", RamBackend(), dev=2)
    assert mount.qid_path(1234) == (2 << 48) | 1234


async def test_an_import_gives_a_file_the_same_qid_path_in_every_worker(
        tmp_path: Path) -> None:
    # a 9p import is served by every worker, each with its own connection to the back
    # server: a file's qid.path must not depend on which files a worker listed first
    back_dir = tmp_path / "back"
    back_dir.mkdir()
    names = [f"f{i}" for i in range(12)]
    with serve_process(["--mount", "/=ram"], back_dir) as back:
        url = f"tcp://127.0.0.1:{back.port}"
        client = await Client.connect(url)
        try:
            tree = await client.attach(uname="root")
            await tree.mkdir("d")
            for name in names:
                await tree.write_bytes(f"d/{name}", name.encode())
        finally:
            await client.close()
        with serve_process(["--workers", "2", "--mount", f"/=9p:{url},uname=root"],
                           tmp_path, log_level="debug") as front:
            wait_ready(front)
            by_worker = await spread(front, want=2, tries=120)
            try:
                one, two = (tree for _, tree in by_worker.values())
                seen_one = {n: (await one.stat(f"d/{n}")).qid.path for n in names}
                seen_two = {n: (await two.stat(f"d/{n}")).qid.path for n in reversed(names)}
                assert seen_one == seen_two
                assert len(set(seen_one.values())) == len(names)
            finally:
                for client, _ in by_worker.values():
                    await client.close()
