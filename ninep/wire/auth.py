"""The Tauth exchange's messages (docs/auth.md): CHALLENGE, RESPONSE, STATUS, and the
OpenSSH forms of an Ed25519 key; sans-I/O, shared by the server and the client.

The exchange runs over an afid: Tread returns a CHALLENGE, one Twrite carries
the RESPONSE (public key + signature), and a Tread after that returns a STATUS.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = [
    "CHALLENGE_MAGIC",
    "ED25519",
    "RESPONSE_MAGIC",
    "SIGN_CONTEXT",
    "STATUS_ACCEPTED",
    "STATUS_MAGIC",
    "STATUS_REFUSED",
    "Challenge",
    "Status",
    "decode_challenge",
    "decode_response",
    "decode_status",
    "encode_response",
    "key_fingerprint",
    "public_key_blob",
    "raw_ed25519",
    "signed_message",
]

CHALLENGE_MAGIC: Final = b"ninep-auth1-chal"
RESPONSE_MAGIC: Final = b"ninep-auth1-resp"
STATUS_MAGIC: Final = b"ninep-auth1-stat"
SIGN_CONTEXT: Final = b"ninep-auth1-sign"
ED25519: Final = b"ssh-ed25519"
STATUS_ACCEPTED: Final = 0
STATUS_REFUSED: Final = 1
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")


def _string(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


class _Reader:
    """Reads 9P-style fields; any shortfall or leftover is a ValueError."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated auth message")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def string(self) -> bytes:
        return self.take(_U16.unpack(self.take(2))[0])

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} bytes after the auth message")


@dataclass(frozen=True, slots=True)
class Challenge:
    """What the server asks the client to sign (the CHALLENGE message)."""

    nonce: bytes  # 32 random bytes, fresh for this afid
    connection: bytes  # 32 bytes, the same for every afid of one connection
    afid: int
    n_uname: int
    uname: str
    aname: str

    def encode(self) -> bytes:
        return (CHALLENGE_MAGIC + self.nonce + self.connection
                + _U32.pack(self.afid) + _U32.pack(self.n_uname)
                + _string(self.uname.encode()) + _string(self.aname.encode()))


def decode_challenge(data: bytes) -> Challenge:
    r = _Reader(data)
    if r.take(16) != CHALLENGE_MAGIC:
        raise ValueError("not a ninep-auth1 challenge")
    challenge = Challenge(r.take(32), r.take(32), r.u32(), r.u32(), r.string().decode(),
                          r.string().decode())
    r.end()
    return challenge


def signed_message(challenge: bytes, key_blob: bytes) -> bytes:
    """The bytes the client signs: a domain separator, the challenge as read, the key."""
    return SIGN_CONTEXT + challenge + _string(key_blob)


def encode_response(key_blob: bytes, signature: bytes) -> bytes:
    return RESPONSE_MAGIC + _string(key_blob) + _string(signature)


def decode_response(data: bytes) -> tuple[bytes, bytes]:
    r = _Reader(data)
    if r.take(16) != RESPONSE_MAGIC:
        raise ValueError("not a ninep-auth1 response")
    key_blob, signature = r.string(), r.string()
    r.end()
    return key_blob, signature


@dataclass(frozen=True, slots=True)
class Status:
    """The STATUS message: accepted or refused, and the proven key's fingerprint."""

    accepted: bool
    fingerprint: str = ""

    def encode(self) -> bytes:
        code = STATUS_ACCEPTED if self.accepted else STATUS_REFUSED
        return STATUS_MAGIC + bytes([code]) + _string(self.fingerprint.encode())


def decode_status(data: bytes) -> Status:
    r = _Reader(data)
    if r.take(16) != STATUS_MAGIC:
        raise ValueError("not a ninep-auth1 status")
    code = r.take(1)[0]
    fingerprint = r.string().decode()
    r.end()
    return Status(code == STATUS_ACCEPTED, fingerprint)


# --- keys, in OpenSSH's wire form --------------------------------------------------

def public_key_blob(key: ed25519.Ed25519PublicKey) -> bytes:
    """The OpenSSH wire form: string "ssh-ed25519", string key (u32 big-endian lengths)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _ssh_string(ED25519) + _ssh_string(raw)


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def raw_ed25519(blob: bytes) -> bytes:
    """The 32 key bytes of an ssh-ed25519 blob; ValueError for anything else."""
    if len(blob) != 4 + len(ED25519) + 4 + 32 or blob[:4 + len(ED25519)] != _ssh_string(ED25519) \
            or blob[15:19] != struct.pack(">I", 32):
        raise ValueError("not an ssh-ed25519 public key")
    return blob[19:]


def key_fingerprint(blob: bytes) -> str:
    """OpenSSH's fingerprint: ``SHA256:`` + unpadded base64 of the blob's SHA-256."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return "SHA256:" + digest
