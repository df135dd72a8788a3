"""An fsspec filesystem over 9P2000.L ("9p"): fsspec.open("9p://host:5640/path"), pandas, dask.

The filesystem is an fsspec AsyncFileSystem driving the async Client on fsspec's own
I/O loop, so bulk calls (cat, get, put, copy of many files) share one connection
with many requests in flight. Paths are absolute below the attach root ("/a/b").
"""

from __future__ import annotations

import asyncio
import errno
import getpass
import os
import ssl
import stat as stat_module
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from fsspec.asyn import AsyncFileSystem, sync  # type: ignore[import-untyped]
from fsspec.callbacks import DEFAULT_CALLBACK, Callback  # type: ignore[import-untyped]
from fsspec.spec import AbstractBufferedFile  # type: ignore[import-untyped]
from fsspec.utils import stringify_path  # type: ignore[import-untyped]

from ninep.wire.messages import NONUNAME

from .auth import KeyLike
from .client import DEFAULT_MSIZE, Client
from .files import RemoteFile, TextFile, run_bounded
from .results import StatResult
from .tree import Tree

__all__ = ["DEFAULT_PORT", "NinepFile", "NinepFileSystem"]

DEFAULT_PORT = 5640  # what `ninep serve` listens on without --listen
GETATTR_BTIME = 0x800  # Rgetattr.valid bit: btime is filled in (9P2000.L getattr)
COPY_CHUNK = 4 * 2**20  # bytes moved per step by get/put/cp: bounded memory per file
MAX_PARALLEL_STATS = 64  # an ls of a large directory stats this many entries at a time
MAX_SYMLINK_HOPS = 40  # as Linux's MAXSYMLINKS

T = TypeVar("T")


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


def _tls_context(tls: bool | ssl.SSLContext, ca: str | None, cert: str | None,
                 key: str | None) -> ssl.SSLContext | None:
    """The client's TLS context: given, or the system's defaults plus a CA and client cert."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if not (tls or ca or cert):
        return None
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def _local_user() -> str:
    """The default uname: the local user's name, as the ninep CLI and diod's tools send."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _binary(file: RemoteFile | TextFile) -> RemoteFile:
    assert isinstance(file, RemoteFile), "opened in a binary mode"
    return file


def _kind(mode: int) -> str:
    if stat_module.S_ISDIR(mode):
        return "directory"
    if stat_module.S_ISREG(mode):
        return "file"
    if stat_module.S_ISLNK(mode):
        return "link"
    return "other"


def _info(name: str, st: StatResult) -> dict[str, Any]:
    """fsspec's details dict ("name", "size", "type") plus the POSIX attributes."""
    return {"name": name, "size": st.st_size, "type": _kind(st.st_mode),
            "mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
            "ino": st.st_ino, "mtime": st.st_mtime, "atime": st.st_atime,
            "ctime": st.st_ctime, "islink": stat_module.S_ISLNK(st.st_mode),
            "created": (st.st_btime_ns if st.valid & GETATTR_BTIME and st.st_btime_ns
                        else st.st_ctime_ns) / 1e9}


