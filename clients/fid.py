"""A fid on a client connection: one method per fid-level 9P2000.L request."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Final, NamedTuple

from ninep.wire.codec import HEADER, fixed_names, fixed_struct
from ninep.wire.constants import (
    GETATTR_MODE,
    HEADER_SIZE,
    MAXWELEM,
    QTDIR,
    QTSYMLINK,
    XATTR_SIZE_MAX,
)
from ninep.wire.messages import (
    IOHDRSZ,
    READDIRHDRSZ,
    DecodeError,
    Qid,
    Rclunk,
    Rerror,
    Rfsync,
    Rgetattr,
    Rgetlock,
    Rlcreate,
    Rlerror,
    Rlink,
    Rlock,
    Rlopen,
    Rmkdir,
    Rmknod,
    Rread,
    Rreaddir,
    Rreadlink,
    Rremove,
    Rrename,
    Rrenameat,
    Rsetattr,
    Rstatfs,
    Rsymlink,
    Runlinkat,
    Rwalk,
    Rwrite,
    Rxattrcreate,
    Rxattrwalk,
    Tclunk,
    Tfsync,
    Tgetattr,
    Tgetlock,
    Tlcreate,
    Tlink,
    Tlock,
    Tlopen,
    Tmkdir,
    Tmknod,
    Tread,
    Treaddir,
    Treadlink,
    Tremove,
    Trename,
    Trenameat,
    Tsetattr,
    Tstatfs,
    Tsymlink,
    Tunlinkat,
    Twalk,
    Twrite,
    Txattrcreate,
    Txattrwalk,
    decode,
)

from .errors import ProtocolError, lerror
from .wire import GETATTR_ALL, Dirent, parse_dirents

if TYPE_CHECKING:
    from .client import Client

__all__ = ["MAXWELEM", "Fid", "GetattrFields"]

# getattr_soon's frames, from the codec's own layouts: Tgetattr with its header, and
# the Rgetattr body after the header
_TGETATTR: Final = struct.Struct(HEADER.format + fixed_struct(Tgetattr).format[1:])
_RGETATTR: Final = fixed_struct(Rgetattr, skip=HEADER_SIZE)
_RGETATTR_SIZE: Final = _RGETATTR.size


class GetattrFields(NamedTuple):
    """An Rgetattr as getattr_soon gives it: its fields in wire order, the qid's three
    spelled out (a tuple, not the frozen message: the hot path's ~4 us less).

    Rgetattr's layout owns the order; the names are written out for the type checker
    and checked against that layout when this module loads."""

    valid: int
    qid_type: int
    qid_version: int
    qid_path: int
    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_sec: int
    atime_nsec: int
    mtime_sec: int
    mtime_nsec: int
    ctime_sec: int
    ctime_nsec: int
    btime_sec: int
    btime_nsec: int
    gen: int
    data_version: int

    @classmethod
    def of(cls, r: Rgetattr) -> GetattrFields:
        """The fields of an Rgetattr that getattr() returned."""
        values: list[int] = []
        for f in fields(r):
            value = getattr(r, f.name)
            values += [value.type, value.version, value.path] if isinstance(value, Qid) \
                else [value]
        return cls._make(values)


if GetattrFields._fields != fixed_names(Rgetattr):
    raise TypeError(f"GetattrFields {GetattrFields._fields} does not spell Rgetattr's "
                    f"layout {fixed_names(Rgetattr)}")

GetattrDone = Callable[[GetattrFields | OSError], None]
_fields_of: Final = GetattrFields._make

# Each file type of a mode (stat(2)'s S_IFMT bits) with the qid type bits it must come
# with (QTDIR, QTSYMLINK; the two sets of bits do not overlap): one set lookup on the
# getattr path. A mode of no file type has none. Linux takes the inode's type from the
# mode and v9fs parts of it from the qid: a front server passing on a contradiction
# would hand its clients both.
_S_IFMT: Final = stat.S_IFMT(0o777777)  # the type bits of a mode
_QT_KIND: Final = QTDIR | QTSYMLINK
if (_S_IFMT, _QT_KIND) != (0o170000, 0x82):
    raise TypeError("_rgetattr_of spells S_IFMT and QTDIR | QTSYMLINK as 0o170000, 0x82")
_MODE_WITH_QID: Final = frozenset({stat.S_IFDIR | QTDIR, stat.S_IFLNK | QTSYMLINK, stat.S_IFREG,
                                   stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK})
# Linux's PATH_MAX, the terminating NUL included: no symlink target is longer
_PATH_MAX: Final = 4096


def _contradiction(valid: int, qid_type: int, mode: int) -> OSError | None:
    """EIO for an Rgetattr whose qid type and mode disagree on the file's type; a mode
    its ``valid`` mask does not vouch for is not looked at (9P2000.L leaves it
    undefined: a server may send 0)."""
    if not valid & GETATTR_MODE or (mode & _S_IFMT) | (qid_type & _QT_KIND) in _MODE_WITH_QID:
        return None
    return OSError(errno.EIO, f"bad Rgetattr: mode {mode:o} with qid type {qid_type:#x}")


def _rgetattr_of(frame: bytes) -> GetattrFields | OSError:
    """A Tgetattr's reply frame as its fields, or the OSError it stands for: an
    Rlerror's errno, EIO for an Rerror or a mode its qid contradicts, a ProtocolError
    for anything else."""
    if frame[4] == Rgetattr.type and len(frame) == _RGETATTR_SIZE:
        values = _RGETATTR.unpack_from(frame)
        # mode & S_IFMT | qid type & (QTDIR | QTSYMLINK), the constants spelled out: a
        # global's load each costs as much as the arithmetic
        if (values[4] & 0o170000) | (values[1] & 0x82) in _MODE_WITH_QID:
            return _fields_of(values)
        return _contradiction(values[0], values[1], values[4]) or _fields_of(values)
    try:
        _, reply = decode(frame)
    except DecodeError as exc:
        return ProtocolError(f"bad Rgetattr: {exc}")
    if isinstance(reply, Rlerror):
        return lerror(reply.ecode)
    if isinstance(reply, Rerror):
        return OSError(errno.EIO, reply.ename)
    return ProtocolError(f"Tgetattr was answered by {type(reply).__name__}")


def _bad_name(name: str) -> bool:
    """Not a file name: empty, or holding "/" or NUL. Passed on, "a/b" or "../x" from a
    listing would be a path to whoever joins it to the directory's (a front server's
    clients, a recursive copy's local side); Linux's getdents refuses them with EIO."""
    return not name or "/" in name or "\0" in name


def _too_many_qids(reply: Rwalk, names: tuple[str, ...]) -> OSError:
    return OSError(errno.EIO, f"bad Rwalk: {len(reply.qids)} qids for {len(names)} names")


class Fid:
    """A fid number bound on the server, with the request methods that use it.

    Methods raise OSError(errno, strerror) for Rlerror; the path-based API adds
    the path. ``clunk`` (or ``async with``) releases the fid.
    """

    __slots__ = ("_clunked", "client", "fid", "iounit", "opened", "qid")

    def __init__(self, client: Client, fid: int, qid: Qid) -> None:
        self.client = client
        self.fid = fid
        self.qid = qid
        self.iounit = 0
        self.opened = False
        self._clunked = False

    def __repr__(self) -> str:
        return f"<Fid {self.fid} qid={self.qid}>"

    async def __aenter__(self) -> Fid:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.clunk()

    @property
    def io_size(self) -> int:
        """Most bytes one Tread/Twrite may carry: iounit, or msize - IOHDRSZ when 0."""
        limit = self.client.msize - IOHDRSZ
        return min(self.iounit, limit) if self.iounit else limit

    # --- fid lifetime ---------------------------------------------------

    async def walk(self, names: tuple[str, ...] | list[str]) -> Fid:
        """Twalk to a new fid (zero names clones); longer walks are split by 16."""
        names = tuple(names)
        first, rest = names[:MAXWELEM], names[MAXWELEM:]
        number, reply = await self.client.call_with_newfid(
            lambda newfid: Twalk(self.fid, newfid, first),
            bound=lambda r: isinstance(r, Rwalk) and len(r.qids) >= len(first))
        assert isinstance(reply, Rwalk)
        if len(reply.qids) > len(first):
            self.client.spawn_clunk(number)  # whatever the server thinks it bound
            raise _too_many_qids(reply, first)
        if len(reply.qids) != len(first):
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        fid = Fid(self.client, number, reply.qids[-1] if reply.qids else self.qid)
        try:
            while rest:
                chunk, rest = rest[:MAXWELEM], rest[MAXWELEM:]
                # newfid == fid moves the fid itself; a failed walk leaves it put.
                step = await self.client.call(Twalk(number, number, chunk), Rwalk)
                if len(step.qids) > len(chunk):
                    raise _too_many_qids(step, chunk)
                if len(step.qids) != len(chunk):
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
                fid.qid = step.qids[-1]
        except BaseException:
            fid.release()
            raise
        return fid

    async def clone(self) -> Fid:
        """A new fid on the same file (Twalk of zero names)."""
        return await self.walk(())

    async def clunk(self) -> None:
        """Tclunk; the fid is forgotten even if the server reports an error."""
        if self._clunked:
            return
        self._clunked = True
        await asyncio.shield(self.client.spawn(self._send_clunk()))  # never leave a fid half-clunked on cancellation

    async def _send_clunk(self) -> None:
        try:
            await self.client.call(Tclunk(self.fid), Rclunk)
        finally:
            self.client.give_fid(self.fid)

    def release(self) -> None:
        """Clunk in the background (for cleanup paths that cannot await)."""
        if not self._clunked:
            self._clunked = True
            self.client.spawn_clunk(self.fid)

    async def remove(self) -> None:
        """Tremove: remove the file and forget the fid, even on failure."""
        self._clunked = True
        try:
            await self.client.call(Tremove(self.fid), Rremove)
        finally:
            self.client.give_fid(self.fid)

    # --- metadata -------------------------------------------------------

    async def getattr(self, request_mask: int = GETATTR_ALL) -> Rgetattr:
        """Tgetattr; EIO for a reply whose mode and qid disagree on the file's type."""
        reply = await self.client.call(Tgetattr(self.fid, request_mask), Rgetattr)
        contradiction = _contradiction(reply.valid, reply.qid.type, reply.mode)
        if contradiction is not None:
            raise contradiction
        return reply

    def getattr_soon(self, done: GetattrDone, request_mask: int = GETATTR_ALL) -> bool:
        """Tgetattr answered by a callback (Client.rpc_soon): ``done`` gets the reply's
        fields, or the OSError that getattr() would raise. False, with nothing sent,
        where getattr() would have to wait (then await that instead)."""
        number, client = self.fid, self.client

        def reply(answer: bytes | OSError) -> None:
            if isinstance(answer, OSError):
                done(answer)
                return
            fields = _rgetattr_of(answer)
            if isinstance(fields, ProtocolError):
                client.break_off(fields)  # as rpc() would for this reply
            done(fields)

        return self.client.rpc_soon(
            lambda tag: _TGETATTR.pack(_TGETATTR.size, Tgetattr.type, tag, number, request_mask),
            reply)

    async def setattr(self, valid: int, *, mode: int = 0, uid: int = 0, gid: int = 0,
                      size: int = 0, atime_ns: int = 0, mtime_ns: int = 0) -> None:
        """Tsetattr with the given valid bits (SETATTR_*)."""
        a_sec, a_nsec = divmod(atime_ns, 1_000_000_000)
        m_sec, m_nsec = divmod(mtime_ns, 1_000_000_000)
        await self.client.call(Tsetattr(self.fid, valid, mode, uid, gid, size,
                                        a_sec, a_nsec, m_sec, m_nsec), Rsetattr)

    async def statfs(self) -> Rstatfs:
        """Tstatfs."""
        return await self.client.call(Tstatfs(self.fid), Rstatfs)

    async def readlink(self) -> str:
        """Treadlink; EIO for a target no symlink can have (empty, NUL, past PATH_MAX)."""
        target = (await self.client.call(Treadlink(self.fid), Rreadlink)).target
        if not target or "\0" in target or \
                len(target.encode("utf-8", "surrogateescape")) >= _PATH_MAX:
            raise OSError(errno.EIO, f"bad Rreadlink: a target of {len(target)} characters "
                          "that no symlink can have")
        return target

    # --- opening and I/O ------------------------------------------------

    async def lopen(self, flags: int) -> Rlopen:
        """Tlopen with P9 flags; the fid becomes an open file."""
        reply = await self.client.call(Tlopen(self.fid, flags), Rlopen)
        self._opened(reply.qid, reply.iounit)
        return reply

    async def lcreate(self, name: str, flags: int, mode: int, gid: int) -> Rlcreate:
        """Tlcreate in this directory fid; the fid becomes the new open file."""
        reply = await self.client.call(Tlcreate(self.fid, name, flags, mode, gid), Rlcreate)
        self._opened(reply.qid, reply.iounit)
        return reply

    def _opened(self, qid: Qid, iounit: int) -> None:
        self.qid = qid
        self.iounit = iounit
        self.opened = True

    async def read(self, offset: int, count: int) -> bytes:
        """One Tread; ``count`` is capped at io_size. EIO for an Rread of more bytes than
        asked for (as Linux's "bogus RREAD count"): they cannot be the file's."""
        count = min(count, self.io_size)
        data = (await self.client.call(Tread(self.fid, offset, count), Rread)).data
        if len(data) > count:
            raise OSError(errno.EIO, f"bad Rread: {len(data)} bytes for a Tread of {count}")
        return bytes(data)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        """One Twrite of at most io_size bytes; returns the count written. EIO for a
        count larger than sent: believed, a caller would skip bytes never written."""
        if len(data) > self.io_size:
            raise ValueError(f"{len(data)} bytes exceed the io size {self.io_size}")
        count = (await self.client.call(Twrite(self.fid, offset, data), Rwrite)).count
        if count > len(data):
            raise OSError(errno.EIO, f"bad Rwrite: {count} bytes written of {len(data)} sent")
        return count

    async def readdir(self, offset: int = 0, count: int = 0) -> list[Dirent]:
        """One Treaddir from cookie ``offset``; count 0 means msize - READDIRHDRSZ.

        EIO for a reply that no directory can give: longer than ``count``, an entry cut
        short, a name that is no file name (empty, "/" or NUL in it), or a last cookie
        equal to ``offset`` (the next Treaddir would list the same again, for ever)."""
        count = count or self.client.msize - READDIRHDRSZ
        reply = await self.client.call(Treaddir(self.fid, offset, count), Rreaddir)
        if len(reply.data) > count:
            raise OSError(errno.EIO, f"bad Rreaddir: {len(reply.data)} bytes for {count}")
        try:
            dirents = parse_dirents(reply.data)
        except ValueError as exc:
            raise OSError(errno.EIO, f"bad Rreaddir: {exc}") from None
        for dirent in dirents:
            if _bad_name(dirent.name):
                raise OSError(errno.EIO, f"bad Rreaddir: entry name {dirent.name!r}")
        if dirents and dirents[-1].offset == offset:
            raise OSError(errno.EIO, f"bad Rreaddir: the listing does not advance from "
                          f"cookie {offset}")
        return dirents

    async def fsync(self, datasync: bool = False) -> None:
        """Tfsync."""
        await self.client.call(Tfsync(self.fid, int(datasync)), Rfsync)

    # --- directory operations (this fid is the directory) ---------------

    async def mkdir(self, name: str, mode: int, gid: int) -> Qid:
        """Tmkdir in this directory."""
        return (await self.client.call(Tmkdir(self.fid, name, mode, gid), Rmkdir)).qid

    async def symlink(self, name: str, target: str, gid: int) -> Qid:
        """Tsymlink ``name`` -> ``target`` in this directory."""
        return (await self.client.call(Tsymlink(self.fid, name, target, gid), Rsymlink)).qid

    async def mknod(self, name: str, mode: int, major: int, minor: int, gid: int) -> Qid:
        """Tmknod in this directory."""
        msg = Tmknod(self.fid, name, mode, major, minor, gid)
        return (await self.client.call(msg, Rmknod)).qid

    async def link(self, target: Fid, name: str) -> None:
        """Tlink: a new name in this directory for the file of ``target``."""
        await self.client.call(Tlink(self.fid, target.fid, name), Rlink)

    async def renameat(self, oldname: str, newdir: Fid, newname: str) -> None:
        """Trenameat from this directory to ``newdir``."""
        await self.client.call(Trenameat(self.fid, oldname, newdir.fid, newname), Rrenameat)

    async def rename(self, newdir: Fid, name: str) -> None:
        """Trename this fid's file into ``newdir`` as ``name`` (the legacy form)."""
        await self.client.call(Trename(self.fid, newdir.fid, name), Rrename)

    async def unlinkat(self, name: str, flags: int = 0) -> None:
        """Tunlinkat (flags AT_REMOVEDIR for a directory)."""
        await self.client.call(Tunlinkat(self.fid, name, flags), Runlinkat)

    # --- xattrs and locks -----------------------------------------------

    async def xattrwalk(self, name: str) -> tuple[Fid, int]:
        """Txattrwalk: a new fid to read attribute ``name`` ("" lists), and its size."""
        number, reply = await self.client.call_with_newfid(
            lambda newfid: Txattrwalk(self.fid, newfid, name),
            bound=lambda r: isinstance(r, Rxattrwalk))
        assert isinstance(reply, Rxattrwalk)
        fid = Fid(self.client, number, self.qid)
        fid.opened = True
        if reply.size > XATTR_SIZE_MAX:  # Linux's bound on a value and on a list of names
            fid.release()
            raise OSError(errno.EIO, f"bad Rxattrwalk: size {reply.size} is past "
                          f"XATTR_SIZE_MAX ({XATTR_SIZE_MAX})")
        return fid, reply.size

    async def xattrcreate(self, name: str, size: int, flags: int = 0) -> None:
        """Txattrcreate: this fid now takes ``size`` bytes of writes; set at clunk."""
        await self.client.call(Txattrcreate(self.fid, name, size, flags), Rxattrcreate)
        self.opened = True

    async def lock(self, lock_type: int, flags: int, start: int, length: int,
                   proc_id: int, client_id: str) -> int:
        """Tlock; returns the Rlock status (LOCK_SUCCESS, LOCK_BLOCKED, ...)."""
        msg = Tlock(self.fid, lock_type, flags, start, length, proc_id, client_id)
        return (await self.client.call(msg, Rlock)).status

    async def getlock(self, lock_type: int, start: int, length: int, proc_id: int,
                      client_id: str) -> Rgetlock:
        """Tgetlock."""
        msg = Tgetlock(self.fid, lock_type, start, length, proc_id, client_id)
        return await self.client.call(msg, Rgetlock)
