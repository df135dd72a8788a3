"""The wire's fast decoders and packers (ninep/wire/fast.py) and the qid rule (qid.py)
against the generic codec: the transport's raw paths must read and write the same bytes."""

from __future__ import annotations

import stat

import pytest

from ninep.clients.fid import GetattrFields
from ninep.wire import messages as m
from ninep.wire.codec import fixed_names, fixed_struct
from ninep.wire.constants import DT_DIR, DT_FIFO, DT_LNK, DT_REG, QTAUTH, QTDIR, QTFILE, QTSYMLINK
from ninep.wire.fast import (
    TCLUNK_SIZE,
    TFLUSH_SIZE,
    TGETATTR_SIZE,
    TREAD_SIZE,
    decode_short_twalk,
    rclunk_frame,
    rwalk_body,
    unpack_header,
    unpack_tclunk,
    unpack_tflush,
    unpack_tgetattr,
    unpack_tread,
)
from ninep.wire.message_types import FIXED_LETTERS
from ninep.wire.qid import QID, Qid, pack_qid, qid_type


def test_fixed_size_decoders_read_what_the_codec_wrote() -> None:
    cases = [
        (m.Tread(0xDEADBEEF, 2**63 + 5, 65536), TREAD_SIZE, unpack_tread),
        (m.Tgetattr(7, 0x3FFF), TGETATTR_SIZE, unpack_tgetattr),
        (m.Tclunk(2**32 - 2), TCLUNK_SIZE, unpack_tclunk),
        (m.Tflush(0xFFFE), TFLUSH_SIZE, unpack_tflush),
    ]
    for msg, size, unpack in cases:
        frame = m.encode(0x1234, msg)
        assert len(frame) == size
        assert unpack_header(frame) == (size, msg.type, 0x1234)
        fields = msg.__slots__  # type: ignore[attr-defined]
        assert unpack(frame) == tuple(getattr(msg, f) for f in fields)


@pytest.mark.parametrize("names", [(), ("a",), ("é\udcff",), ("x" * 300,)])
def test_short_twalk_decodes_as_the_codec(names: tuple[str, ...]) -> None:
    frame = m.encode(3, m.Twalk(1, 2, names))
    assert decode_short_twalk(frame, len(frame)) == (1, 2, names)
    assert m.decode(frame)[1] == m.Twalk(1, 2, names)


def test_other_twalks_go_to_the_generic_decoder() -> None:
    two = m.encode(3, m.Twalk(1, 2, ("a", "b")))
    assert decode_short_twalk(two, len(two)) is None
    one = m.encode(3, m.Twalk(1, 2, ("abc",)))
    # a name that overruns the frame, a frame longer than its name, a cut header
    assert decode_short_twalk(one[:-1], len(one) - 1) is None
    assert decode_short_twalk(one + b"z", len(one) + 1) is None
    clone = m.encode(3, m.Twalk(1, 2, ()))
    assert decode_short_twalk(clone[:-1], len(clone) - 1) is None
    assert decode_short_twalk(clone + b"\0", len(clone) + 1) is None


def test_reply_packers_equal_the_generic_encoding() -> None:
    assert rclunk_frame(0xBEEF) == m.encode(0xBEEF, m.Rclunk())
    qids = [Qid(QTDIR, 0, 5), Qid(QTFILE, 0, 2**63)]
    packed = [QID.pack(q.type, q.version, q.path) for q in qids]
    generic = m.encode(9, m.Rwalk(tuple(qids)))
    assert m.encode(9, m.Encoded(m.Rwalk.type, rwalk_body(packed))) == generic


def _old_rule(mode: int) -> int:
    """What vfs/namespace.py decided before the rule moved to the wire."""
    if stat.S_ISDIR(mode):
        return QTDIR
    if stat.S_ISLNK(mode):
        return QTSYMLINK
    return QTFILE


def test_one_qid_rule_for_modes_and_directory_entries() -> None:
    for fmt in range(16):
        mode = (fmt << 12) | 0o755
        assert qid_type(mode) == _old_rule(mode)
        assert Qid.of(mode, 42) == Qid(_old_rule(mode), 0, 42)
        assert pack_qid(mode, 42) == QID.pack(_old_rule(mode), 0, 42)
    # a DT_* type is the format bits of a mode shifted down (Linux's fs_umode_to_dtype)
    for dtype, mode in ((DT_DIR, stat.S_IFDIR), (DT_LNK, stat.S_IFLNK), (DT_REG, stat.S_IFREG),
                        (DT_FIFO, stat.S_IFIFO)):
        assert Qid.of(dtype << 12, 7) == Qid.of(mode, 7)
    assert Qid.auth(3) == Qid(QTAUTH, 0, 3)


def test_fixed_names_name_every_value_of_the_fixed_struct() -> None:
    fixed = [cls for cls in m.MESSAGE_TYPES.values()
             if all(c in FIXED_LETTERS or c == "Q" for c in cls._layout)]
    assert m.Rgetattr in fixed and m.Tgetattr in fixed
    for cls in fixed:
        names = fixed_names(cls)
        assert len(names) == len(fixed_struct(cls).unpack(bytes(fixed_struct(cls).size)))
    assert fixed_names(m.Rlopen) == (
        "qid_type", "qid_version", "qid_path", "iounit")
    with pytest.raises(TypeError):
        fixed_names(m.Twalk)  # a string and an array: not of fixed width
    # the client's tuple of an Rgetattr is spelled from this layout
    assert GetattrFields._fields == fixed_names(m.Rgetattr)
    got = GetattrFields.of(m.Rgetattr(0x3FFF, Qid(QTDIR, 7, 99), *range(3, 21)))
    assert got[:5] == (0x3FFF, QTDIR, 7, 99, 3) and got[-1] == 20
