"""The tar backend: a tar archive (plain, gzip, bzip2 or xz) served read-only.

``--mount /dist=tar:/srv/dist.tar.gz[,lenient=true][,tmpdir=/var/tmp]``

The archive is indexed once at mount (backends/tar/index.py says how paths,
duplicates, hard links and implied directories are resolved). Owners are the
numeric uid/gid of the headers (user and group names are ignored). statfs
reports the archive's size in 4 KiB blocks, nothing free, and the file system
type TAR_MAGIC (0x74617266, ASCII "tarf"): Linux has no magic for a tar file
system, and borrowing a real one (romfs, squashfs) would mislead tools that act
on it. A damaged archive fails the mount naming the file, the byte offset and
the damage; with ``lenient`` the members before the damage are served.

The archive file stays open. Opening a file checks that the archive's path
still names the same, unmodified file (device, inode, size, mtime), and every
read checks the open archive (fstat): once it changed, every open and read
answers EIO and one error is logged, rather than serving bytes from offsets
that no longer mean anything. This holds for compressed archives too, though
their decompressed copy is intact: the mount no longer shows the file's content.
Reads are ``os.pread`` calls made on the event loop: from the page cache they
take microseconds, so no thread hop is paid on every read (the exception to
invariant 6 that this backend takes, docs/architecture.md).

The archive may also be a file of another mount of the namespace
(``tar:@/srv/dist.tar``, backends/image_file.py). A compressed one is then
decompressed at mount as usual; a plain one is read through that mount's Handle,
in a thread, since that Handle's calls run on the event loop.
"""

from __future__ import annotations

import asyncio
import logging

from ninep.vfs.node import Backend, StatFs

from ..image_file import ImageFile, ImageOpener
from ..registry import BackendConfigError, Options, option_bool, option_str
from .fields import TarFormatError
from .headers import MemberReader
from .index import IndexBuilder
from .nodes import TarDir, TarVolume
from .source import ArchiveSource, SourceError

__all__ = ["TAR_MAGIC", "TarBackend", "open_backend"]

log = logging.getLogger(__name__)

TAR_MAGIC = 0x74617266
BSIZE = 4096


class TarBackend(Backend):
    """One mounted archive: the index built at open, the archive kept open until close."""

    kind = "tar"
    keeps_ownership = True
    read_only = True

    def __init__(self, source: ArchiveSource, root: TarDir, members: int) -> None:
        self.source, self.root, self.members = source, root, members

    @classmethod
    def open(cls, path: str | ImageFile, lenient: bool = False,
             tmpdir: str | None = None) -> TarBackend:
        """Open and index ``path``; BackendConfigError names the file and what is wrong."""
        try:
            source = ArchiveSource(path, tmpdir)
        except SourceError as exc:
            name = path if isinstance(path, str) else path.name
            raise BackendConfigError(f"tar archive {name}: {exc}") from None
        try:
            return cls._index(source, lenient)
        except BaseException:
            source.close()
            raise

    @classmethod
    def _index(cls, source: ArchiveSource, lenient: bool) -> TarBackend:
        path = source.path
        if source.damage is not None:
            _damaged(path, source.damage, lenient, "the members decompressed before it")
        volume = TarVolume(source, StatFs(BSIZE, 0, 0, 0, 0, 0))
        builder = IndexBuilder(volume, path, source.identity.mtime_ns)
        where = f" of the decompressed {source.compression} stream" if source.compression else ""
        reader = MemberReader(source.read_headers, source.length)
        try:
            for member in reader.members():
                builder.add(member)
        except TarFormatError as exc:
            _damaged(path, f"{exc.what} at byte offset {exc.offset}{where}", lenient,
                     f"the {builder.members} members before it")
        else:
            if not reader.end_marker and source.length:
                # GNU tar accepts this too; a cut exactly between members looks the same.
                log.warning("%s: no end-of-archive blocks after the last member: the archive "
                            "may be truncated", path)
        source.drop_window()
        root = builder.seal()
        identity = source.identity
        volume.statfs = StatFs(BSIZE, -(-source.length // BSIZE), 0, 0, builder.inode_count, 0,
                               fsid=(identity.dev << 32 ^ identity.ino) & (2**64 - 1),
                               namelen=255, fstype=TAR_MAGIC)
        log.info("%s: indexed %d members, %d inodes", path, builder.members,
                 builder.inode_count)
        return cls(source, root, builder.members)

    async def close(self) -> None:
        if self.source.archive.host:
            self.source.close()
        else:  # the Handle's close waits for the event loop
            await asyncio.to_thread(self.source.close)


def _damaged(path: str, what: str, lenient: bool, served: str) -> None:
    if not lenient:
        raise BackendConfigError(f"tar archive {path}: {what} (option lenient=true serves "
                                 f"what comes before the damage)")
    log.warning("%s: damaged archive: %s; serving %s", path, what, served)


async def open_backend(source: str, options: Options, read_only: bool,
                       opener: ImageOpener | None = None) -> TarBackend:
    """The registry's factory: options ``lenient`` (bool) and ``tmpdir`` (for decompression);
    ``opener``: how to open ``source`` when it is not a host path (``@`` in the namespace)."""
    lenient = option_bool(options, "lenient")  # defaults: the registry's KINDS
    tmpdir = option_str(options, "tmpdir") or None
    if opener is None:
        archive: str | ImageFile = source  # its errors say "cannot open", as before
    else:
        try:
            archive = await opener(False)
        except OSError as exc:
            raise BackendConfigError(f"tar archive {source}: {exc.strerror}") from None
    # Reading and decompressing a large archive takes a while: keep the event loop free.
    return await asyncio.to_thread(TarBackend.open, archive, lenient, tmpdir)
