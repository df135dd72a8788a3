"""One handler per T-message: look up the fid, check its state, call vfs/, return the R-message.

Handlers never touch the transport. Tversion and Tflush live in transport.py,
since they act on the connection itself.
"""

from __future__ import annotations

import errno
import os
import stat

from ninep.server import auth
from ninep.server.session import Fid, Session, XattrWrite, handles, resolve_cred
from ninep.vfs.locks import UNLCK, HostLocks
from ninep.vfs.namespace import Location
from ninep.vfs.node import UTIME_NOW, Handle, SetAttr
from ninep.vfs.policy import AttachRequest
from ninep.wire import messages as m
from ninep.wire.constants import (
    AT_REMOVEDIR,
    LOCK_BLOCKED,
    LOCK_FLAG_BLOCK,
    LOCK_SUCCESS,
    MAXWELEM,
    O_ACCMODE,
    O_DIRECTORY,
    O_RDWR,
    O_WRONLY,
    SETATTR_ATIME,
    SETATTR_ATIME_SET,
    SETATTR_CTIME,
    SETATTR_GID,
    SETATTR_MODE,
    SETATTR_MTIME,
    SETATTR_MTIME_SET,
    SETATTR_SIZE,
    SETATTR_UID,
    XATTR_SIZE_MAX,
)
from ninep.wire.fast import rgetattr_body, rwalk_body
from ninep.wire.qid import Qid, pack_qid

__all__ = ["MAXWELEM", "handle_getattr", "handle_setattr", "read_fid", "walk_fid"]

XATTR_NAME_MAX = 255
_XATTR_FLAGS = 3  # XATTR_CREATE | XATTR_REPLACE
LOFF_MAX = (1 << 63) - 1  # the largest loff_t: offsets and sizes above are negative to Linux
_NO_ID = 0xFFFFFFFF  # (uid_t)-1: "leave unchanged" to chown, never an id to set
# Linux's dev_t as MKDEV packs it (and glibc's mknod refuses a dev that does not fit it)
_MAJOR_LIMIT, _MINOR_LIMIT = 1 << 12, 1 << 20
_UMODE_MASK = 0o177777  # Linux's umode_t: file type and permission bits
_NS = 1_000_000_000


def _open_fid(session: Session, number: int) -> Fid:
    fid = session.fid(number)
    if fid.handle is None:
        raise OSError(errno.EBADF, f"fid {number} is not open")
    return fid


def _unopened_fid(session: Session, number: int) -> Fid:
    fid = session.fid(number)
    if fid.handle is not None or fid.xattr_write is not None:
        raise OSError(errno.EBADF, f"fid {number} is already open")
    return fid


async def _qid(fid: Fid, loc: Location | None = None) -> m.Qid:
    """The qid of ``loc`` (default: the fid's own location) in the fid's namespace."""
    loc = loc or fid.loc
    return fid.ns.qid(loc, await loc.node.getattr())


@handles(m.Tattach)
async def attach(session: Session, msg: m.Tattach) -> m.Message:
    session.check_new_fid(msg.fid)
    afid = session.fids.get(msg.afid) if msg.afid != m.NOFID else None
    key_ids = auth.attach_key_ids(msg, session.auth_proofs, afid.auth if afid else None)
    cred = await resolve_cred(msg.uname, msg.n_uname)
    chosen = await session.select(AttachRequest(session.peer, msg.uname, msg.aname, msg.n_uname,
                                                cred, key_ids))
    fid = Fid(chosen.namespace, chosen.namespace.root(), chosen.cred)
    qid = await _qid(fid)
    session.bind(msg.fid, fid)
    auth.record_attach(session.auth_proofs, session.peer, msg, key_ids)
    return m.Rattach(qid)