class NinepFileSystem(AsyncFileSystem):  # type: ignore[misc]  # fsspec is untyped
    """fsspec's view of one 9P2000.L attach.

    ``fsspec.filesystem("9p", host="server", port=5640, aname="/srv", uname="me")``;
    ``url`` instead of host/port takes any address the Client accepts (e.g. a
    unix:// socket). TLS: ``tls=True`` (system CAs) or an ``ssl.SSLContext``, or
    ``tls_ca``/``tls_cert``/``tls_key`` files; ``key`` is an Ed25519 key proved
    through Tauth (docs/auth.md).
    """

    # pandas takes only URL schemes that start with a letter: "ninep://" is the alias it reads
    protocol = ("9p", "ninep")
    root_marker = "/"
    async_impl = True

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 url: str | None = None, aname: str = "", uname: str | None = None,
                 n_uname: int = NONUNAME, msize: int = DEFAULT_MSIZE,
                 tls: bool | ssl.SSLContext = False, tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 server_hostname: str | None = None, key: KeyLike | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url or f"tcp://{host}:{int(port)}"
        self.aname, self.n_uname, self.msize = aname, n_uname, msize
        self.uname = _local_user() if uname is None else uname
        self.key = key
        self.server_hostname = server_hostname
        self._ssl = _tls_context(tls, tls_ca, tls_cert, tls_key)
        self._client: Client | None = None
        self._root: Tree | None = None
        self._connecting: asyncio.Lock | None = None

    # --- fsspec's path conventions ---------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """"9p://host:port/a/b", "9p::/a/b", "a/b/" -> "/a/b" (relative to the attach root)."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        for scheme in cls.protocol:
            if path.startswith(scheme + "://"):
                rest = path[len(scheme) + 3:]
                path = rest[rest.find("/"):] if "/" in rest else ""
            elif path.startswith(scheme + "::"):
                path = path[len(scheme) + 2:]
        return "/" + "/".join(name for name in path.split("/") if name not in ("", "."))

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        """host, port and uname from "9p://[uname@]host[:port]/path" (or "ninep://")."""
        scheme, sep, rest = path.partition("://")
        if not sep or scheme not in NinepFileSystem.protocol:
            return {}
        # urlsplit takes no scheme that starts with a digit: parse the rest as tcp://
        parts = urlsplit("tcp://" + rest)
        out: dict[str, Any] = {}
        if parts.hostname:
            out["host"] = parts.hostname
        if parts.port is not None:
            out["port"] = parts.port
        if parts.username:
            out["uname"] = unquote(parts.username)
        return out

    @property
    def fsid(self) -> str:
        return f"9p:{self.url}:{self.aname}"

    # --- the connection ---------------------------------------------------

    async def _tree(self) -> Tree:
        """The attach root, connecting (again, if the connection was lost) on first use."""
        if self._root is not None and self._client is not None and not self._client.closed:
            return self._root
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._root is None or self._client is None or self._client.closed:
                client = await Client.connect(self.url, self.msize, tls=self._ssl,
                                              server_hostname=self.server_hostname)
                try:
                    root = await client.attach(self.uname, self.aname, self.n_uname,
                                               key=self.key)
                except BaseException:
                    await client.close()
                    raise
                self._client, self._root = client, root
            return self._root

    async def _close(self) -> None:
        client, self._client, self._root = self._client, None, None
        if client is not None:
            await client.close()

    def close(self) -> None:
        """Close the connection (the next call connects again)."""
        if self._client is not None:
            sync(self.loop, self._close)

    # --- metadata ---------------------------------------------------------

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        tree = await self._tree()
        st = await tree.stat(path)
        info = _info(path, st)
        if st.is_symlink():  # fsspec, like os.stat, describes what a link points to
            info.update(await self._follow(tree, path))
        return info

    async def _follow(self, tree: Tree, path: str) -> dict[str, Any]:
        """The target's size and type, and "destination"; type "other" if it dangles."""
        target = path
        for _ in range(MAX_SYMLINK_HOPS):
            link = await tree.readlink(target)
            target = self._strip_protocol(
                link if link.startswith("/") else _join(self._parent(target), link))
            try:
                st = await tree.stat(target)
            except FileNotFoundError:
                break
            if not st.is_symlink():
                return {"size": st.st_size, "type": _kind(st.st_mode), "destination": target}
        return {"type": "other", "destination": target}

    async def _open_read(self, path: str) -> RemoteFile:
        """Open for reading; a symbolic link (which 9P walks never follow) is resolved."""
        tree = await self._tree()
        try:
            return _binary(await tree.open(path, "rb"))
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return _binary(await tree.open((await self._follow(tree, path))["destination"], "rb"))

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        tree = await self._tree()
        try:
            entries = await tree.scandir(path)
        except NotADirectoryError:  # fsspec: ls of a file lists the file itself
            return [await self._info(path)] if detail else [path]
        names = [_join(path, entry.name) for entry in entries]
        if not detail:
            return names
        infos = await run_bounded(MAX_PARALLEL_STATS, [partial(self._info_if_any, n)
                                                       for n in names])
        return [info for info in infos if info is not None]

    async def _info_if_any(self, path: str) -> dict[str, Any] | None:
        """None for an entry removed between the readdir and its stat."""
        try:
            return await self._info(path)
        except FileNotFoundError:
            return None

    async def _modified(self, path: str) -> datetime:
        return datetime.fromtimestamp((await self._info(path))["mtime"], UTC)

    async def _created(self, path: str) -> datetime:
        """Birth time where the server reports one (Rgetattr btime), else ctime."""
        return datetime.fromtimestamp((await self._info(path))["created"], UTC)

    def modified(self, path: str) -> datetime:
        return sync(self.loop, self._modified, path)  # type: ignore[no-any-return]

    def created(self, path: str) -> datetime:
        return sync(self.loop, self._created, path)  # type: ignore[no-any-return]

    # --- directories ------------------------------------------------------

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        tree = await self._tree()
        if create_parents:
            if await tree.exists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            await tree.makedirs(path, kwargs.get("mode", 0o777), exist_ok=True)
        else:
            await tree.mkdir(path, kwargs.get("mode", 0o777))

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        await (await self._tree()).makedirs(path, 0o777, exist_ok=exist_ok)

    async def _rmdir(self, path: str) -> None:
        await (await self._tree()).rmdir(self._strip_protocol(path))

    def rmdir(self, path: str) -> None:
        sync(self.loop, self._rmdir, path)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        await (await self._tree()).remove(self._strip_protocol(path))

    async def _rm(self, path: str | list[str], recursive: bool = False,
                  batch_size: int | None = None, maxdepth: int | None = None,
                  **kwargs: Any) -> None:
        """Files first (many in flight), then directories deepest first.

        fsspec's default removes everything at once, which races an rmdir against
        the removal of the directory's own entries.
        """
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        tree = await self._tree()
        stats = await run_bounded(MAX_PARALLEL_STATS, [partial(tree.stat, p) for p in paths])
        dirs = [p for p, st in zip(paths, stats, strict=True) if st.is_dir()]
        files = [p for p, st in zip(paths, stats, strict=True) if not st.is_dir()]
        await run_bounded(MAX_PARALLEL_STATS, [partial(tree.remove, p) for p in files])
        for directory in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
            await tree.rmdir(directory)

    # --- whole files ------------------------------------------------------

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None,
                        **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        async with await self._open_read(path) as f:
            if (start is not None and start < 0) or (end is not None and end < 0):
                size = (await f.stat()).st_size
                start = None if start is None else max(0, size + start) if start < 0 else start
                end = None if end is None else max(0, size + end) if end < 0 else end
            start = start or 0
            if end is None:
                await f.seek(start)
                return await f.read()
            return await f.pread(start, max(0, end - start))

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite",
                         **kwargs: Any) -> None:
        # "create" is Tlcreate with O_EXCL: atomic, unlike fsspec's exists-then-write
        await self._write_from(path, "xb" if mode == "create" else "wb", [bytes(value)])

    async def _write_from(self, path: str, mode: str, chunks: Iterable[bytes],
                          callback: Callback = DEFAULT_CALLBACK) -> None:
        """Write ``chunks`` to a new or truncated file, making missing parent directories."""
        path = self._strip_protocol(path)
        f = await self._open_remote(path, mode)
        async with f:
            for chunk in chunks:
                await f.write(chunk)
                callback.relative_update(len(chunk))

    async def _open_remote(self, path: str, mode: str) -> RemoteFile:
        """Open for writing; a missing parent is made, as LocalFileSystem(auto_mkdir) does."""
        tree = await self._tree()
        try:
            return _binary(await tree.open(path, mode))
        except FileNotFoundError:
            parent = self._parent(path)
            if parent == path or await tree.exists(parent):
                raise
            await tree.makedirs(parent, 0o777, exist_ok=True)
            return _binary(await tree.open(path, mode))

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy through the client (9P has no server-side copy); a directory is made."""
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        tree = await self._tree()
        if (await self._info(path1))["type"] == "directory":
            await tree.makedirs(path2, 0o777, exist_ok=True)
            return
        async with await self._open_read(path1) as src:
            dst = await self._open_remote(path2, "wb")
            async with dst:
                while chunk := await src.read(COPY_CHUNK):
                    await dst.write(chunk)

    async def _put_file(self, lpath: str, rpath: str, callback: Callback = DEFAULT_CALLBACK,
                        mode: str = "overwrite", **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            await self._makedirs(rpath, exist_ok=True)
            return
        with open(lpath, "rb") as local:
            callback.set_size(os.fstat(local.fileno()).st_size)
            chunks = iter(lambda: local.read(COPY_CHUNK), b"")
            await self._write_from(rpath, "xb" if mode == "create" else "wb", chunks, callback)

    async def _get_file(self, rpath: str, lpath: str, callback: Callback = DEFAULT_CALLBACK,
                        **kwargs: Any) -> None:
        rpath = self._strip_protocol(rpath)
        if (await self._info(rpath))["type"] == "directory":
            os.makedirs(lpath, exist_ok=True)
            return
        async with await self._open_read(rpath) as src:
            callback.set_size((await src.stat()).st_size)
            with open(lpath, "wb") as local:
                while chunk := await src.read(COPY_CHUNK):
                    local.write(chunk)
                    callback.relative_update(len(chunk))

    # --- moves ------------------------------------------------------------

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        """One path: Trenameat (atomic, directories included); globs and lists: copy + rm."""
        if (not isinstance(path1, str) or not isinstance(path2, str)
                or any(c in path1 for c in "*?[") or maxdepth is not None):
            super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
            return
        sync(self.loop, self._rename, path1, path2)

    async def _rename(self, path1: str, path2: str) -> None:
        source, target = self._strip_protocol(path1), self._strip_protocol(path2)
        if source == target:
            return
        tree = await self._tree()
        if path2.endswith("/") or await self._isdir(target):  # into a directory, as mv(1)
            target = _join(target, source.rsplit("/", 1)[-1])
        await tree.rename(source, target)

    async def _mv_file(self, path1: str, path2: str) -> None:
        await (await self._tree()).rename(self._strip_protocol(path1), self._strip_protocol(path2))

    # --- open files -------------------------------------------------------

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> NinepFile:
        return NinepFile(self, path, mode, block_size=block_size, autocommit=autocommit,
                         cache_options=cache_options, **kwargs)

    async def _touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        tree = await self._tree()
        if truncate or not await tree.exists(path):
            await self._write_from(path, "wb", [])
        else:
            await tree.utime(path, None)  # None: the server's now, as touch(1)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        sync(self.loop, self._touch, path, truncate)


class NinepFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec is untyped
    """A buffered file: reads are ranged Treads (pread), writes are sequential Twrites.

    Modes rb, wb, ab and xb. The remote file is opened on construction, so a missing
    file or an existing one under "xb" fails at open(). With autocommit=False (inside
    ``fs.transaction``) writes go to a temporary name renamed over the target on commit.
    """

    fs: NinepFileSystem

    def __init__(self, fs: NinepFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        path = fs._strip_protocol(path)
        self.fs = fs  # before the base class sets it: _run needs the loop
        self.remote: RemoteFile | None = None
        autocommit = kwargs.get("autocommit", True)
        self.target = path if autocommit or mode == "rb" else \
            f"{fs._parent(path).rstrip('/')}/.{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}.part"
        if mode in ("rb", "wb", "ab", "xb"):
            self.remote = self._run(self._open_remote, mode)
        try:
            if mode == "rb" and kwargs.get("size") is None:
                st = self._run(self.remote.stat) if self.remote else None
                if st is not None and st.is_dir():
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
                kwargs["size"] = st.st_size if st is not None else None
            super().__init__(fs, path, mode, **kwargs)
        except BaseException:
            self._close_remote()
            raise

    def _run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        return sync(self.fs.loop, func, *args)  # type: ignore[no-any-return]

    async def _open_remote(self, mode: str) -> RemoteFile:
        if mode == "rb":
            return await self.fs._open_read(self.target)
        return await self.fs._open_remote(self.target, mode)

    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self.remote is not None
        return self._run(self.remote.pread, start, max(0, end - start))

    def _upload_chunk(self, final: bool = False) -> bool:
        assert self.remote is not None
        data = self.buffer.getvalue()
        if data:
            self._run(self.remote.write, data)
        return True

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._close_remote()

    def _close_remote(self) -> None:
        remote, self.remote = getattr(self, "remote", None), None
        if remote is not None and not remote.closed:
            self._run(remote.close)

    def commit(self) -> None:
        """Rename the temporary file over the target (fs.transaction's end)."""
        if self.target != self.path:
            self._run(self.fs._mv_file, self.target, self.path)

    def discard(self) -> None:
        """Remove the temporary file (a transaction that failed)."""
        if self.target != self.path:
            self._run(self.fs._rm_file, self.target)

