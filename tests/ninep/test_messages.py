"""Tests for ninep.wire.messages: golden frames, round trips and decoding errors.

The golden frames are spelled out field by field from PROTOCOL.md, never
produced by the encoder, so they catch a layout that is wrong in the same way
on both sides of the codec.
"""

from __future__ import annotations

import struct
from dataclasses import fields, replace
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ninep.wire import messages as m
from ninep.wire.messages import (
    MESSAGE_TYPES,
    NOFID,
    NONUNAME,
    NOTAG,
    DecodeError,
    EncodeError,
    Message,
    Qid,
    decode,
    decode_body,
    encode,
)


class Golden(NamedTuple):
    """One message, its tag, and the frame it must be on the wire."""

    tag: int
    msg: Message
    hex: str

    @property
    def frame(self) -> bytes:
        return bytes.fromhex(self.hex)


def golden(tag: int, msg: Message, *parts: str) -> Golden:
    """A golden case; ``parts`` are hex fields, in wire order, header first."""
    return Golden(tag, msg, "".join(parts))


# A qid whose every byte differs, so a swapped or misplaced field shows.
QID = Qid(type=0x80, version=0x11223344, path=0x0102030405060708)
QID_HEX = "80" "44332211" "0807060504030201"
# One Rreaddir entry: qid, offset 1, DT_DIR, name "d" (PROTOCOL.md, Rreaddir).
DIRENT_HEX = QID_HEX + "0100000000000000" "04" "0100" "64"