@handles(m.Tauth)
async def tauth(session: Session, msg: m.Tauth) -> m.Message:
    # Without a key-based policy, answer "authentication not required" the way
    # diod does (Rlerror ENOENT): clients then attach with afid = NOFID.
    if not session.policy.wants_auth:
        raise OSError(errno.ENOENT, "authentication not required")
    exchange = auth.begin(session.policy.authorized_keys, session.conn_id, msg)
    session.check_new_fid(msg.afid)
    fid = Fid(auth.AFID_NAMESPACE, auth.AFID_NAMESPACE.root(), auth.AFID_CRED)
    fid.auth = exchange
    session.bind(msg.afid, fid)
    return m.Rauth(auth.aqid())


@handles(m.Twalk)
async def walk(session: Session, msg: m.Twalk) -> m.Encoded:
    return await walk_fid(session, msg.fid, msg.newfid, msg.wnames)


async def walk_fid(session: Session, number: int, newfid: int,
                   wnames: tuple[str, ...]) -> m.Encoded:
    """Twalk, for the decoded message and for the transport's raw path alike."""
    fid = session.fid(number)
    if len(wnames) > MAXWELEM:
        raise OSError(errno.EINVAL, f"walk of {len(wnames)} names (max {MAXWELEM})")
    if newfid != number:
        session.check_new_fid(newfid)
    elif not wnames:
        return _rwalk([])  # the fid onto itself: nothing changes (it keeps what it holds)
    elif fid.handle is not None or fid.xattr_write is not None:
        raise OSError(errno.EBUSY, "an open fid cannot walk itself")
    ns, loc, parent, name = fid.ns, fid.loc, fid.parent, fid.name
    qids: list[bytes] = []
    for index, wname in enumerate(wnames):
        try:
            step = await ns.walk(loc, wname, fid.cred)
            mode, ino = await step.node.type_and_ino()
            qids.append(pack_qid(mode, step.mount.qid_path(ino)))
        except OSError:
            if index == 0:
                raise
            return _rwalk(qids)  # partial walk: newfid stays unbound
        parent, name, loc = loc, wname, step
    new = Fid(ns, loc, fid.cred, parent=parent, name=name)
    if newfid == number:
        session.fids[number] = new
    else:
        session.bind(newfid, new)  # checked again: another request may have taken it meanwhile
    return _rwalk(qids)


def _rwalk(qids: list[bytes]) -> m.Encoded:
    return m.Encoded(m.Rwalk.type, rwalk_body(qids))


@handles(m.Tgetattr)
async def handle_getattr(session: Session, msg: m.Tgetattr) -> m.Message | m.Encoded:
    fid = session.fid(msg.fid)
    loc = fid.loc
    a = await fid.ns.getattr(loc)  # owners as the client knows them (the policy's id map)
    return m.Encoded(m.Rgetattr.type, rgetattr_body(loc.mount.qid_path(a.ino), a))


def _setattr_changes(msg: m.Tsetattr) -> SetAttr:
    """The changes of a Tsetattr, its numbers checked as Linux checks them."""
    valid = msg.valid
    if valid & SETATTR_SIZE and msg.size > LOFF_MAX:
        raise OSError(errno.EINVAL, "negative size")  # ftruncate with a negative length
    if (valid & SETATTR_UID and msg.uid == _NO_ID) or (valid & SETATTR_GID and msg.gid == _NO_ID):
        raise OSError(errno.EINVAL, "uid or gid -1")  # chown_common: !uid_valid

    def when(bit: int, set_bit: int, sec: int, nsec: int) -> int | None:
        if not valid & bit:
            return None
        if not valid & set_bit:
            return UTIME_NOW
        if nsec >= _NS:
            raise OSError(errno.EINVAL, "nanoseconds out of range")  # utimensat
        # sec: the client's time64_t, decoded signed; vfs/ clamps it to the backend's range
        return sec * _NS + nsec

    return SetAttr(
        mode=msg.mode & 0o7777 if valid & SETATTR_MODE else None,
        uid=msg.uid if valid & SETATTR_UID else None,
        gid=msg.gid if valid & SETATTR_GID else None,
        size=msg.size if valid & SETATTR_SIZE else None,
        atime_ns=when(SETATTR_ATIME, SETATTR_ATIME_SET, msg.atime_sec, msg.atime_nsec),
        mtime_ns=when(SETATTR_MTIME, SETATTR_MTIME_SET, msg.mtime_sec, msg.mtime_nsec),
        ctime=bool(valid & SETATTR_CTIME),
    )


