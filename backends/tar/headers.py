"""Tar header parsing: ustar, GNU and PAX headers folded into one Member per archive entry.

The parser reads blocks through a ``read(offset, size)`` callable, so every
member keeps the byte offset of its first header and of its data: errors name
the offset, and file contents are later read in place.
"""

from __future__ import annotations

import base64
import struct
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .fields import BLOCK, TarFormatError, padded, parse_number
from .sparse import SparseMap, gnu_old_map, pax_v0_map, pax_v1_map

__all__ = ["Member", "MemberReader", "ReadAt", "parse_pax_records",
           "parse_pax_time"]

ReadAt = Callable[[int, int], bytes]  # (offset, size) -> up to size bytes; short only at EOF

REGULAR_TYPES = frozenset(b"0\x007")  # contiguous files ('7') are regular files on Linux
NO_DATA_TYPES = frozenset(b"123456")  # links, devices, directories, FIFOs: size is not data
LONGNAME, LONGLINK, PAX_LOCAL, PAX_GLOBAL = ord("L"), ord("K"), ord("x"), ord("g")
GNU_SPARSE, GNU_DUMPDIR, GNU_VOLUME, GNU_MULTIVOL = ord("S"), ord("D"), ord("V"), ord("M")
_DEVICE_TYPES = frozenset(b"34")
SKIPPED_TYPES = frozenset((GNU_VOLUME, GNU_MULTIVOL, ord("N")))  # labels, continuations
_MAX_EXTENSION = 16 << 20  # a PAX header or GNU long name larger than this is damage
_ZERO_BLOCK = bytes(BLOCK)


@dataclass(slots=True)
class Member:
    """One archive entry with its extension headers applied."""

    offset: int  # of the first header block (extension headers included)
    path: str
    typeflag: int  # the header's type byte, as an int ('0' is 48)
    mode: int  # permission bits from the header
    uid: int
    gid: int
    size: int  # the logical size (a sparse file's real size)
    mtime_ns: int
    atime_ns: int | None
    ctime_ns: int | None
    linkname: str
    devmajor: int
    devminor: int
    data_offset: int  # where the stored bytes begin
    stored: int  # bytes stored in the archive (what ``size`` says in the header)
    sparse: SparseMap | None = None
    xattrs: dict[str, bytes] | None = field(default=None)


def parse_pax_time(value: bytes, offset: int, key: str) -> int:
    """A PAX time ("1600000000.123456789", maybe negative) in nanoseconds, exactly."""
    text = value.decode("ascii", "replace")
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise TarFormatError(offset, f"bad PAX record {key}={text!r}")
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if negative else ns