GOLDEN: list[Golden] = [
    golden(1, m.Rlerror(ecode=2),
           "0b000000", "07", "0100", "02000000"),  # size 11, type 7, tag 1, ENOENT
    golden(2, m.Tstatfs(fid=0x04030201),
           "0b000000", "08", "0200", "01020304"),
    golden(3, m.Rstatfs(fstype=0x01021997, bsize=4096, blocks=0x1122334455667788,
                        bfree=1, bavail=2, files=3, ffree=4, fsid=0xFEDCBA9876543210,
                        namelen=255),
           "43000000", "09", "0300",  # size 67
           "97190201",  # type V9FS_MAGIC
           "00100000",  # bsize 4096
           "8877665544332211",  # blocks
           "0100000000000000", "0200000000000000",  # bfree, bavail
           "0300000000000000", "0400000000000000",  # files, ffree
           "1032547698badcfe",  # fsid
           "ff000000"),  # namelen
    golden(4, m.Tlopen(fid=1, flags=0o100002),  # O_RDWR|O_LARGEFILE
           "0f000000", "0c", "0400", "01000000", "02800000"),
    golden(5, m.Rlopen(qid=QID, iounit=8168),
           "18000000", "0d", "0500", QID_HEX, "e81f0000"),
    golden(6, m.Tlcreate(fid=5, name="foo", flags=0o1101, mode=0o644, gid=1000),
           "1c000000", "0e", "0600",  # size 28
           "05000000",  # fid
           "0300", "666f6f",  # name "foo"
           "41020000",  # flags O_WRONLY|O_CREAT|O_TRUNC
           "a4010000",  # mode 0644
           "e8030000"),  # gid 1000
    golden(7, m.Rlcreate(qid=QID, iounit=0),
           "18000000", "0f", "0700", QID_HEX, "00000000"),
    golden(8, m.Tsymlink(fid=6, name="ln", symtgt="/tgt", gid=0),
           "19000000", "10", "0800", "06000000", "0200", "6c6e", "0400", "2f746774",
           "00000000"),
    golden(9, m.Rsymlink(qid=QID),
           "14000000", "11", "0900", QID_HEX),
    golden(10, m.Tmknod(dfid=7, name="p", mode=0o10644, major=8, minor=1, gid=100),
           "1e000000", "12", "0a00",  # size 30
           "07000000", "0100", "70",  # dfid, name "p"
           "a4110000",  # mode S_IFIFO|0644
           "08000000", "01000000", "64000000"),  # major, minor, gid
    golden(11, m.Rmknod(qid=QID),
           "14000000", "13", "0b00", QID_HEX),
    golden(12, m.Trename(fid=1, dfid=2, name="new"),
           "14000000", "14", "0c00", "01000000", "02000000", "0300", "6e6577"),
    golden(13, m.Rrename(),
           "07000000", "15", "0d00"),
    golden(14, m.Treadlink(fid=9),
           "0b000000", "16", "0e00", "09000000"),
    golden(15, m.Rreadlink(target="../t"),
           "0d000000", "17", "0f00", "0400", "2e2e2f74"),
    golden(16, m.Tgetattr(fid=1, request_mask=0x3FFF),
           "13000000", "18", "1000", "01000000", "ff3f000000000000"),
    golden(17, m.Rgetattr(valid=0x7FF, qid=QID, mode=0o100644, uid=1000, gid=1001,
                          nlink=1, rdev=0, size=1 << 20, blksize=4096, blocks=2048,
                          atime_sec=1_700_000_000, atime_nsec=1, mtime_sec=2,
                          mtime_nsec=3, ctime_sec=4, ctime_nsec=5, btime_sec=6,
                          btime_nsec=7, gen=8, data_version=9),
           "a0000000", "19", "1100",  # size 160
           "ff07000000000000",  # valid BASIC
           QID_HEX,
           "a4810000",  # mode S_IFREG|0644
           "e8030000", "e9030000",  # uid 1000, gid 1001
           "0100000000000000",  # nlink
           "0000000000000000",  # rdev
           "0000100000000000",  # size 1 MiB
           "0010000000000000",  # blksize 4096
           "0008000000000000",  # blocks 2048
           "00f1536500000000", "0100000000000000",  # atime
           "0200000000000000", "0300000000000000",  # mtime
           "0400000000000000", "0500000000000000",  # ctime
           "0600000000000000", "0700000000000000",  # btime
           "0800000000000000",  # gen
           "0900000000000000"),  # data_version
    golden(18, m.Tsetattr(fid=1, valid=0x1FF, mode=0o755, uid=2, gid=3, size=4,
                          atime_sec=5, atime_nsec=6, mtime_sec=7, mtime_nsec=8),
           "43000000", "1a", "1200",  # size 67
           "01000000", "ff010000",  # fid, valid (all bits)
           "ed010000", "02000000", "03000000",  # mode 0755, uid, gid
           "0400000000000000",  # size
           "0500000000000000", "0600000000000000",  # atime
           "0700000000000000", "0800000000000000"),  # mtime
    golden(19, m.Rsetattr(),
           "07000000", "1b", "1300"),
    golden(20, m.Txattrwalk(fid=1, newfid=2, name="user.x"),
           "17000000", "1e", "1400", "01000000", "02000000", "0600", "757365722e78"),
    golden(21, m.Rxattrwalk(size=0x1234),
           "0f000000", "1f", "1500", "3412000000000000"),
    golden(22, m.Txattrcreate(fid=1, name="user.x", attr_size=5, flags=1),
           "1f000000", "20", "1600", "01000000", "0600", "757365722e78",
           "0500000000000000", "01000000"),
    golden(23, m.Rxattrcreate(),
           "07000000", "21", "1700"),
    golden(24, m.Treaddir(fid=1, offset=0xFFFFFFFFFFFFFFFF, count=8168),
           "17000000", "28", "1800", "01000000", "ffffffffffffffff", "e81f0000"),
    golden(25, m.Rreaddir(data=bytes.fromhex(DIRENT_HEX)),
           "24000000", "29", "1900", "19000000", DIRENT_HEX),  # count 25
    golden(26, m.Tfsync(fid=1, datasync=1),
           "0f000000", "32", "1a00", "01000000", "01000000"),
    golden(27, m.Rfsync(),
           "07000000", "33", "1b00"),
    golden(28, m.Tlock(fid=1, lock_type=1, flags=1, start=0, length=0, proc_id=0x1234,
                       client_id="host"),
           "2a000000", "34", "1c00",  # size 42
           "01000000", "01", "01000000",  # fid, WRLCK, BLOCK
           "0000000000000000", "0000000000000000",  # start, length (to EOF)
           "34120000", "0400", "686f7374"),  # proc_id, client_id
    golden(29, m.Rlock(status=3),
           "08000000", "35", "1d00", "03"),  # GRACE
    golden(30, m.Tgetlock(fid=1, lock_type=0, start=10, length=20, proc_id=7,
                          client_id="h"),
           "23000000", "36", "1e00", "01000000", "00", "0a00000000000000",
           "1400000000000000", "07000000", "0100", "68"),
    golden(31, m.Rgetlock(lock_type=2, start=10, length=20, proc_id=7, client_id=""),
           "1e000000", "37", "1f00", "02", "0a00000000000000", "1400000000000000",
           "07000000", "0000"),
    golden(32, m.Tlink(dfid=1, fid=2, name="hard"),
           "15000000", "46", "2000", "01000000", "02000000", "0400", "68617264"),
    golden(33, m.Rlink(),
           "07000000", "47", "2100"),
    golden(34, m.Tmkdir(dfid=1, name="dir", mode=0o755, gid=0),
           "18000000", "48", "2200", "01000000", "0300", "646972", "ed010000",
           "00000000"),
    golden(35, m.Rmkdir(qid=QID),
           "14000000", "49", "2300", QID_HEX),
    golden(36, m.Trenameat(olddirfid=1, oldname="a", newdirfid=2, newname="bc"),
           "16000000", "4a", "2400", "01000000", "0100", "61", "02000000", "0200",
           "6263"),
    golden(37, m.Rrenameat(),
           "07000000", "4b", "2500"),
    golden(38, m.Tunlinkat(dirfid=1, name="d", flags=0x200),  # AT_REMOVEDIR
           "12000000", "4c", "2600", "01000000", "0100", "64", "00020000"),
    golden(39, m.Runlinkat(),
           "07000000", "4d", "2700"),
    golden(NOTAG, m.Tversion(msize=8192, version="9P2000.L"),
           "15000000", "64", "ffff", "00200000", "0800", "3950323030302e4c"),
    golden(NOTAG, m.Rversion(msize=8192, version="unknown"),
           "14000000", "65", "ffff", "00200000", "0700", "756e6b6e6f776e"),
    golden(40, m.Tauth(afid=1, uname="glenda", aname="", n_uname=NONUNAME),
           "19000000", "66", "2800", "01000000", "0600", "676c656e6461", "0000",
           "ffffffff"),
    golden(41, m.Rauth(aqid=Qid(type=0x08, version=0, path=1)),
           "14000000", "67", "2900", "08", "00000000", "0100000000000000"),
    golden(42, m.Tattach(fid=0, afid=NOFID, uname="", aname="ctl", n_uname=0),
           "1a000000", "68", "2a00", "00000000", "ffffffff", "0000", "0300", "63746c",
           "00000000"),
    golden(43, m.Rattach(qid=Qid(type=0x80, version=0, path=1)),
           "14000000", "69", "2b00", "80", "00000000", "0100000000000000"),
    golden(44, m.Rerror(ename="no \u00e9"),  # UTF-8 on the wire: é is c3 a9
           "0e000000", "6b", "2c00", "0500", "6e6f20c3a9"),
    golden(45, m.Tflush(oldtag=0x0102),
           "09000000", "6c", "2d00", "0201"),
    golden(45, m.Rflush(),
           "07000000", "6d", "2d00"),
    golden(46, m.Twalk(fid=1, newfid=2, wnames=("a", "bc")),
           "18000000", "6e", "2e00", "01000000", "02000000",
           "0200",  # nwname
           "0100", "61", "0200", "6263"),
    golden(47, m.Twalk(fid=1, newfid=2, wnames=()),  # a clone
           "11000000", "6e", "2f00", "01000000", "02000000", "0000"),
    golden(46, m.Rwalk(qids=(QID, Qid(type=0, version=1, path=2))),
           "23000000", "6f", "2e00", "0200", QID_HEX, "00", "01000000",
           "0200000000000000"),
    golden(47, m.Rwalk(qids=()),
           "09000000", "6f", "2f00", "0000"),
    golden(48, m.Topen(fid=1, mode=2),
           "0c000000", "70", "3000", "01000000", "02"),
    golden(49, m.Ropen(qid=QID, iounit=0),
           "18000000", "71", "3100", QID_HEX, "00000000"),
    golden(50, m.Tcreate(fid=1, name="f", perm=0x800001FF, mode=1),  # DMDIR|0777
           "13000000", "72", "3200", "01000000", "0100", "66", "ff010080", "01"),
    golden(51, m.Rcreate(qid=QID, iounit=4096),
           "18000000", "73", "3300", QID_HEX, "00100000"),
    golden(52, m.Tread(fid=1, offset=0x0102030405060708, count=65512),
           "17000000", "74", "3400", "01000000", "0807060504030201", "e8ff0000"),
    golden(53, m.Rread(data=b"hello"),
           "10000000", "75", "3500", "05000000", "68656c6c6f"),
    golden(54, m.Rread(data=b""),
           "0b000000", "75", "3600", "00000000"),
    golden(55, m.Twrite(fid=1, offset=2, data=b"\x00\xff"),
           "19000000", "76", "3700", "01000000", "0200000000000000", "02000000",
           "00ff"),
    golden(56, m.Rwrite(count=2),
           "0b000000", "77", "3800", "02000000"),
    golden(57, m.Tclunk(fid=1),
           "0b000000", "78", "3900", "01000000"),
    golden(58, m.Rclunk(),
           "07000000", "79", "3a00"),
    golden(59, m.Tremove(fid=1),
           "0b000000", "7a", "3b00", "01000000"),
    golden(60, m.Rremove(),
           "07000000", "7b", "3c00"),
    golden(61, m.Tstat(fid=1),
           "0b000000", "7c", "3d00", "01000000"),
    golden(62, m.Rstat(stat=b"\x01\x02\x03"),
           "0c000000", "7d", "3e00", "0300", "010203"),
    golden(63, m.Twstat(fid=1, stat=b"\xaa"),
           "0e000000", "7e", "3f00", "01000000", "0100", "aa"),
    golden(64, m.Rwstat(),
           "07000000", "7f", "4000"),
]

