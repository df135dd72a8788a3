"""What every part of the tar parser shares: the block size, the damage error, numeric fields."""

from __future__ import annotations

__all__ = ["BLOCK", "TarFormatError", "padded", "parse_number"]

BLOCK = 512


class TarFormatError(Exception):
    """The archive is damaged at ``offset``: ``what`` says how."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(f"{what} at byte offset {offset}")
        self.offset, self.what = offset, what


def padded(size: int) -> int:
    """``size`` rounded up to whole blocks."""
    return -(-size // BLOCK) * BLOCK


def parse_number(field: bytes, offset: int, name: str) -> int:
    """A numeric header field: octal (NUL/space padded) or GNU base-256."""
    if field and field[0] & 0x80:
        if field[0] == 0xFF:  # negative: two's complement over the whole field
            return int.from_bytes(field, "big") - (1 << (8 * len(field)))
        return int.from_bytes(field[1:], "big")
    try:  # the common case: digits, then NULs or spaces
        return int(field.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        pass
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(offset, f"bad numeric field {name} ({text!r})") from None
