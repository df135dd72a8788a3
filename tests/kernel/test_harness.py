"""Fast checks of the kernel harness itself (no QEMU): the matrix, markers, cpio."""

from __future__ import annotations

import io
import os
import shutil
import stat

import pytest

from . import guest
from .guest import CpioWriter
from .harness import ALL_SCENARIOS, BOOTS, HEAVY, parse_console

#: Every named check the issue asks for (tests/kernel/scenarios/*.sh).
REQUIRED = {
    "file_size_0", "file_size_1", "file_size_4095", "file_size_4096", "file_size_4097",
    "file_size_5m", "file_size_64m", "append", "truncate", "sparse", "dd_odd_blocks",
    "overwrite_middle", "mkdir_deep", "rm_rf_5000", "ls_10000", "readdir_concurrent",
    "name_255", "name_utf8", "name_special", "name_too_long", "hardlink", "symlinks",
    "rename_over_file", "rename_over_empty_dir", "rename_across_dirs", "rename_into_subtree",
    "open_unlink", "chmod_chown_utimes", "access_uids", "setgid_dir", "flock", "fcntl_locks",
    "df_statfs", "mmap", "fio_verify_seq", "fio_verify_rand", "inode_stable", "erofs", "eacces",
}


def test_every_required_scenario_exists_and_runs_somewhere() -> None:
    assert set(ALL_SCENARIOS) >= REQUIRED
    if not os.environ.get("NINEP_KERNEL_ONLY"):
        run = {s for b in BOOTS for share in b.shares for s in share.scenarios}
        assert run == set(ALL_SCENARIOS)
        heavy_run = {s for b in BOOTS for share in b.shares if share.cache == "none"
                     for s in share.scenarios if s in HEAVY}
        assert heavy_run == HEAVY


def test_the_matrix_is_covered() -> None:
    shares = [s for b in BOOTS for s in b.shares]
    assert {s.cache for s in shares} == {"none", "loose", "mmap"}
    assert {s.msize for s in shares} >= {8192, 1048576}
    assert {s.access for s in shares} == {"user", "client"}
    assert {s.transport for s in shares} == {"tcp", "fd"}
    assert all(b.restart for b in BOOTS if not b.backends)
    assert len({s.name for s in shares}) == len(shares)
    assert {s.base for s in shares} == {"", "ext2", "pt", "tar", "ovl", "imp", "inner"}
    # the federation scenarios need the import's mounts: they run there only
    assert {s.base for s in shares if any(c.startswith("fed_") for c in s.scenarios)} \
        == {"imp", "inner"}


def test_parse_console() -> None:
    lines = ["noise", "@@NINEP-BEGIN a/x", "out 1", "[ 1.0] kernel line",
             "@@NINEP-END a/x rc=0 secs=1.5", "@@NINEP-BEGIN a/y", "FAIL: why",
             "@@NINEP-END a/y rc=1 secs=0.2", "@@NINEP-BEGIN a/z", "partial"]
    results = parse_console(lines)
    assert results["a/x"].passed and results["a/x"].secs == 1.5
    assert results["a/x"].output == "out 1\n[ 1.0] kernel line"
    assert not results["a/y"].passed and "FAIL: why" in results["a/y"].output
    assert not results["a/z"].passed and "no end marker" in results["a/z"].output


def _read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos:pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body)


def test_cpio_writer() -> None:
    out = io.BytesIO()
    writer = CpioWriter(out)
    writer.file("a/b/c.txt", b"hello", 0o640)
    writer.symlink("a/link", "/b/c.txt")
    writer.chardev("dev/console", 5, 1)
    writer.finish()
    data = out.getvalue()
    assert len(data) % 512 == 0
    entries = _read_newc(data)
    assert stat.S_ISDIR(entries["a"][0]) and stat.S_ISDIR(entries["a/b"][0])
    assert entries["a/b/c.txt"] == (stat.S_IFREG | 0o640, b"hello")
    assert entries["a/link"] == (stat.S_IFLNK | 0o777, b"/b/c.txt")
    assert stat.S_ISCHR(entries["dev/console"][0])


def test_a_missing_tool_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without QEMU and without root, the suite fails naming the packages to install."""
    monkeypatch.setattr(shutil, "which",
                        lambda name, path=None: None if "qemu" in name else f"/usr/bin/{name}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(guest, "_is_static_elf", lambda path: True)
    with pytest.raises(guest.GuestError, match=r"qemu-system-x86_64.*qemu-system-x86"):
        guest.ensure_host_tools()
