"""Large frames in pieces (ninep.wire.framing.LARGE_FRAME): gathered and joined once."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from ninep.wire.framing import LARGE_FRAME, Framer

MSIZE = 1 << 20


def _frame(size: int, tag: int) -> bytes:
    body = bytes((tag + i) % 251 for i in range(size - 7))
    return struct.pack("<IBH", size, 118, tag) + body


STREAM_FRAMES = [_frame(7 + 4, 1), _frame(MSIZE, 2), _frame(LARGE_FRAME, 3), _frame(300, 4),
                 _frame(LARGE_FRAME + 1, 5), _frame(MSIZE - 24, 6)]
STREAM = b"".join(STREAM_FRAMES)


@settings(deadline=None, max_examples=60)  # a shared, busy machine: no timing limits
@given(st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_large_frames_split_anywhere_come_out_whole(cuts: list[int]) -> None:
    framer = Framer(MSIZE)
    edges = [0, *sorted(cuts), len(STREAM)]
    out: list[bytes] = []
    for a, b in itertools.pairwise(edges):
        out += framer.feed(STREAM[a:b])
    assert out == STREAM_FRAMES
    assert framer.buffered == 0


def test_a_large_frame_in_pieces_is_not_gathered_in_a_growing_buffer() -> None:
    frame = _frame(MSIZE, 9)
    framer = Framer(MSIZE)
    piece = 256 * 1024
    got: list[bytes] = []
    for offset in range(0, MSIZE, piece):
        got += framer.feed(frame[offset:offset + piece])
        # the pieces are kept as they came; the reassembly buffer holds none of them
        assert len(framer._buf) == 0
        assert framer.buffered == (offset + piece) % MSIZE
    assert got == [frame]


def test_pieces_report_what_is_buffered_and_the_next_frame_follows() -> None:
    framer = Framer(MSIZE)
    big, small = _frame(LARGE_FRAME * 2, 1), _frame(20, 2)
    assert framer.feed(big[:100]) == []
    assert framer.buffered == 100
    assert framer.feed(big[100:-1]) == []
    assert framer.buffered == len(big) - 1
    assert framer.feed(big[-1:] + small + small[:3]) == [big, small]
    assert framer.buffered == 3
