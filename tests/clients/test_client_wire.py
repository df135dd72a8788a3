"""Pure helpers of the client: open modes, the Rreaddir parser, paths and URLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ninep.clients import parse_dirents, parse_server_url
from ninep.clients.wire import (
    O_APPEND,
    O_CREAT,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    parse_mode,
    split_path,
)
from ninep.wire.messages import Qid, pack_dirent


@pytest.mark.parametrize(("mode", "flags", "truncate", "binary"), [
    ("r", O_RDONLY, False, False),
    ("rb", O_RDONLY, False, True),
    ("r+", O_RDWR, False, False),
    ("rb+", O_RDWR, False, True),
    ("w", O_WRONLY | O_CREAT, True, False),
    ("wb", O_WRONLY | O_CREAT, True, True),
    ("w+b", O_RDWR | O_CREAT, True, True),
    ("a", O_WRONLY | O_CREAT | O_APPEND, False, False),
    ("ab+", O_RDWR | O_CREAT | O_APPEND, False, True),
    ("x", O_WRONLY | O_CREAT | O_EXCL, False, False),
    ("xb", O_WRONLY | O_CREAT | O_EXCL, False, True),
])
def test_parse_mode(mode: str, flags: int, truncate: bool, binary: bool) -> None:
    parsed = parse_mode(mode)
    assert parsed.flags == flags  # O_TRUNC never goes in Tlopen: Linux sends Tsetattr(size)
    assert parsed.truncate is truncate
    assert parsed.binary is binary


@pytest.mark.parametrize("mode", ["", "rw", "rr", "q", "rbt", "b", "+"])
def test_parse_mode_rejects(mode: str) -> None:
    with pytest.raises(ValueError):
        parse_mode(mode)


names = st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and "\0" not in s)
entries = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1),
                             st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                             st.sampled_from([0, 1, 2, 4, 6, 8, 10, 12]), names), max_size=20)


@given(entries)
def test_parse_dirents_round_trip(items: list[tuple[int, int, int, int, int, str]]) -> None:
    data = b"".join(pack_dirent(Qid(t, v, p), off, dt, name) for t, v, p, off, dt, name in items)
    parsed = parse_dirents(data)
    assert [(d.qid.type, d.qid.version, d.qid.path, d.offset, d.type, d.name)
            for d in parsed] == items


def test_parse_dirents_truncated() -> None:
    data = pack_dirent(Qid(0, 0, 1), 1, 8, "hello")
    for cut in range(1, len(data)):
        with pytest.raises(ValueError):
            parse_dirents(data[:cut])


def test_split_path() -> None:
    assert split_path("/") == ()
    assert split_path("") == ()
    assert split_path("/a//b/./c/") == ("a", "b", "c")
    assert split_path("a/../b") == ("a", "..", "b")


def test_parse_server_url() -> None:
    assert parse_server_url("tcp://127.0.0.1:564") == ("tcp", "127.0.0.1", 564)
    assert parse_server_url("tcp://[::1]:5640") == ("tcp", "::1", 5640)
    assert parse_server_url("unix:///run/9p.sock") == ("unix", "/run/9p.sock", 0)
    # the forms ninep mount and diod's tools accept; 5640 is ninep serve's port
    assert parse_server_url("127.0.0.1:564") == ("tcp", "127.0.0.1", 564)
    assert parse_server_url("files.example") == ("tcp", "files.example", 5640)
    assert parse_server_url("[::1]:99") == ("tcp", "::1", 99)
    assert parse_server_url("tcp://host") == ("tcp", "host", 5640)
    assert parse_server_url("tls://files.example:5641") == ("tls", "files.example", 5641)
    assert parse_server_url("/run/9p.sock") == ("unix", "/run/9p.sock", 0)
    for bad in ("http://x:1", "unix://", "tcp://:5640", "tls://h:99999", "tcp://h:1/x"):
        with pytest.raises(ValueError):
            parse_server_url(bad)
