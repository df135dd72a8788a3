"""backends/passthrough/ofd_locks.py: client ranges as the host's open-file-description locks."""

from __future__ import annotations

import os
from pathlib import Path

from ninep.backends.passthrough.ofd_locks import OfdLocks
from ninep.vfs.locks import OFFSET_MAX, WRLCK


def _locks(path: Path) -> tuple[OfdLocks, int]:
    fd = os.open(path, os.O_RDWR)
    return OfdLocks(lambda: (fd, True, True)), fd


def test_a_range_through_the_largest_offset_is_held_to_the_end_of_the_file(
        tmp_path: Path) -> None:
    # Tlock(start 0, length 2**63) passes the handler's checks (its end is 2**63 - 1),
    # which has no l_len of its own: it is the host's lock to the end of the file
    path = tmp_path / "f"
    path.write_bytes(b"x")
    locks, fd = _locks(path)
    other, other_fd = _locks(path)
    try:
        assert locks.set(("a", b"", 1), WRLCK, 0, 2**63 - 1)
        held = other.test(("b", b"", 2), WRLCK, 2**62, OFFSET_MAX)
        assert held is not None and (held.start, held.end) == (0, OFFSET_MAX)
        assert locks.set(("a", b"", 1), WRLCK, 5, OFFSET_MAX - 1)
    finally:
        locks.drop(("a", b"", 1))
        os.close(fd)
        os.close(other_fd)
