"""Result values returned by the client: stat, directory entries, statfs, locks."""

from __future__ import annotations

import stat as stat_module
from dataclasses import dataclass

from ninep.wire.messages import Qid, Rgetattr, Rgetlock, Rstatfs

from .wire import DT_DIR, DT_LNK, DT_REG, Dirent

__all__ = ["DirEntry", "LockInfo", "StatResult", "StatfsResult"]


@dataclass(frozen=True, slots=True)
class StatResult:
    """What Tgetattr reported, named like os.stat_result (st_ino is qid.path)."""

    st_mode: int
    st_ino: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_rdev: int
    st_size: int
    st_blksize: int
    st_blocks: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_btime_ns: int
    st_gen: int
    st_data_version: int
    qid: Qid
    valid: int

    @classmethod
    def from_rgetattr(cls, r: Rgetattr) -> StatResult:
        """Build from an Rgetattr reply."""
        return cls(
            st_mode=r.mode, st_ino=r.qid.path, st_nlink=r.nlink, st_uid=r.uid,
            st_gid=r.gid, st_rdev=r.rdev, st_size=r.size, st_blksize=r.blksize,
            st_blocks=r.blocks,
            st_atime_ns=r.atime_sec * 1_000_000_000 + r.atime_nsec,
            st_mtime_ns=r.mtime_sec * 1_000_000_000 + r.mtime_nsec,
            st_ctime_ns=r.ctime_sec * 1_000_000_000 + r.ctime_nsec,
            st_btime_ns=r.btime_sec * 1_000_000_000 + r.btime_nsec,
            st_gen=r.gen, st_data_version=r.data_version, qid=r.qid, valid=r.valid)

    @property
    def st_atime(self) -> float:
        """Access time in seconds."""
        return self.st_atime_ns / 1e9

    @property
    def st_mtime(self) -> float:
        """Modification time in seconds."""
        return self.st_mtime_ns / 1e9

    @property
    def st_ctime(self) -> float:
        """Status change time in seconds."""
        return self.st_ctime_ns / 1e9

    def is_dir(self) -> bool:
        """True for a directory."""
        return stat_module.S_ISDIR(self.st_mode)

    def is_file(self) -> bool:
        """True for a regular file."""
        return stat_module.S_ISREG(self.st_mode)

    def is_symlink(self) -> bool:
        """True for a symbolic link (9P walks never follow links)."""
        return stat_module.S_ISLNK(self.st_mode)


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One directory entry from Treaddir, like os.DirEntry without the stat cache."""

    name: str
    path: str
    type: int  # DT_* value
    qid: Qid
    offset: int  # the cookie that resumes the listing after this entry

    @classmethod
    def from_dirent(cls, dirent: Dirent, parent: str) -> DirEntry:
        """Build from a raw Rreaddir entry found in directory ``parent``."""
        path = dirent.name if parent in ("", ".") else f"{parent.rstrip('/')}/{dirent.name}"
        return cls(dirent.name, path, dirent.type, dirent.qid, dirent.offset)

    @property
    def inode(self) -> int:
        """The qid.path, which Linux uses as the inode number."""
        return self.qid.path

    def is_dir(self) -> bool:
        """True for a directory."""
        return self.type == DT_DIR

    def is_file(self) -> bool:
        """True for a regular file."""
        return self.type == DT_REG

    def is_symlink(self) -> bool:
        """True for a symbolic link."""
        return self.type == DT_LNK


@dataclass(frozen=True, slots=True)
class StatfsResult:
    """What Tstatfs reported, named like os.statvfs_result plus f_type and f_fsid."""

    f_type: int
    f_bsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int
    f_fsid: int
    f_namemax: int

    @classmethod
    def from_rstatfs(cls, r: Rstatfs) -> StatfsResult:
        """Build from an Rstatfs reply."""
        return cls(r.fstype, r.bsize, r.blocks, r.bfree, r.bavail, r.files, r.ffree,
                   r.fsid, r.namelen)


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A byte-range lock as Tgetlock reports it (type LOCK_UNLCK: nothing conflicts)."""

    type: int
    start: int
    length: int
    proc_id: int
    client_id: str

    @classmethod
    def from_rgetlock(cls, r: Rgetlock) -> LockInfo:
        """Build from an Rgetlock reply."""
        return cls(r.lock_type, r.start, r.length, r.proc_id, r.client_id)