@handles(m.Tsetattr)
async def handle_setattr(session: Session, msg: m.Tsetattr) -> m.Message:
    fid = session.fid(msg.fid)
    writable = fid.handle is not None and fid.flags & O_ACCMODE in (O_WRONLY, O_RDWR)
    await fid.ns.setattr(fid.loc, _setattr_changes(msg), fid.cred, open_for_write=writable)
    return m.Rsetattr()


@handles(m.Tlopen)
async def lopen(session: Session, msg: m.Tlopen) -> m.Message:
    fid = _unopened_fid(session, msg.fid)
    if fid.xattr_value is not None:
        raise OSError(errno.EBADF, "an xattr fid cannot be opened")
    attr = await fid.loc.node.getattr()
    if msg.flags & O_DIRECTORY and not stat.S_ISDIR(attr.mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    fid.handle = await fid.ns.open(fid.loc, msg.flags, fid.cred)
    fid.flags = msg.flags
    return m.Rlopen(fid.ns.qid(fid.loc, attr), 0)


@handles(m.Tlcreate)
async def lcreate(session: Session, msg: m.Tlcreate) -> m.Message:
    fid = _unopened_fid(session, msg.fid)
    loc, handle = await fid.ns.create(fid.loc, msg.name, msg.flags, msg.mode & 0o7777, msg.gid,
                                      fid.cred)
    fid.parent, fid.name, fid.loc, fid.handle, fid.flags = fid.loc, msg.name, loc, handle, msg.flags
    return m.Rlcreate(await _qid(fid, loc), 0)


@handles(m.Tmkdir)
async def mkdir(session: Session, msg: m.Tmkdir) -> m.Message:
    fid = session.fid(msg.dfid)
    loc = await fid.ns.mkdir(fid.loc, msg.name, msg.mode & 0o7777, msg.gid, fid.cred)
    return m.Rmkdir(await _qid(fid, loc))


@handles(m.Tsymlink)
async def symlink(session: Session, msg: m.Tsymlink) -> m.Message:
    fid = session.fid(msg.fid)
    loc = await fid.ns.symlink(fid.loc, msg.name, msg.symtgt, msg.gid, fid.cred)
    return m.Rsymlink(await _qid(fid, loc))


@handles(m.Tmknod)
async def mknod(session: Session, msg: m.Tmknod) -> m.Message:
    fid = session.fid(msg.dfid)
    if msg.major >= _MAJOR_LIMIT or msg.minor >= _MINOR_LIMIT:
        raise OSError(errno.EINVAL, f"device {msg.major}:{msg.minor} does not fit a dev_t")
    rdev = os.makedev(msg.major, msg.minor)
    mode = msg.mode & _UMODE_MASK  # mknod(2) takes a umode_t: bits above it never arrive
    loc = await fid.ns.mknod(fid.loc, msg.name, mode, rdev, msg.gid, fid.cred)
    return m.Rmknod(await _qid(fid, loc))


@handles(m.Tlink)
async def link(session: Session, msg: m.Tlink) -> m.Message:
    dfid = session.fid(msg.dfid)
    target = session.fid(msg.fid)
    await dfid.ns.link(dfid.loc, msg.name, target.loc, dfid.cred)
    return m.Rlink()


@handles(m.Trenameat)
async def renameat(session: Session, msg: m.Trenameat) -> m.Message:
    old = session.fid(msg.olddirfid)
    new = session.fid(msg.newdirfid)
    await old.ns.rename(old.loc, msg.oldname, new.loc, msg.newname, old.cred)
    return m.Rrenameat()


@handles(m.Trename)
async def rename(session: Session, msg: m.Trename) -> m.Message:
    fid = session.fid(msg.fid)
    new = session.fid(msg.dfid)
    if fid.parent is None:
        raise OSError(errno.EBUSY, "the root cannot be renamed")
    await fid.ns.rename(fid.parent, fid.name, new.loc, msg.name, fid.cred)
    fid.parent, fid.name = new.loc, msg.name
    return m.Rrename()


@handles(m.Tunlinkat)
async def unlinkat(session: Session, msg: m.Tunlinkat) -> m.Message:
    fid = session.fid(msg.dirfid)
    await fid.ns.unlink(fid.loc, msg.name, bool(msg.flags & AT_REMOVEDIR), fid.cred)
    return m.Runlinkat()


@handles(m.Tremove)
async def remove(session: Session, msg: m.Tremove) -> m.Message:
    fid = session.fid(msg.fid)
    del session.fids[msg.fid]  # Tremove clunks the fid even when the removal fails
    try:
        if fid.parent is None:
            raise OSError(errno.EBUSY, "the root cannot be removed")
        attr = await fid.loc.node.getattr()
        await fid.ns.unlink(fid.parent, fid.name, stat.S_ISDIR(attr.mode), fid.cred)
    finally:
        await session.release(fid)
    return m.Rremove()


@handles(m.Tclunk)
async def clunk(session: Session, msg: m.Tclunk) -> m.Message:
    fid = session.fid(msg.fid)
    del session.fids[msg.fid]
    await session.release(fid)
    return m.Rclunk()


@handles(m.Treadlink)
async def readlink(session: Session, msg: m.Treadlink) -> m.Message:
    fid = session.fid(msg.fid)
    return m.Rreadlink(await fid.ns.readlink(fid.loc, fid.cred))


@handles(m.Tstatfs)
async def statfs(session: Session, msg: m.Tstatfs) -> m.Message:
    fid = session.fid(msg.fid)
    s = await fid.ns.statfs(fid.loc)
    return m.Rstatfs(s.fstype, s.bsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.fsid,
                     s.namelen)


@handles(m.Tread)
async def read(session: Session, msg: m.Tread) -> m.Message:
    return await read_fid(session, msg.fid, msg.offset, msg.count)


async def read_fid(session: Session, number: int, offset: int, count: int) -> m.Rread:
    """Tread, for the decoded message and for the transport's raw path alike."""
    fid = session.fid(number)
    count = min(count, session.msize - m.HEADER_SIZE - 4)
    _check_range(offset, count)
    if fid.xattr_value is not None:
        return m.Rread(fid.xattr_value[offset:offset + count])
    if fid.auth is not None:
        return m.Rread(fid.auth.read(offset, count))
    if fid.handle is None:
        raise OSError(errno.EBADF, f"fid {number} is not open")
    if fid.flags & O_ACCMODE == O_WRONLY:
        raise OSError(errno.EBADF, "file is open for writing only")
    return m.Rread(await fid.handle.read(offset, count))


@handles(m.Twrite)
async def write(session: Session, msg: m.Twrite) -> m.Message:
    fid = session.fid(msg.fid)
    _check_range(msg.offset, len(msg.data))
    if fid.xattr_write is not None:
        return m.Rwrite(_xattr_append(fid.xattr_write, msg.offset, msg.data))
    if fid.auth is not None:
        return m.Rwrite(await fid.auth.write(msg.offset, bytes(msg.data), session.peer))
    if fid.handle is None:
        raise OSError(errno.EBADF, f"fid {msg.fid} is not open")
    if fid.flags & O_ACCMODE not in (O_WRONLY, O_RDWR):
        raise OSError(errno.EBADF, "file is open for reading only")
    return m.Rwrite(await fid.handle.write(msg.offset, msg.data))


def _check_range(offset: int, count: int) -> None:
    """Linux's rw_verify_area: an offset or an end past the largest loff_t is EINVAL."""
    if offset + count > LOFF_MAX:
        raise OSError(errno.EINVAL, f"offset {offset} + {count} bytes past 2**63 - 1")


def _check_xattr_name(name: str) -> None:
    """What Linux's getxattr/setxattr refuse before any filesystem sees the name."""
    if "\0" in name:  # a C string ends there; the host would act on a shorter name
        raise OSError(errno.EINVAL, "NUL byte in an xattr name")
    if len(name.encode("utf-8", "surrogateescape")) > XATTR_NAME_MAX:
        raise OSError(errno.ERANGE, "xattr name longer than 255 bytes")


def _xattr_append(pending: XattrWrite, offset: int, data: bytes | memoryview) -> int:
    if offset != len(pending.buf) or offset + len(data) > pending.size:
        raise OSError(errno.EINVAL, f"xattr {pending.name}: write at {offset} of {len(data)} "
                      f"bytes does not continue a value of {pending.size}")
    pending.buf += data
    return len(data)


@handles(m.Treaddir)
async def readdir(session: Session, msg: m.Treaddir) -> m.Message:
    fid = _open_fid(session, msg.fid)
    count = min(msg.count, session.msize - m.HEADER_SIZE - 4)
    parts: list[bytes] = []
    used = 0
    cookie = msg.offset
    mount = fid.loc.mount
    if fid.listing_end is None or cookie == 0:
        # a listing ends at the entries that existed when it began (Node.listing_end)
        fid.listing_end = await fid.ns.listing_end(fid.loc)
    end = fid.listing_end
    while True:
        entries = await fid.ns.readdir(fid.loc, cookie, max(count // 32, 8), end)
        if not entries:
            break
        for entry in entries:
            # a DT_* type is its mode's format bits >> 12 (Linux's fs_umode_to_dtype)
            qid = Qid.of(entry.dtype << 12, mount.qid_path(entry.ino))
            packed = m.pack_dirent(qid, entry.cookie, entry.dtype, entry.name)
            if used + len(packed) > count:
                if not parts:
                    raise OSError(errno.EINVAL, "Treaddir count too small for one entry")
                return m.Rreaddir(b"".join(parts))
            parts.append(packed)
            used += len(packed)
            cookie = entry.cookie
    return m.Rreaddir(b"".join(parts))



@handles(m.Tfsync)
async def fsync(session: Session, msg: m.Tfsync) -> m.Message:
    fid = _open_fid(session, msg.fid)
    assert fid.handle is not None
    await fid.handle.fsync(bool(msg.datasync))
    return m.Rfsync()


async def _lock_key(fid: Fid) -> tuple[int, int]:
    return id(fid.loc.mount.backend), (await fid.loc.node.getattr()).ino


def _host_locks(fid: Fid) -> HostLocks | None:
    """The open file's locks as the host holds them, where its backend keeps them there
    (passthrough: vfs/locks.py, backends/passthrough/ofd_locks.py)."""
    handle = fid.handle
    while handle is not None and not hasattr(handle, "host_locks"):
        handle = getattr(handle, "inner", None)  # a WriteGuard (vfs/setid.py) wraps it
    if handle is None:
        return None
    host: HostLocks = handle.host_locks()
    return host


def _forwarding(fid: Fid) -> Handle | None:
    """The open file's handle when a back server keeps its locks (the 9p backend)."""
    handle = fid.handle
    while handle is not None and not handle.forwards_locks:
        handle = getattr(handle, "inner", None)  # a WriteGuard (vfs/setid.py) wraps it
    return handle


def _check_lock_range(start: int, length: int) -> None:
    """Linux's flock64_to_posix_lock: a negative start is EINVAL, an end past the
    largest offset EOVERFLOW (length 0: to the end of the file)."""
    if start > LOFF_MAX:
        raise OSError(errno.EINVAL, f"lock start {start}")
    if length > 0 and length - 1 > LOFF_MAX - start:
        raise OSError(errno.EOVERFLOW, f"lock of {length} bytes at {start}")


@handles(m.Tlock)
async def lock(session: Session, msg: m.Tlock) -> m.Message:
    fid = session.fid(msg.fid)
    if msg.lock_type not in (0, 1, 2):
        raise OSError(errno.EINVAL, f"lock type {msg.lock_type}")
    _check_lock_range(msg.start, msg.length)
    owner = (session.conn_id, msg.client_id, msg.proc_id)
    if (forward := _forwarding(fid)) is not None:
        return m.Rlock(await forward.lock(msg.lock_type, msg.flags, msg.start, msg.length,
                                          owner))
    key = await _lock_key(fid)
    host = _host_locks(fid)
    if msg.flags & LOCK_FLAG_BLOCK and msg.lock_type != UNLCK:
        await session.locks.lock(key, msg.lock_type, msg.start, msg.length, owner, host)
        return m.Rlock(LOCK_SUCCESS)
    granted = session.locks.try_lock(key, msg.lock_type, msg.start, msg.length, owner, host)
    return m.Rlock(LOCK_SUCCESS if granted else LOCK_BLOCKED)


@handles(m.Tgetlock)
async def getlock(session: Session, msg: m.Tgetlock) -> m.Message:
    fid = session.fid(msg.fid)
    if msg.lock_type not in (0, 1, 2):
        raise OSError(errno.EINVAL, f"lock type {msg.lock_type}")
    _check_lock_range(msg.start, msg.length)
    owner = (session.conn_id, msg.client_id, msg.proc_id)
    if (forward := _forwarding(fid)) is not None:
        return m.Rgetlock(*await forward.getlock(msg.lock_type, msg.start, msg.length, owner))
    key = await _lock_key(fid)
    held = session.locks.test(key, msg.lock_type, msg.start, msg.length, owner,
                              _host_locks(fid))
    if held is None:
        return m.Rgetlock(UNLCK, msg.start, msg.length, msg.proc_id, msg.client_id)
    return m.Rgetlock(held.lock_type, held.start, held.length, held.owner[2], held.owner[1])


@handles(m.Txattrwalk)
async def xattrwalk(session: Session, msg: m.Txattrwalk) -> m.Message:
    fid = session.fid(msg.fid)
    session.check_new_fid(msg.newfid)
    _check_xattr_name(msg.name)
    if msg.name:
        value = await fid.ns.xattr_get(fid.loc, msg.name, fid.cred)
    else:
        names = await fid.ns.xattr_list(fid.loc, fid.cred)
        value = b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names)
    new = fid.clone()
    new.xattr_value = bytes(value)
    session.bind(msg.newfid, new)
    return m.Rxattrwalk(len(value))


@handles(m.Txattrcreate)
async def xattrcreate(session: Session, msg: m.Txattrcreate) -> m.Message:
    fid = _unopened_fid(session, msg.fid)
    if msg.attr_size > XATTR_SIZE_MAX:
        raise OSError(errno.E2BIG, f"xattr value of {msg.attr_size} bytes (max {XATTR_SIZE_MAX})")
    if not msg.name:
        raise OSError(errno.EINVAL, "empty xattr name")
    _check_xattr_name(msg.name)
    if msg.flags & ~_XATTR_FLAGS:
        raise OSError(errno.EINVAL, f"xattr flags {msg.flags:#x}")
    if fid.loc.mount.read_only:
        raise OSError(errno.EROFS, "read-only file system")
    session.begin_xattr_write(fid, XattrWrite(msg.name, msg.attr_size, msg.flags))
    return m.Rxattrcreate()