GOLDEN_IDS = [f"{type(g.msg).__name__}-{i}" for i, g in enumerate(GOLDEN)]


# --- golden frames ------------------------------------------------------------

def test_every_message_type_has_a_golden_frame() -> None:
    tested = {type(g.msg) for g in GOLDEN}
    assert tested == set(MESSAGE_TYPES.values())


def test_message_type_numbers_match_the_protocol_table() -> None:
    # The number is also in each golden frame; this names the culprit directly.
    assert {t: c.__name__ for t, c in MESSAGE_TYPES.items()} == {
        7: "Rlerror", 8: "Tstatfs", 9: "Rstatfs", 12: "Tlopen", 13: "Rlopen",
        14: "Tlcreate", 15: "Rlcreate", 16: "Tsymlink", 17: "Rsymlink",
        18: "Tmknod", 19: "Rmknod", 20: "Trename", 21: "Rrename",
        22: "Treadlink", 23: "Rreadlink", 24: "Tgetattr", 25: "Rgetattr",
        26: "Tsetattr", 27: "Rsetattr", 30: "Txattrwalk", 31: "Rxattrwalk",
        32: "Txattrcreate", 33: "Rxattrcreate", 40: "Treaddir", 41: "Rreaddir",
        50: "Tfsync", 51: "Rfsync", 52: "Tlock", 53: "Rlock", 54: "Tgetlock",
        55: "Rgetlock", 70: "Tlink", 71: "Rlink", 72: "Tmkdir", 73: "Rmkdir",
        74: "Trenameat", 75: "Rrenameat", 76: "Tunlinkat", 77: "Runlinkat",
        100: "Tversion", 101: "Rversion", 102: "Tauth", 103: "Rauth",
        104: "Tattach", 105: "Rattach", 107: "Rerror", 108: "Tflush",
        109: "Rflush", 110: "Twalk", 111: "Rwalk", 112: "Topen", 113: "Ropen",
        114: "Tcreate", 115: "Rcreate", 116: "Tread", 117: "Rread",
        118: "Twrite", 119: "Rwrite", 120: "Tclunk", 121: "Rclunk",
        122: "Tremove", 123: "Rremove", 124: "Tstat", 125: "Rstat",
        126: "Twstat", 127: "Rwstat",
    }


