"""The index: one pass over the members builds the directory tree, as GNU tar would extract it.

- Paths lose a leading "/" and "./" components; a member whose path holds ".." is
  skipped with a warning (GNU tar refuses to extract it).
- Directories implied by a path but absent from the archive get mode 0755, owner
  root:root (uid 0, gid 0) and the archive file's mtime as all three times: what
  a fresh extraction by root shows, and stable across remounts.
- Duplicates: the last member wins, as GNU tar extracts. A directory met again
  keeps its children and takes the new attributes; any other replacement drops
  the old entry (a replaced directory takes its subtree along).
- A uid or gid that 9P cannot carry (PAX allows any) becomes 65534, Linux's overflow id.
- A hard link names the node its target path holds at that point of the archive,
  so both names share one inode number and link count.
"""

from __future__ import annotations

import logging
import stat

from ninep.vfs.node import Attr

from .headers import Member
from .nodes import TarDir, TarFile, TarNode, TarSpecial, TarSymlink, TarVolume, device

__all__ = ["IndexBuilder"]

log = logging.getLogger(__name__)

_SPECIAL = {ord("3"): stat.S_IFCHR, ord("4"): stat.S_IFBLK, ord("6"): stat.S_IFIFO}
_DIRECTORY = frozenset((ord("5"), ord("D")))
_HARDLINK, _SYMLINK = ord("1"), ord("2")
OVERFLOW_ID, OVERFLOW_LIMIT = 65534, 2**32 - 1  # (u32)-1 means "no id" in 9P


def _owner(ident: int) -> int:
    """A PAX uid/gid past 9P's 32 bits (or negative) shows as the overflow id, as Linux does."""
    return ident if 0 <= ident < OVERFLOW_LIMIT else OVERFLOW_ID


def split_path(path: str) -> list[str] | None:
    """The components of an archive path; None when it climbs with "..". """
    parts = [p for p in path.split("/") if p and p != "."]
    return None if ".." in parts else parts


class IndexBuilder:
    """Adds members one by one; ``seal`` freezes the tree."""

    def __init__(self, volume: TarVolume, label: str, default_time_ns: int) -> None:
        self.volume, self.label, self.default_time = volume, label, default_time_ns
        self.next_ino = 1
        self.root = TarDir(volume, self.implied_attr(), None, None)
        self.dirs: dict[str, TarDir] = {"": self.root}  # path -> directory, for quick parents
        self.members = 0

    def take_ino(self) -> int:
        ino, self.next_ino = self.next_ino, self.next_ino + 1
        return ino

    def implied_attr(self) -> Attr:
        t = self.default_time
        return Attr(self.take_ino(), stat.S_IFDIR | 0o755, 0, 0, 2, 0, t, t, t)

    def warn(self, member: Member, why: str) -> None:
        log.warning("%s: member %r at byte offset %d: %s", self.label, member.path,
                    member.offset, why)

    def add(self, member: Member) -> None:
        self.members += 1
        parts = split_path(member.path)
        if parts is None:
            self.warn(member, "skipped: its path contains '..'")
            return
        if not parts:
            if member.typeflag in _DIRECTORY:  # "./": the root's own attributes
                self.update_dir(self.root, member)
            else:
                self.warn(member, "skipped: a non-directory at the root")
            return
        parent = self.parent_dir(parts)
        if parent is None:
            self.warn(member, "skipped: a parent path is not a directory")
            return
        name = parts[-1]
        old = parent.children.get(name)
        if member.typeflag in _DIRECTORY and isinstance(old, TarDir):
            self.update_dir(old, member)
            return
        node = self.make_node(member, parent)
        if node is None:
            return
        if old is not None:
            self.drop(parent, name, old)
        parent.children[name] = node
        if isinstance(node, TarDir):
            self.dirs["/".join(parts)] = node
        else:
            node.attr.nlink += 1

    def parent_dir(self, parts: list[str]) -> TarDir | None:
        """The directory holding ``parts[-1]``, made (implied) where missing."""
        key = "/".join(parts[:-1])
        found = self.dirs.get(key)
        if found is not None:
            return found
        directory = self.root
        for depth, part in enumerate(parts[:-1]):
            child = directory.children.get(part)
            if child is None:
                child = TarDir(self.volume, self.implied_attr(), None, directory)
                directory.children[part] = child
                self.dirs["/".join(parts[:depth + 1])] = child
            elif not isinstance(child, TarDir):
                return None
            directory = child
        return directory

    def drop(self, parent: TarDir, name: str, old: TarNode) -> None:
        del parent.children[name]
        if isinstance(old, TarDir):  # forget the subtree's cached paths
            self.dirs = {path: d for path, d in self.dirs.items() if self.attached(d)}
        else:
            old.attr.nlink -= 1

    def attached(self, directory: TarDir) -> bool:
        while directory is not self.root:
            parent = directory.parent
            if not any(child is directory for child in parent.children.values()):
                return False
            directory = parent
        return True

    def update_dir(self, directory: TarDir, member: Member) -> None:
        ino = directory.attr.ino
        directory.attr = self.attr_of(member, stat.S_IFDIR, 0, 0)
        directory.attr.ino = ino
        directory.xattrs = member.xattrs

    def attr_of(self, member: Member, kind: int, size: int, rdev: int) -> Attr:
        mtime = member.mtime_ns
        atime = mtime if member.atime_ns is None else member.atime_ns
        ctime = mtime if member.ctime_ns is None else member.ctime_ns
        return Attr(self.take_ino(), kind | member.mode, _owner(member.uid),
                    _owner(member.gid), 0, size, atime, mtime, ctime, rdev)

    def make_node(self, member: Member, parent: TarDir) -> TarNode | None:
        kind = member.typeflag
        if kind in _DIRECTORY:
            attr = self.attr_of(member, stat.S_IFDIR, 0, 0)
            return TarDir(self.volume, attr, member.xattrs, parent)
        if kind == _HARDLINK:
            return self.link_target(member)
        if kind == _SYMLINK:
            size = len(member.linkname.encode("utf-8", "surrogateescape"))
            attr = self.attr_of(member, stat.S_IFLNK, size, 0)
            return TarSymlink(self.volume, attr, member.xattrs, member.linkname)
        if kind in _SPECIAL:
            rdev = device(member.devmajor, member.devminor) if kind != ord("6") else 0
            attr = self.attr_of(member, _SPECIAL[kind], 0, rdev)
            return TarSpecial(self.volume, attr, member.xattrs)
        # Regular, contiguous, sparse, and unknown types (POSIX: read as regular files).
        attr = self.attr_of(member, stat.S_IFREG, member.size, 0)
        stored = member.sparse.stored if member.sparse is not None else member.size
        attr.blocks = -(-stored // 512)
        return TarFile(self.volume, attr, member.xattrs, member.data_offset, member.sparse)

    def link_target(self, member: Member) -> TarNode | None:
        parts = split_path(member.linkname)
        target: TarNode | None = None
        if parts:
            directory = self.dirs.get("/".join(parts[:-1]))
            target = directory.children.get(parts[-1]) if directory is not None else None
        if target is None or isinstance(target, TarDir):
            self.warn(member, f"skipped: hard link to {member.linkname!r}, which is "
                              f"{'a directory' if target else 'not in the archive before it'}")
            return None
        return target

    def seal(self) -> TarDir:
        """Sort every listing and count directory links; the tree is final after this."""
        stack = [self.root]
        while stack:
            directory = stack.pop()
            directory.seal()
            stack.extend(node for node in directory.children.values() if isinstance(node, TarDir))
        return self.root

    @property
    def inode_count(self) -> int:
        return self.next_ino - 1
