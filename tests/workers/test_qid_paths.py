"""qid.path is a function of the configuration, not of what a process saw first."""

from __future__ import annotations

from ninep.backends.ram import RamBackend
from ninep.vfs.namespace import Mount


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