def test_golden_size_fields_are_consistent() -> None:
    # Guards the hand-written tables themselves: size, type, length.
    for g in GOLDEN:
        frame = g.frame
        size, msg_type, tag = struct.unpack_from("<IBH", frame)
        assert (size, msg_type, tag) == (len(frame), g.msg.type, g.tag), g


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_encode_matches_golden(case: Golden) -> None:
    assert encode(case.tag, case.msg).hex() == case.hex


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_decode_matches_golden(case: Golden) -> None:
    assert decode(case.frame) == (case.tag, case.msg)


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_decode_accepts_memoryview_and_bytearray(case: Golden) -> None:
    assert decode(memoryview(case.frame)) == (case.tag, case.msg)
    assert decode(memoryview(bytearray(case.frame))) == (case.tag, case.msg)


def test_decode_body_reads_only_its_window() -> None:
    frame = bytes.fromhex("0b000000" "78" "0100" "2a000000")  # Tclunk(42)
    padded = b"\xee" * 5 + frame + b"\xee" * 9
    assert decode_body(120, padded, 5 + 7, 5 + len(frame)) == m.Tclunk(fid=42)


def test_decode_body_of_an_unknown_type_raises_key_error() -> None:
    with pytest.raises(KeyError):
        decode_body(6, b"", 0, 0)


