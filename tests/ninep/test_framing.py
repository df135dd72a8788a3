"""Tests for ninep.wire.framing: reassembly at any split, and size-field checks."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ninep.wire.framing import TVERSION_MAX, Framer, FrameTooLarge
from ninep.wire.messages import DecodeError

# Hand-written frames of assorted sizes (bodies need not be valid messages:
# the framer only reads the size field).
FRAMES = [
    bytes.fromhex("07000000" "6d" "0100"),  # the smallest frame, Rflush
    bytes.fromhex("15000000" "64" "ffff" "00200000" "0800" "3950323030302e4c"),  # Tversion
    bytes.fromhex("0b000000" "78" "0200" "01000000"),  # Tclunk
    struct.pack("<IBH", 7 + 4 + 300, 117, 3) + struct.pack("<I", 300) + bytes(range(256))
    + bytes(44),  # Rread of 300 bytes
    bytes.fromhex("07000000" "79" "0400"),  # Rclunk
]
STREAM = b"".join(FRAMES)
MSIZE = 8192


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    """Every frame the framer returns for ``chunks``, in order."""
    out: list[bytes] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the (sorted, possibly repeated) offsets ``cuts``."""
    edges = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def test_whole_stream_in_one_chunk() -> None:
    framer = Framer(MSIZE)
    assert framer.feed(STREAM) == FRAMES
    assert framer.buffered == 0


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        framer = Framer(MSIZE)
        assert feed_all(framer, [STREAM[:cut], STREAM[cut:]]) == FRAMES, cut
        assert framer.buffered == 0


def test_split_at_every_pair_of_boundaries_in_the_small_frames() -> None:
    small = b"".join(f for f in FRAMES if len(f) < 64)
    frames = [f for f in FRAMES if len(f) < 64]
    for a in range(len(small) + 1):
        for b in range(a, len(small) + 1):
            assert feed_all(Framer(MSIZE), split_at(small, [a, b])) == frames, (a, b)


def test_byte_by_byte() -> None:
    framer = Framer(MSIZE)
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out += framer.feed(STREAM[i:i + 1])
        assert framer.buffered == i + 1 - sum(map(len, out))
    assert out == FRAMES


@settings(deadline=None)  # a shared, busy machine: no timing limits
@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_random_splits(cuts: list[int]) -> None:
    assert feed_all(Framer(MSIZE), split_at(STREAM, cuts)) == FRAMES


@settings(deadline=None)  # a shared, busy machine: no timing limits
@given(st.lists(st.binary(min_size=0, max_size=200), max_size=8), st.data())
def test_random_frames_random_splits(bodies: list[bytes], data: st.DataObject) -> None:
    frames = [struct.pack("<IBH", 7 + len(b), 100, 0) + b for b in bodies]
    stream = b"".join(frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert feed_all(Framer(MSIZE), split_at(stream, cuts)) == frames


def test_accepts_bytearray_and_memoryview() -> None:
    framer = Framer(MSIZE)
    assert framer.feed(bytearray(STREAM[:5])) == []
    assert framer.feed(memoryview(STREAM)[5:]) == FRAMES


def test_frames_are_independent_bytes() -> None:
    source = bytearray(STREAM)
    frames = Framer(MSIZE).feed(source)
    source[:] = bytes(len(source))
    assert frames == FRAMES
    assert all(type(f) is bytes for f in frames)


def test_partial_frame_is_kept_across_calls() -> None:
    framer = Framer(MSIZE)
    assert framer.feed(STREAM[:len(FRAMES[0]) + 3]) == FRAMES[:1]
    assert framer.buffered == 3


def test_frame_of_exactly_msize_is_accepted() -> None:
    frame = struct.pack("<IBH", 64, 117, 1) + bytes(57)
    assert Framer(64).feed(frame) == [frame]


def test_oversize_frame_is_refused_once_its_size_field_has_arrived() -> None:
    header = struct.pack("<I", MSIZE + 1)
    framer = Framer(MSIZE)
    assert framer.feed(header[:3]) == []  # not yet known
    with pytest.raises(FrameTooLarge):
        framer.feed(header[3:])  # no type, tag or body needed


def test_oversize_frame_behind_a_good_one_is_refused_before_its_body() -> None:
    with pytest.raises(FrameTooLarge):
        Framer(MSIZE).feed(FRAMES[0] + struct.pack("<I", 0xFFFFFFFF))


def test_frame_too_large_is_a_decode_error() -> None:
    assert issubclass(FrameTooLarge, DecodeError)


@pytest.mark.parametrize("size", range(7))
def test_size_below_a_header_raises_decode_error(size: int) -> None:
    framer = Framer(MSIZE)
    with pytest.raises(DecodeError) as info:
        framer.feed(struct.pack("<I", size))
    assert not isinstance(info.value, FrameTooLarge)


def test_msize_can_shrink_after_version_negotiation() -> None:
    framer = Framer(MSIZE)
    assert framer.feed(FRAMES[3]) == [FRAMES[3]]
    framer.msize = 64
    assert framer.feed(FRAMES[0]) == [FRAMES[0]]
    with pytest.raises(FrameTooLarge):
        framer.feed(FRAMES[3])


@settings(deadline=None)  # a shared, busy machine: no timing limits
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_random_bytes_raise_only_decode_error(data: bytes, cuts: list[int]) -> None:
    framer = Framer(256)
    try:
        for frame in feed_all(framer, split_at(data, [c for c in cuts if c <= len(data)])):
            assert 7 <= len(frame) <= 256
            assert struct.unpack_from("<I", frame)[0] == len(frame)
    except DecodeError:
        pass


def test_before_tversion_only_a_frame_a_tversion_can_be_is_accepted() -> None:
    tversion = struct.pack("<IBHIH", TVERSION_MAX, 100, 0xFFFF, 8192, TVERSION_MAX - 13)
    tversion += b"9P2000.L".ljust(TVERSION_MAX - 13, b"x")
    assert Framer(TVERSION_MAX).feed(tversion) == [tversion]
    with pytest.raises(FrameTooLarge):  # refused from the size field alone
        Framer(TVERSION_MAX).feed(struct.pack("<I", TVERSION_MAX + 1))
