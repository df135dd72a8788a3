"""OpenFlags, the decoded open flags of the backend contract, and the namespace's one decoding."""

from __future__ import annotations

from typing import Any

import pytest

from ninep.backends.ram import RamBackend, RamDir, RamFile
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Cred, Handle, Node, OpenFlags
from ninep.wire.constants import (
    O_APPEND,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOCTTY,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
)

ROOT = Cred(0, 0)


@pytest.mark.parametrize(("accmode", "reads", "writes", "read_only_access"), [
    (O_RDONLY, True, False, True),
    (O_WRONLY, False, True, False),
    (O_RDWR, True, True, False),
    (3, False, False, False),  # Linux asks read and write permission for it: no read-only open
])
def test_the_access_mode_decodes_as_linux_reads_it(accmode: int, reads: bool, writes: bool,
                                                  read_only_access: bool) -> None:
    flags = OpenFlags(accmode | O_APPEND)
    assert (flags.reads, flags.writes, flags.read_only_access) == (reads, writes,
                                                                   read_only_access)
    assert flags.modifies == writes


def test_each_flag_has_its_property_and_the_bits_stay_exact() -> None:
    bits = O_RDONLY | O_TRUNC | O_APPEND | O_DIRECTORY | O_CREAT | O_EXCL | 0o4000000
    flags = OpenFlags(bits)
    assert isinstance(flags, int) and flags == bits  # passthrough and 9p hand them on
    assert flags.truncates and flags.appends and flags.directory
    assert flags.creates and flags.excl
    assert flags.modifies and flags.read_only_access and not flags.writes  # O_TRUNC alone
    plain = OpenFlags(O_RDONLY)
    assert not (plain.truncates or plain.appends or plain.directory or plain.creates
                or plain.excl or plain.modifies)


def test_the_bits_sent_on_for_an_open_and_for_a_create() -> None:
    flags = OpenFlags(O_RDWR | O_CREAT | O_EXCL | O_NOCTTY | O_APPEND)
    assert flags.for_open() == O_RDWR | O_APPEND
    assert isinstance(flags.for_open(), OpenFlags)
    assert OpenFlags(O_WRONLY | O_NOCTTY).for_exclusive_create() == O_WRONLY | O_CREAT | O_EXCL
    assert isinstance(flags.for_exclusive_create(), OpenFlags)


def test_the_named_opens_a_backend_makes_itself() -> None:
    assert (OpenFlags.READ, OpenFlags.WRITE, OpenFlags.READ_WRITE) == (O_RDONLY, O_WRONLY,
                                                                        O_RDWR)
    assert all(isinstance(f, OpenFlags)
               for f in (OpenFlags.READ, OpenFlags.WRITE, OpenFlags.READ_WRITE))


@pytest.mark.asyncio
async def test_the_namespace_hands_backends_decoded_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real_open, real_create = RamFile.open, RamDir.create

    async def record_open(self: RamFile, flags: OpenFlags) -> Handle:
        seen.append(flags)
        return await real_open(self, flags)

    async def record_create(self: RamDir, name: str, flags: OpenFlags, mode: int, uid: int,
                            gid: int) -> tuple[Node, Handle]:
        seen.append(flags)
        return await real_create(self, name, flags, mode, uid, gid)

    monkeypatch.setattr(RamFile, "open", record_open)
    monkeypatch.setattr(RamDir, "create", record_create)
    ns = await Namespace.build([("/", RamBackend(), False)])
    loc, handle = await ns.create(ns.root(), "f", O_RDWR | O_APPEND, 0o644, 0, ROOT)
    await handle.close()
    await (await ns.open(loc, O_WRONLY | O_TRUNC, ROOT)).close()
    assert [type(f) for f in seen] == [OpenFlags, OpenFlags]
    assert seen == [O_RDWR | O_APPEND, O_WRONLY | O_TRUNC]
    assert seen[0].appends and seen[1].truncates