def test_rread_header_is_the_prefix_of_an_rread_frame() -> None:
    assert m.rread_header(0x3500, 5).hex() == "10000000" "75" "0035" "05000000"


def test_pack_dirent_matches_golden() -> None:
    assert m.pack_dirent(QID, 1, 4, "d").hex() == DIRENT_HEX


def test_strings_that_are_not_utf8_survive_a_round_trip() -> None:
    # Linux file names are bytes; surrogateescape carries them unchanged.
    frame = bytes.fromhex("0b000000" "17" "0100" "0200" "ff61")
    tag, msg = decode(frame)
    assert msg == m.Rreadlink(target="\udcffa")
    assert encode(tag, msg) == frame


def test_protocol_constants() -> None:
    assert (NOTAG, NOFID, NONUNAME) == (0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    assert (m.HEADER_SIZE, m.IOHDRSZ, m.READDIRHDRSZ) == (7, 24, 24)
    assert (m.VERSION_9P2000L, m.VERSION_UNKNOWN) == ("9P2000.L", "unknown")


def test_every_message_class_is_exported() -> None:
    for cls in MESSAGE_TYPES.values():
        assert cls.__name__ in m.__all__
        assert getattr(m, cls.__name__) is cls


def test_messages_are_frozen_values() -> None:
    msg = m.Tclunk(fid=1)
    with pytest.raises(AttributeError):
        msg.fid = 2  # type: ignore[misc]
    assert msg == m.Tclunk(fid=1)
    assert hash(msg) == hash(m.Tclunk(fid=1))
    assert not hasattr(msg, "__dict__")


# --- hypothesis round trip ----------------------------------------------------

def _names() -> st.SearchStrategy[str]:
    """Any text, plus the str forms of byte names that are not valid UTF-8."""
    return st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
    )


_QIDS = st.builds(Qid, st.integers(0, 0xFF), st.integers(0, 0xFFFFFFFF),
                  st.integers(0, 0xFFFFFFFFFFFFFFFF))

LETTER_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "b": st.integers(0, 0xFF),
    "h": st.integers(0, 0xFFFF),
    "i": st.integers(0, 0xFFFFFFFF),
    "q": st.integers(0, 0xFFFFFFFFFFFFFFFF),
    "t": st.integers(-(1 << 63), (1 << 63) - 1),
    "s": _names(),
    "Q": _QIDS,
    "D": st.binary(max_size=300),
    "S": st.binary(max_size=300),
    "W": st.lists(_names(), max_size=16).map(tuple),
    "X": st.lists(_QIDS, max_size=16).map(tuple),
}


