"""What GNU tar lists, a client of ours lists through a real ``ninep serve --mount /t=tar:...``:
same types, modes, owners, sizes, times and link targets; contents and xattrs byte-exact."""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_tar_support import GNU_TAR, gnu_tar, make_tree

from ninep.clients.sync import SyncClient
from tests.conftest import free_port, wait_for_port


@dataclass(frozen=True)
class Listed:
    """One line of ``tar --list -v --numeric-owner --full-time``."""

    mode: str
    uid: int
    gid: int
    size: str  # bytes, or "major,minor" for a device
    mtime_ns: int
    name: str
    link: str  # symlink target or hard link target, else ""
    hard: bool


def _parse_time(date: str, clock: str) -> int:
    whole, _, frac = clock.partition(".")
    moment = datetime.datetime.fromisoformat(f"{date}T{whole}+00:00")
    return int(moment.timestamp()) * 10**9 + int((frac + "000000000")[:9])


def tar_listing(archive: Path) -> list[Listed]:
    assert GNU_TAR is not None
    out = subprocess.run([GNU_TAR, "--list", "-v", "--numeric-owner", "--full-time",
                          "--quoting-style=literal", "-f", str(archive)],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "TZ": "UTC", "LC_ALL": "C"}).stdout
    listed = []
    for line in out.splitlines():
        mode, owner, size, date, clock, rest = line.split(None, 5)
        uid, gid = owner.split("/")
        name, link, hard = rest, "", False
        if mode[0] == "l":
            name, link = rest.split(" -> ", 1)
        elif mode[0] == "h":
            name, link = rest.split(" link to ", 1)
            hard = True
        listed.append(Listed(mode, int(uid), int(gid), size, _parse_time(date, clock),
                             name, link, hard))
    return listed


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """A tree, its GNU tar archive (pax, xattrs, sparse), and a server serving it at /t."""
    if GNU_TAR is None:
        pytest.skip("GNU tar is not installed")
    src = make_tree(tmp_path / "src")
    archive = tmp_path / "tree.tar.xz"
    gnu_tar("--format=pax", "--xattrs", "--xattrs-include=*", "--sparse", "-cJf", archive,
            "-C", src, ".")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--listen",
                             f"tcp://127.0.0.1:{port}", "--mount", "/=ram",
                             "--mount", f"/t=tar:{archive}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc, timeout=30)
        yield src, archive, f"tcp://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_client_listing_matches_gnu_tar_listing(served: tuple[Path, Path, str]) -> None:
    src, archive, url = served
    listing = tar_listing(archive)
    assert len(listing) > 20
    by_name = {entry.name: entry for entry in listing}
    with SyncClient(url, uname="root", n_uname=0) as fs:
        for entry in listing:
            path = "t/" + entry.name.removeprefix("./").rstrip("/")
            st = fs.stat(path.rstrip("/"))
            kind = "-" if entry.hard else None
            assert stat.filemode(st.st_mode)[1:] == entry.mode[1:], path
            assert stat.filemode(st.st_mode)[0] == (kind or entry.mode[0]), path
            assert (st.st_uid, st.st_gid) == (entry.uid, entry.gid), path
            assert st.st_mtime_ns == entry.mtime_ns, path
            if entry.mode[0] in "cb":
                assert f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}" == entry.size, path
            elif entry.hard:
                target = by_name[entry.link]
                assert str(st.st_size) == target.size, path
                assert st.st_ino == fs.stat("t/" + entry.link.removeprefix("./")).st_ino, path
            elif entry.mode[0] == "-":
                assert str(st.st_size) == entry.size, path
            if entry.mode[0] == "l":
                assert fs.readlink(path) == entry.link, path
            host = src / path.removeprefix("t/").removeprefix(".")
            if entry.mode[0] == "-" or entry.hard:
                assert fs.read_bytes(path) == host.read_bytes(), path
            if entry.mode[0] in "-d":
                assert {n: fs.getxattr(path, n) for n in fs.listxattr(path)} == \
                    {n: os.getxattr(host, n) for n in os.listxattr(host)}, path
        listed_dirs = {e.name.removeprefix("./").rstrip("/") for e in listing if e.mode[0] == "d"}
        for directory in listed_dirs:
            names = sorted(fs.listdir(f"t/{directory}".rstrip("/")))
            expected = sorted(e.name.removeprefix("./").rstrip("/").rsplit("/", 1)[-1]
                              for e in listing if e.name != "./" and
                              os.path.dirname(e.name.removeprefix("./").rstrip("/")) == directory)
            assert names == expected, directory


def test_serve_refuses_a_damaged_archive_naming_file_and_offset(tmp_path: Path) -> None:
    archive = tmp_path / "damaged.tar"
    src = make_tree(tmp_path / "src", specials=False, sparse=False, xattrs=False)
    gnu_tar("--format=gnu", "-cf", archive, "-C", src, ".")
    data = bytearray(archive.read_bytes())
    data[1024 + 3] ^= 0x40  # the second header's name: its checksum no longer matches
    archive.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "ninep", "serve", "--listen",
                             f"tcp://127.0.0.1:{free_port()}", "--mount", f"/t=tar:{archive}"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert str(archive) in result.stderr and "Traceback" not in result.stderr
    assert "bad header checksum at byte offset" in result.stderr


def test_archive_owners_and_modes_are_enforced(served: tuple[Path, Path, str]) -> None:
    """keeps_ownership: the namespace checks the header's uid/gid/mode for the attaching uid."""
    _, _, url = served
    with SyncClient(url, uname="someone", n_uname=1000) as fs:
        assert fs.read_bytes("t/hello.txt") == b"hello, world\n"
        if os.geteuid() == 0:  # make_tree gives "private" (0600) to uid 1234 only as root
            with pytest.raises(PermissionError):
                fs.read_bytes("t/private")
    with SyncClient(url, uname="root", n_uname=0) as fs:  # past the permission checks
        for change in (lambda: fs.write_bytes("t/new-file", b"x"), lambda: fs.mkdir("t/d"),
                       lambda: fs.chmod("t/hello.txt", 0o600), lambda: fs.remove("t/sym"),
                       lambda: fs.setxattr("t/hello.txt", "user.x", b"1")):
            with pytest.raises(OSError) as exc:
                change()
            assert exc.value.errno == 30  # EROFS


def test_times_before_1970_reach_the_client(tmp_path: Path) -> None:
    import io
    import tarfile

    from ninep.backends.tar import TarBackend
    from ninep.config.defaults import default_policy
    from tests.conftest import start_server

    archive = tmp_path / "old.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("moon-landing")
        info.size, info.mtime = 1, -14_182_940  # 1969-07-20 20:17:40 UTC
        tf.addfile(info, io.BytesIO(b"x"))

    async def policy():  # type: ignore[no-untyped-def]
        return await default_policy([("/", TarBackend.open(str(archive)), True)])

    running = start_server(policy)
    try:
        with SyncClient(running.tcp_url, uname="root", n_uname=0) as fs:
            assert fs.stat("moon-landing").st_mtime_ns == -14_182_940 * 10**9
    finally:
        running.stop()
        shutil.rmtree(os.path.dirname(running.unix_path), ignore_errors=True)