def parse_pax_records(data: bytes, offset: int) -> list[tuple[str, bytes]]:
    """The "LEN KEY=VALUE\\n" records of a PAX header, in order (keys may repeat)."""
    records: list[tuple[str, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] == 0:  # NUL padding after the last record
            break
        space = data.find(b" ", pos, pos + 20)
        length_text = data[pos:space] if space >= 0 else b""
        if not length_text.isdigit():
            raise TarFormatError(offset, f"bad PAX record (no length) at record byte {pos}")
        length = int(length_text)
        stop = pos + length
        if length <= space - pos + 1 or stop > end or data[stop - 1] != 0x0A:
            raise TarFormatError(offset, f"bad PAX record (length {length}) at record byte {pos}")
        key, eq, value = data[space + 1:stop - 1].partition(b"=")
        if not eq or not key:
            raise TarFormatError(offset, f"bad PAX record (no key=value) at record byte {pos}")
        records.append((key.decode("utf-8", "surrogateescape"), value))
        pos = stop
    return records


def _checksum_ok(block: bytes) -> bool:
    stored = block[148:156].split(b"\0", 1)[0].strip(b" ")
    try:
        expected = int(stored, 8)
    except ValueError:
        return False
    unsigned = _byte_sum(block) - sum(block[148:156]) + 8 * 32
    if unsigned == expected:
        return True
    # Some old tars summed signed chars; GNU tar accepts either.
    signed = unsigned - 256 * sum(1 for b in block if b & 0x80) + 256 * sum(
        1 for b in block[148:156] if b & 0x80)
    return signed == expected


def _byte_sum(block: bytes) -> int:
    """The sum of a block's 512 bytes, ~6x faster than sum(): adler32's low half is 1 + the
    byte sum mod 65521, and 256 bytes sum to at most 65280, so each half's sum is exact."""
    view = memoryview(block)
    return (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2


def _cstring(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class MemberReader:
    """Walks the archive's headers; ``end_marker`` tells whether a zero block ended it."""

    def __init__(self, read: ReadAt, length: int) -> None:
        self.read, self.length = read, length
        self.global_pax: dict[str, bytes] = {}
        self.end_marker = False

    def block(self, offset: int) -> bytes:
        block = self.read(offset, BLOCK)
        if len(block) < BLOCK:
            raise TarFormatError(offset, f"truncated header ({len(block)} of 512 bytes)")
        return block

    def payload(self, offset: int, size: int, what: str) -> bytes:
        if size > _MAX_EXTENSION:
            raise TarFormatError(offset, f"{what} of {size} bytes is implausibly large")
        data = self.read(offset + BLOCK, size)
        if len(data) < size or offset + BLOCK + padded(size) > self.length:
            raise TarFormatError(offset, f"truncated {what}")
        return data

    def members(self) -> Iterator[Member]:
        offset = 0
        while offset < self.length:
            member, offset = self.next_member(offset)
            if member is None:
                return
            if member.typeflag not in SKIPPED_TYPES:
                yield member

    def next_member(self, offset: int) -> tuple[Member | None, int]:
        """The member whose first header is at ``offset``, and where the next one starts."""
        start = offset
        local: list[tuple[str, bytes]] = []
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            if offset >= self.length:
                if offset == start:
                    return None, offset
                raise TarFormatError(start, "archive ends after extension headers")
            block = self.block(offset)
            if block == _ZERO_BLOCK:
                if offset != start:
                    raise TarFormatError(start, "archive ends after extension headers")
                self.end_marker = True
                return None, offset
            if not _checksum_ok(block):
                raise TarFormatError(offset, "bad header checksum")
            kind = block[156]
            if kind in (LONGNAME, LONGLINK, PAX_LOCAL, PAX_GLOBAL):
                size = parse_number(block[124:136], offset, "size")
                data = self.payload(offset, size, f"extension header {chr(kind)!r}")
                if kind == LONGNAME:
                    long_name = _cstring(data)
                elif kind == LONGLINK:
                    long_link = _cstring(data)
                elif kind == PAX_LOCAL:
                    local += parse_pax_records(data, offset)
                else:
                    self.apply_global(parse_pax_records(data, offset))
                offset += BLOCK + padded(size)
                continue
            return self.finish(start, offset, block, local, long_name, long_link)

    def apply_global(self, records: list[tuple[str, bytes]]) -> None:
        for key, value in records:
            if value:
                self.global_pax[key] = value
            else:  # an empty value removes the global setting (POSIX pax)
                self.global_pax.pop(key, None)

    def finish(self, start: int, offset: int, block: bytes, local: list[tuple[str, bytes]],
               long_name: bytes | None, long_link: bytes | None) -> tuple[Member, int]:
        pax = dict(self.global_pax)
        for key, value in local:  # later records win; an empty value cancels a global one
            if value:
                pax[key] = value
            else:
                pax.pop(key, None)
        member = _decode_header(block, offset, start, pax, long_name, long_link)
        data_offset = offset + BLOCK
        if member.typeflag == GNU_SPARSE:
            data_offset = self.gnu_sparse(member, block, offset)
        member.data_offset = data_offset
        stored = member.stored if member.typeflag not in NO_DATA_TYPES else 0
        if "GNU.sparse.major" in pax or "GNU.sparse.size" in pax or "GNU.sparse.map" in pax:
            self.pax_sparse(member, pax, local, stored)
            stored = member.stored + (member.data_offset - data_offset)
        if member.sparse is not None and member.sparse.stored > member.stored:
            raise TarFormatError(start, f"bad sparse map: it needs {member.sparse.stored} bytes, "
                                        f"the member stores {member.stored}")
        end = data_offset + padded(stored)
        if end > self.length:
            raise TarFormatError(start, f"truncated member {member.path!r} ({stored} bytes of "
                                        f"data from offset {data_offset}, archive ends at "
                                        f"{self.length})")
        if member.typeflag in NO_DATA_TYPES:
            member.stored = 0
        return member, end

    def gnu_sparse(self, member: Member, block: bytes, offset: int) -> int:
        """Old GNU sparse ('S'): map in the header, continued in extension blocks."""
        extensions: list[bytes] = []
        extended, pos = block[482], offset + BLOCK
        while extended:
            ext = self.block(pos)
            extensions.append(ext)
            extended, pos = ext[504], pos + BLOCK
        real = parse_number(block[483:495], offset, "realsize")
        member.sparse = gnu_old_map(block, extensions, real, offset)
        member.size = real
        return pos

    def pax_sparse(self, member: Member, pax: dict[str, bytes],
                   local: list[tuple[str, bytes]], stored: int) -> None:
        """PAX sparse 0.0, 0.1 (map in records) or 1.0 (map at the start of the data)."""
        name = pax.get("GNU.sparse.name")
        if name is not None:
            member.path = _text(name)
        if pax.get("GNU.sparse.major") == b"1":
            real = pax.get("GNU.sparse.realsize", b"0")
            member.sparse, map_size = pax_v1_map(
                lambda off, n: self.read(member.data_offset + off, n), stored,
                _int_record(real, member.offset, "GNU.sparse.realsize"), member.data_offset)
            member.data_offset += map_size
            member.stored = stored - map_size
        else:
            real = pax.get("GNU.sparse.size", b"0")
            member.sparse = pax_v0_map(pax, local, _int_record(real, member.offset,
                                                               "GNU.sparse.size"),
                                       member.offset)
        member.size = member.sparse.size
        member.typeflag = ord("0")


def _int_record(value: bytes, offset: int, key: str) -> int:
    if not value.isdigit():
        raise TarFormatError(offset, f"bad PAX record {key}={value!r}")
    return int(value)


# name mode uid gid size mtime chksum typeflag linkname magic version uname gname
# devmajor devminor prefix (ustar; GNU keeps atime, ctime, sparse slots there)
_HEADER = struct.Struct("100s8s8s8s12s12s8sB100s6s2s32s32s8s8s155s12x")


def _decode_header(block: bytes, offset: int, start: int, pax: dict[str, bytes],
                   long_name: bytes | None, long_link: bytes | None) -> Member:
    (name, mode, uid, gid, size, mtime, _, kind, link, magic, version, _, _, major_field,
     minor_field, prefix) = _HEADER.unpack(block)
    name = name.split(b"\0", 1)[0]
    if magic == b"ustar\0" and prefix[0]:  # POSIX ustar: a prefix for long paths
        name = prefix.split(b"\0", 1)[0] + b"/" + name
    if long_name is not None:
        name = long_name
    link = long_link if long_link is not None else link.split(b"\0", 1)[0]
    if kind == 0 and name.endswith(b"/"):  # V7 tars mark directories with a slash
        kind = ord("5")
    atime_ns = ctime_ns = None
    if magic == b"ustar " and version == b" \0":  # GNU: atime/ctime when recorded
        atime = parse_number(prefix[0:12], offset, "atime")
        ctime = parse_number(prefix[12:24], offset, "ctime")
        atime_ns = atime * 1_000_000_000 if atime else None
        ctime_ns = ctime * 1_000_000_000 if ctime else None
    major = minor = 0
    if kind in _DEVICE_TYPES and magic[:5] == b"ustar":
        major = parse_number(major_field, offset, "devmajor")
        minor = parse_number(minor_field, offset, "devminor")
    member = Member(  # positional: this runs once per member of archives of 10^5 members
        start, name.decode("utf-8", "surrogateescape"), kind,
        parse_number(mode, offset, "mode") & 0o7777, parse_number(uid, offset, "uid"),
        parse_number(gid, offset, "gid"), 0,
        parse_number(mtime, offset, "mtime") * 1_000_000_000, atime_ns, ctime_ns,
        link.decode("utf-8", "surrogateescape"), major, minor, offset + BLOCK,
        parse_number(size, offset, "size"))
    if pax:
        _apply_pax(member, pax, start)
    member.size = member.stored
    return member


def _apply_pax(member: Member, pax: dict[str, bytes], offset: int) -> None:
    """PAX records override the header fields (POSIX pax, GNU tar and star keywords)."""
    for key, value in pax.items():
        if key == "path":
            member.path = _text(value)
        elif key == "linkpath":
            member.linkname = _text(value)
        elif key in _PAX_INTS:
            setattr(member, _PAX_INTS[key], _int_record(value, offset, key))
        elif key in ("mtime", "atime", "ctime"):
            setattr(member, f"{key}_ns", parse_pax_time(value, offset, key))
        elif key.startswith("SCHILY.xattr."):
            _add_xattr(member, key[len("SCHILY.xattr."):], value)
        elif key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
            try:
                _add_xattr(member, name, base64.b64decode(value + b"=" * (-len(value) % 4)))
            except ValueError:
                raise TarFormatError(offset, f"bad PAX record {key}") from None


_PAX_INTS = {"size": "stored", "uid": "uid", "gid": "gid",
             "SCHILY.devmajor": "devmajor", "SCHILY.devminor": "devminor"}


def _add_xattr(member: Member, name: str, value: bytes) -> None:
    if member.xattrs is None:
        member.xattrs = {}
    member.xattrs[name] = value