def message_strategy(cls: type[Message]) -> st.SearchStrategy[Message]:
    """Messages of ``cls`` with every field drawn from its layout letter."""
    kwargs = {f.name: LETTER_STRATEGIES[letter]
              for f, letter in zip(fields(cls), cls._layout, strict=True)}  # type: ignore[arg-type]
    return st.builds(cls, **kwargs)


ANY_MESSAGE = st.sampled_from(sorted(MESSAGE_TYPES)).flatmap(
    lambda t: message_strategy(MESSAGE_TYPES[t]))


def test_times_before_1970_are_signed_on_the_wire() -> None:
    """Linux reads and writes the seconds of Rgetattr/Tsetattr times as s64."""
    msg = m.Tsetattr(1, 0x30, 0, 0, 0, 0, -14_182_940, 5, -1, 0)
    frame = encode(7, msg)
    assert decode(memoryview(bytearray(frame))) == (7, msg)
    atime_sec = frame[7 + 4 * 5 + 8:][:8]  # after the header, five u32 and the size
    assert atime_sec == (-14_182_940).to_bytes(8, "little", signed=True)


def test_layout_letters_are_all_known() -> None:
    for cls in MESSAGE_TYPES.values():
        assert set(cls._layout) <= set(LETTER_STRATEGIES), cls


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=lambda c: c.__name__)
@settings(deadline=None)  # a shared, busy machine: no timing limits
@given(data=st.data(), tag=st.integers(0, 0xFFFF))
def test_round_trip(cls: type[Message], data: st.DataObject, tag: int) -> None:
    msg = data.draw(message_strategy(cls))
    frame = encode(tag, msg)
    assert struct.unpack_from("<IBH", frame) == (len(frame), cls.type, tag)
    assert decode(frame) == (tag, msg)


# --- decoding errors ----------------------------------------------------------

def _with_size(frame: bytes, size: int) -> bytes:
    return struct.pack("<I", size) + frame[4:]


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_truncated_frames_raise_decode_error(case: Golden) -> None:
    frame = case.frame
    for length in range(len(frame)):
        cut = frame[:length]
        with pytest.raises(DecodeError):
            decode(cut)  # size field disagrees with the length
        if length >= 4:
            with pytest.raises(DecodeError):
                decode(_with_size(cut, length))  # a consistent but short body


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_trailing_garbage_raises_decode_error(case: Golden) -> None:
    for extra in (b"\x00", b"\xff" * 13):
        longer = case.frame + extra
        with pytest.raises(DecodeError):
            decode(longer)  # size field disagrees with the length
        with pytest.raises(DecodeError):
            decode(_with_size(longer, len(longer)))


@pytest.mark.parametrize("frame_hex", [
    ("15000000" "64" "ffff" "00200000" "0900" "3950323030302e4c"),  # version len 9 of 8
    ("15000000" "64" "ffff" "00200000" "ffff" "3950323030302e4c"),  # version len 65535
    ("18000000" "6e" "0100" "01000000" "02000000" "0200" "0100" "61" "0300" "6263"),  # wname
    ("18000000" "6e" "0100" "01000000" "02000000" "0300" "0100" "61" "0200" "6263"),  # nwname
    ("10000000" "75" "0100" "06000000" "68656c6c6f"),  # Rread count 6 of 5
    ("10000000" "75" "0100" "ffffffff" "68656c6c6f"),  # Rread count 4 GiB
    ("0e000000" "7e" "0100" "01000000" "0200" "aa"),  # Twstat n 2 of 1
    ("09000000" "6f" "0100" "0100"),  # Rwalk promises a qid it lacks
])
def test_lengths_running_past_the_end_raise_decode_error(frame_hex: str) -> None:
    with pytest.raises(DecodeError):
        decode(bytes.fromhex(frame_hex))


@pytest.mark.parametrize("msg_type", [0, 1, 6, 10, 11, 28, 29, 106, 128, 200, 255])
def test_unknown_type_raises_decode_error(msg_type: int) -> None:
    assert msg_type not in MESSAGE_TYPES
    with pytest.raises(DecodeError):
        decode(struct.pack("<IBH", 11, msg_type, 1) + b"\x00" * 4)


