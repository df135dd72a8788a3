"""The 9P2000.L client: async Client and Tree, blocking SyncClient, and the CLI verbs."""

from .client import DEFAULT_MSIZE, Client, parse_server_url
from .errors import ProtocolError, TLSError, VersionError
from .fid import Fid
from .files import RemoteFile, TextFile
from .results import DirEntry, LockInfo, StatfsResult, StatResult
from .sync import SyncClient, SyncFile, SyncTree
from .tree import Tree
from .wire import (
    AT_REMOVEDIR,
    DT_DIR,
    DT_LNK,
    DT_REG,
    LOCK_RDLCK,
    LOCK_UNLCK,
    LOCK_WRLCK,
    XATTR_CREATE,
    XATTR_REPLACE,
    Dirent,
    parse_dirents,
)

__all__ = [
    "AT_REMOVEDIR",
    "DEFAULT_MSIZE",
    "DT_DIR",
    "DT_LNK",
    "DT_REG",
    "LOCK_RDLCK",
    "LOCK_UNLCK",
    "LOCK_WRLCK",
    "XATTR_CREATE",
    "XATTR_REPLACE",
    "Client",
    "DirEntry",
    "Dirent",
    "Fid",
    "LockInfo",
    "ProtocolError",
    "RemoteFile",
    "StatResult",
    "StatfsResult",
    "SyncClient",
    "SyncFile",
    "SyncTree",
    "TLSError",
    "TextFile",
    "Tree",
    "VersionError",
    "parse_dirents",
    "parse_server_url",
]
