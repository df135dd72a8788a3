"""The tar parser's pieces on their own: numeric fields, PAX records and times, sparse maps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ninep.backends.tar.fields import TarFormatError, parse_number
from ninep.backends.tar.headers import parse_pax_records, parse_pax_time
from ninep.backends.tar.sparse import SparseMap, pax_v1_map


def test_numeric_fields() -> None:
    assert parse_number(b"0000644\0", 0, "mode") == 0o644
    assert parse_number(b"   644 \0", 0, "mode") == 0o644
    assert parse_number(b"\0\0\0\0\0\0\0\0", 0, "mode") == 0
    assert parse_number(b"0000644\0junk", 0, "mode") == 0o644  # after the NUL: ignored
    assert parse_number(b"\x80" + (5).to_bytes(11, "big"), 0, "size") == 5  # base-256
    assert parse_number(b"\xff" * 12, 0, "mtime") == -1
    with pytest.raises(TarFormatError, match=r"bad numeric field uid .* at byte offset 1536"):
        parse_number(b"00009x1\0", 1536, "uid")


def test_pax_times_are_exact_nanoseconds() -> None:
    assert parse_pax_time(b"1600000000.123456789", 0, "mtime") == 1_600_000_000_123_456_789
    assert parse_pax_time(b"1600000000.1234567891", 0, "mtime") == 1_600_000_000_123_456_789
    assert parse_pax_time(b"12", 0, "mtime") == 12_000_000_000
    assert parse_pax_time(b"-1.5", 0, "atime") == -1_500_000_000
    with pytest.raises(TarFormatError, match="bad PAX record mtime"):
        parse_pax_time(b"1e9", 0, "mtime")


def _record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text("abcxyz.", min_size=1, max_size=20),
                          st.binary(max_size=300)), max_size=8))
def test_pax_records_round_trip(records: list[tuple[str, bytes]]) -> None:
    data = b"".join(_record(k.encode(), v) for k, v in records)
    assert parse_pax_records(data + bytes(100), 0) == records


@pytest.mark.parametrize("data", [b"12 path=ab\n", b"x path=a\n", b"9 nokey\n", b"7 =ab\n",
                                  b"30 path=short\n"])
def test_bad_pax_records(data: bytes) -> None:
    with pytest.raises(TarFormatError, match="bad PAX record"):
        parse_pax_records(data, 4096)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 40)), max_size=10),
       st.integers(0, 60), st.integers(0, 200), st.integers(0, 200))
def test_sparse_pieces_match_a_flat_model(gaps: list[tuple[int, int]], tail: int,
                                          offset: int, size: int) -> None:
    segments, pos = [], 0
    for gap, length in gaps:
        segments.append((pos + gap, length))
        pos += gap + length
    total = pos + tail
    sparse = SparseMap(segments, total, 0)
    stored = bytes(range(1, 256)) * 4
    flat = bytearray(total)
    for (start, length), physical in zip([s for s in segments if s[1]], sparse.physical,
                                         strict=True):
        flat[start:start + length] = stored[physical:physical + length]
    out = bytearray()
    expect_pos = offset
    for start, length, where in sparse.pieces(offset, size):
        assert start == expect_pos and length > 0
        out += bytes(length) if where < 0 else stored[where:where + length]
        expect_pos += length
    assert bytes(out) == bytes(flat[offset:offset + size])


def test_sparse_map_rejects_overlaps_and_overruns() -> None:
    with pytest.raises(TarFormatError, match="bad sparse map"):
        SparseMap([(0, 10), (5, 10)], 100, 0)
    with pytest.raises(TarFormatError, match="bad sparse map"):
        SparseMap([(95, 10)], 100, 0)


def test_pax_v1_map_in_the_data() -> None:
    text = b"2\n0\n5\n100\n3\n"
    data = text + bytes(512 - len(text)) + b"hello" + b"abc"
    sparse, used = pax_v1_map(lambda off, n: data[off:off + n], len(data), 200, 0)
    assert used == 512 and sparse.offsets == [0, 100] and sparse.lengths == [5, 3]
    with pytest.raises(TarFormatError, match="truncated sparse map"):
        pax_v1_map(lambda off, n: data[:5][off:off + n], 5, 200, 0)
    with pytest.raises(TarFormatError, match="bad sparse map"):
        pax_v1_map(lambda off, n: (b"2\nx\n" + bytes(508))[off:off + n], 512, 200, 0)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=512, max_size=512))
def test_fast_byte_sum_is_exact(block: bytes) -> None:
    from ninep.backends.tar.headers import _byte_sum

    assert _byte_sum(block) == sum(block)
    assert _byte_sum(b"\xff" * 512) == 255 * 512