def test_short_frames_raise_decode_error() -> None:
    for length in range(7):
        with pytest.raises(DecodeError):
            decode(b"\x07\x00\x00\x00\x6d\x01\x00"[:length])


@settings(deadline=None)  # a shared, busy machine: no timing limits
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(frame: bytes) -> None:
    try:
        decode(frame)
    except DecodeError:
        pass


@settings(deadline=None)  # a shared, busy machine: no timing limits
@given(msg_type=st.sampled_from(sorted(MESSAGE_TYPES)), tag=st.integers(0, 0xFFFF),
       body=st.binary(max_size=200))
def test_random_bodies_raise_only_decode_error(msg_type: int, tag: int, body: bytes) -> None:
    # A consistent header gets past the size check, so the body decoders run.
    frame = struct.pack("<IBH", 7 + len(body), msg_type, tag) + body
    try:
        got_tag, msg = decode(frame)
    except DecodeError:
        return
    assert got_tag == tag
    assert type(msg) is MESSAGE_TYPES[msg_type]


@settings(deadline=None)  # a shared, busy machine: no timing limits
@given(msg=ANY_MESSAGE, data=st.data())
def test_corrupted_frames_raise_only_decode_error(msg: Message, data: st.DataObject) -> None:
    # Flip bytes in a valid frame: lengths inside the body go wrong in many ways.
    frame = bytearray(encode(1, msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(4, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(frame))
    except DecodeError:
        pass


# --- encoding errors ----------------------------------------------------------

_LIMITS = {"b": 0xFF, "h": 0xFFFF, "i": 0xFFFFFFFF, "q": 0xFFFFFFFFFFFFFFFF}


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_integers_out_of_range_raise_encode_error(case: Golden) -> None:
    for f, letter in zip(fields(case.msg), case.msg._layout, strict=True):  # type: ignore[arg-type]
        if letter in _LIMITS:
            for bad in (-1, _LIMITS[letter] + 1):
                with pytest.raises(EncodeError):
                    encode(1, replace(case.msg, **{f.name: bad}))  # type: ignore[type-var]
        if letter == "Q":
            with pytest.raises(EncodeError):
                encode(1, replace(case.msg, **{f.name: Qid(0x100, 0, 0)}))  # type: ignore[type-var]


@pytest.mark.parametrize("tag", [-1, 0x10000])
def test_tag_out_of_range_raises_encode_error(tag: int) -> None:
    with pytest.raises(EncodeError):
        encode(tag, m.Tclunk(fid=1))


def test_overlong_fields_raise_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode(1, m.Rreadlink(target="x" * 0x10000))
    with pytest.raises(EncodeError):
        encode(1, m.Rreadlink(target="\u00e9" * 0x8000))  # 65536 bytes in UTF-8
    with pytest.raises(EncodeError):
        encode(1, m.Rstat(stat=b"\x00" * 0x10000))
    assert len(encode(1, m.Rreadlink(target="x" * 0xFFFF))) == 7 + 2 + 0xFFFF


def test_unencodable_string_raises_encode_error() -> None:
    # A lone surrogate outside surrogateescape's U+DC80..U+DCFF cannot be UTF-8.
    with pytest.raises(EncodeError):
        encode(1, m.Rerror(ename="\ud800"))


@settings(deadline=None)  # a shared, busy machine: no timing limits
@given(msg_type=st.sampled_from(sorted(MESSAGE_TYPES)), body=st.binary(max_size=100),
       before=st.binary(max_size=20), after=st.binary(min_size=1, max_size=40))
def test_decode_body_in_a_larger_buffer_raises_only_decode_error(
        msg_type: int, body: bytes, before: bytes, after: bytes) -> None:
    # A server may decode in place from its receive buffer, next frame behind.
    buf = before + body + after
    try:
        msg = decode_body(msg_type, buf, len(before), len(before) + len(body))
    except DecodeError:
        return
    assert decode(encode(0, msg))[1] == msg
    assert encode(0, msg)[7:] == body
