"""A blocking facade over the async client, for plain scripts: SyncClient, SyncFile."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from ninep.wire.messages import NONUNAME

from .auth import KeyLike
from .client import DEFAULT_MSIZE, Client
from .files import RemoteFile, TextFile
from .results import DirEntry, LockInfo, StatfsResult, StatResult
from .tree import Tree

__all__ = ["SyncClient", "SyncFile", "SyncTree"]

T = TypeVar("T")


class _LoopThread:
    """A private event loop in a daemon thread; ``run`` blocks on a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ninep-client",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a SyncClient method was called from its own event loop")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: the request is flushed
            raise

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
        self.loop.close()


class SyncFile:
    """Blocking view of a RemoteFile or TextFile (str or bytes as opened)."""

    def __init__(self, runner: _LoopThread, file: RemoteFile | TextFile) -> None:
        self._run = runner.run
        self.file = file

    @property
    def raw(self) -> RemoteFile:
        """The binary file underneath."""
        return self.file.raw if isinstance(self.file, TextFile) else self.file

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self.file.closed

    def __enter__(self) -> SyncFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read(self, n: int = -1) -> Any:
        """Read ``n`` bytes (or characters in text mode); all when negative."""
        return self._run(self.file.read(n))

    def write(self, data: Any) -> int:
        """Write bytes (or str in text mode)."""
        return self._run(self.file.write(data))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position (byte offsets)."""
        return self._run(self.file.seek(offset, whence))

    def tell(self) -> int:
        """The current byte position."""
        return self._run(self.file.tell())

    def pread(self, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes at ``offset``."""
        return self._run(self.raw.pread(offset, count))

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at ``offset``."""
        return self._run(self.raw.pwrite(offset, data))

    def stat(self) -> StatResult:
        """Tgetattr on the open fid."""
        return self._run(self.raw.stat())

    def truncate(self, size: int | None = None) -> int:
        """Set the size (default: the position)."""
        return self._run(self.raw.truncate(size))

    def fsync(self, datasync: bool = False) -> None:
        """Tfsync."""
        self._run(self.raw.fsync(datasync))

    def lock(self, lock_type: int, start: int = 0, length: int = 0, *, block: bool = False,
             proc_id: int | None = None) -> None:
        """Tlock a byte range (see RemoteFile.lock)."""
        self._run(self.raw.lock(lock_type, start, length, block=block, proc_id=proc_id))

    def getlock(self, lock_type: int, start: int = 0, length: int = 0, *,
                proc_id: int | None = None) -> LockInfo:
        """Tgetlock (see RemoteFile.getlock)."""
        return self._run(self.raw.getlock(lock_type, start, length, proc_id=proc_id))

    def close(self) -> None:
        """Clunk the open fid."""
        self._run(self.file.close())


class SyncTree:
    """Blocking view of a Tree: the same path methods, without ``await``."""

    def __init__(self, runner: _LoopThread, tree: Tree) -> None:
        self._runner = runner
        self._run = runner.run
        self.tree = tree

    def open(self, path: str, mode: str = "r", perm: int = 0o666, *,
             encoding: str = "utf-8", errors: str = "strict") -> SyncFile:
        """Open like the builtin open(); returns a SyncFile."""
        file = self._run(self.tree.open(path, mode, perm, encoding=encoding, errors=errors))
        return SyncFile(self._runner, file)

    def subtree(self, path: str) -> SyncTree:
        """A SyncTree rooted at directory ``path``; close() it when done."""
        return SyncTree(self._runner, self._run(self.tree.subtree(path)))

    def read_bytes(self, path: str) -> bytes:
        """The whole content of a file."""
        return self._run(self.tree.read_bytes(path))

    def write_bytes(self, path: str, data: bytes | bytearray | memoryview) -> int:
        """Create or replace a file's content."""
        return self._run(self.tree.write_bytes(path, data))

    def listdir(self, path: str = "") -> list[str]:
        """Names in a directory."""
        return self._run(self.tree.listdir(path))

    def scandir(self, path: str = "") -> list[DirEntry]:
        """Entries of a directory."""
        return self._run(self.tree.scandir(path))

    def exists(self, path: str) -> bool:
        """True if ``path`` can be walked to."""
        return self._run(self.tree.exists(path))

    def stat(self, path: str) -> StatResult:
        """Tgetattr (links not followed)."""
        return self._run(self.tree.stat(path))

    def statfs(self, path: str = "") -> StatfsResult:
        """Tstatfs."""
        return self._run(self.tree.statfs(path))

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        """Make a directory."""
        self._run(self.tree.mkdir(path, mode))

    def makedirs(self, path: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        """Make a directory and its missing parents."""
        self._run(self.tree.makedirs(path, mode, exist_ok))

    def remove(self, path: str) -> None:
        """Remove a file."""
        self._run(self.tree.remove(path))

    unlink = remove

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        self._run(self.tree.rmdir(path))

    def rmtree(self, path: str) -> None:
        """Remove a directory tree."""
        self._run(self.tree.rmtree(path))

    def rename(self, old: str, new: str) -> None:
        """Rename ``old`` to ``new``."""
        self._run(self.tree.rename(old, new))

    def symlink(self, target: str, path: str) -> None:
        """Make a symbolic link."""
        self._run(self.tree.symlink(target, path))

    def readlink(self, path: str) -> str:
        """The target of a symbolic link."""
        return self._run(self.tree.readlink(path))

    def link(self, src: str, dst: str) -> None:
        """Make a hard link."""
        self._run(self.tree.link(src, dst))

    def mknod(self, path: str, mode: int = 0o600, device: int = 0) -> None:
        """Make a FIFO, socket or device node."""
        self._run(self.tree.mknod(path, mode, device))

    def chmod(self, path: str, mode: int) -> None:
        """Set permission bits."""
        self._run(self.tree.chmod(path, mode))

    def chown(self, path: str, uid: int, gid: int) -> None:
        """Set owner and group (-1 keeps one)."""
        self._run(self.tree.chown(path, uid, gid))

    def truncate(self, path: str, size: int) -> None:
        """Set a file's size."""
        self._run(self.tree.truncate(path, size))

    def utime(self, path: str, times: tuple[float, float] | None = None, *,
              ns: tuple[int, int] | None = None) -> None:
        """Set atime and mtime (None: the server's now)."""
        self._run(self.tree.utime(path, times, ns=ns))

    def getxattr(self, path: str, name: str) -> bytes:
        """An extended attribute's value."""
        return self._run(self.tree.getxattr(path, name))

    def setxattr(self, path: str, name: str, value: bytes, flags: int = 0) -> None:
        """Set an extended attribute."""
        self._run(self.tree.setxattr(path, name, value, flags))

    def listxattr(self, path: str) -> list[str]:
        """Extended attribute names."""
        return self._run(self.tree.listxattr(path))

    def removexattr(self, path: str, name: str) -> None:
        """Remove an extended attribute."""
        self._run(self.tree.removexattr(path, name))

    def lock(self, file: SyncFile, lock_type: int, start: int = 0, length: int = 0,
             block: bool = False, *, proc_id: int | None = None) -> None:
        """Tlock on an open file."""
        file.lock(lock_type, start, length, block=block, proc_id=proc_id)

    def getlock(self, file: SyncFile, lock_type: int, start: int = 0, length: int = 0, *,
                proc_id: int | None = None) -> LockInfo:
        """Tgetlock on an open file."""
        return file.getlock(lock_type, start, length, proc_id=proc_id)

    def close(self) -> None:
        """Clunk the root fid."""
        self._run(self.tree.close())


class SyncClient(SyncTree):
    """A connection plus one attach, used without asyncio.

    ``with SyncClient("tcp://host:564", aname="/srv") as fs: fs.listdir("/")``.
    More attaches on the same connection: ``fs.attach(...)`` -> SyncTree.
    """

    def __init__(self, url: str, *, aname: str = "", uname: str = "", n_uname: int = NONUNAME,
                 msize: int = DEFAULT_MSIZE, proc_id: int | None = None,
                 key: KeyLike | None = None, tls: ssl.SSLContext | None = None,
                 server_hostname: str | None = None) -> None:
        runner = _LoopThread()
        try:
            self.client: Client = runner.run(Client.connect(url, msize, tls=tls,
                                                            server_hostname=server_hostname))
            tree = runner.run(self.client.attach(uname, aname, n_uname, proc_id=proc_id, key=key))
        except BaseException:
            if hasattr(self, "client"):
                runner.run(self.client.close())
            runner.stop()
            raise
        super().__init__(runner, tree)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def attach(self, uname: str = "", aname: str = "", n_uname: int = NONUNAME, *,
               proc_id: int | None = None, key: KeyLike | None = None) -> SyncTree:
        """Another attach on the same connection."""
        tree = self._run(self.client.attach(uname, aname, n_uname, proc_id=proc_id, key=key))
        return SyncTree(self._runner, tree)

    def close(self) -> None:
        """Close the connection and stop the private event loop."""
        if self._runner.loop.is_closed():
            return
        try:
            self._run(self.client.close())
        finally:
            self._runner.stop()
