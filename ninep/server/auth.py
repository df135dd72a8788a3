"""Tauth with Ed25519 keys: the wire formats of docs/auth.md, authorized keys, the server side.

The exchange over an afid: Tread returns a CHALLENGE, one Twrite carries the
RESPONSE (public key + signature), and a Tread after that returns a STATUS.
The codec functions are shared with the client (clients/auth.py).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import itertools
import logging
import os
import struct
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Cred
from ninep.vfs.policy import shown
from ninep.vfs.refusals import REFUSALS
from ninep.wire import messages as m
from ninep.wire.constants import QTAUTH

if TYPE_CHECKING:
    from ninep.server.session import Session

__all__ = [
    "CHALLENGE_MAGIC",
    "RESPONSE_MAGIC",
    "SIGN_CONTEXT",
    "STATUS_MAGIC",
    "AuthExchange",
    "AuthorizedKey",
    "Challenge",
    "ConnectionProof",
    "Status",
    "attach_key_ids",
    "authorized_key_ids",
    "begin",
    "decode_challenge",
    "decode_response",
    "decode_status",
    "encode_response",
    "key_fingerprint",
    "load_authorized_keys",
    "parse_authorized_keys",
    "public_key_blob",
    "record_attach",
    "signed_message",
]

log = logging.getLogger(__name__)

CHALLENGE_MAGIC = b"ninep-auth1-chal"
RESPONSE_MAGIC = b"ninep-auth1-resp"
STATUS_MAGIC = b"ninep-auth1-stat"
SIGN_CONTEXT = b"ninep-auth1-sign"
ED25519 = b"ssh-ed25519"
STATUS_ACCEPTED, STATUS_REFUSED = 0, 1
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
_PROCESS_SECRET = os.urandom(32)  # connection nonces are unpredictable across restarts
_aqid_paths = itertools.count(1)
MAX_PROOFS = 64  # distinct (aname, uname, n_uname, key) proofs one connection keeps
_AFID_NAMESPACE = Namespace("afid")  # an afid points at an empty, read-only directory
_NO_CRED = Cred(m.NONUNAME, m.NONUNAME, frozenset())


# --- the codec (sans-I/O, shared with the client) -------------------------------

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


# --- keys ------------------------------------------------------------------------

def public_key_blob(key: ed25519.Ed25519PublicKey) -> bytes:
    """The OpenSSH wire form: string "ssh-ed25519", string key (u32 big-endian lengths)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _ssh_string(ED25519) + _ssh_string(raw)


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _raw_ed25519(blob: bytes) -> bytes:
    """The 32 key bytes of an ssh-ed25519 blob; ValueError for anything else."""
    if len(blob) != 4 + len(ED25519) + 4 + 32 or blob[:4 + len(ED25519)] != _ssh_string(ED25519) \
            or blob[15:19] != struct.pack(">I", 32):
        raise ValueError("not an ssh-ed25519 public key")
    return blob[19:]


def key_fingerprint(blob: bytes) -> str:
    """OpenSSH's fingerprint: ``SHA256:`` + unpadded base64 of the blob's SHA-256."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return "SHA256:" + digest


@dataclass(frozen=True, slots=True)
class AuthorizedKey:
    """One usable line of an authorized-keys file."""

    blob: bytes
    comment: str
    fingerprint: str

    @property
    def key_ids(self) -> frozenset[str]:
        """What AttachRequest.key_ids holds: the fingerprint, and the comment if any."""
        return frozenset({self.fingerprint, self.comment} - {""})


def parse_authorized_keys(text: str, source: str = "authorized_keys") -> dict[bytes, AuthorizedKey]:
    """``ssh-ed25519 BASE64 [comment]`` lines; others are skipped with a warning.

    A line with OpenSSH options (``from=...``, ``restrict``) before the key type is
    refused, not honoured partially: its restrictions would be silently lost.
    """
    keys: dict[bytes, AuthorizedKey] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.strip().split(None, 2)
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{source}:{number}"
        if fields[0] != ED25519.decode():
            reason = ("options before the key type are not supported"
                      if " ssh-ed25519 " in f" {line} " else
                      f"key type {fields[0]!r} is not ssh-ed25519")
            log.warning("%s: line skipped: %s", where, reason)
            continue
        try:
            blob = base64.b64decode(fields[1], validate=True) if len(fields) > 1 else b""
            _raw_ed25519(blob)
        except ValueError as exc:
            log.warning("%s: line skipped: bad key data (%s)", where, exc)
            continue
        comment = fields[2].strip() if len(fields) > 2 else ""
        keys[blob] = AuthorizedKey(blob, comment, key_fingerprint(blob))
    return keys


def load_authorized_keys(path: Path) -> dict[bytes, AuthorizedKey]:
    """Read the file afresh (edits apply to the next Tauth); unreadable means no keys."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.warning("authorized keys %s: cannot read: %s", path, exc.strerror)
        return {}
    return parse_authorized_keys(text, str(path))


def authorized_key_ids(path: Path | None) -> frozenset[str]:
    """Every key id (fingerprint, comment) the file authorizes now: what proofs made
    earlier may still count for at a reload (Session.review)."""
    if path is None:
        return frozenset()
    return frozenset().union(*(key.key_ids for key in load_authorized_keys(path).values()))


# --- the server side -------------------------------------------------------------

class AuthState(Enum):
    CHALLENGED = "challenged"
    ACCEPTED = "accepted"
    REFUSED = "refused"


@dataclass(eq=False, slots=True)
class AuthExchange:
    """The state of one afid: the challenge it sent, then the key it proved (or not)."""

    challenge: Challenge
    authorized_keys: Path
    state: AuthState = AuthState.CHALLENGED
    key: AuthorizedKey | None = None
    encoded: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.encoded = self.challenge.encode()

    def read(self, offset: int, count: int) -> bytes:
        """Before the response: the challenge; after it: the status."""
        if self.state is AuthState.CHALLENGED:
            data = self.encoded
        else:
            data = Status(self.key is not None, self.key.fingerprint if self.key else "").encode()
        return data[offset:offset + count]

    async def write(self, offset: int, data: bytes, peer: object) -> int:
        """The one RESPONSE this afid accepts; anything wrong refuses the afid for good."""
        if self.state is not AuthState.CHALLENGED:
            raise OSError(errno.EACCES, "this afid has already been answered")
        self.state = AuthState.REFUSED  # until proven otherwise: one attempt per afid
        if offset != 0:
            raise _refusal(peer, f"response written at offset {offset}")
        try:
            blob, signature = decode_response(data)
            raw = _raw_ed25519(blob)
        except ValueError as exc:
            raise _refusal(peer, str(exc)) from None
        keys = await asyncio.to_thread(load_authorized_keys, self.authorized_keys)
        key = keys.get(blob)
        if key is None:
            raise _refusal(peer, f"key {key_fingerprint(blob)} is not in {self.authorized_keys}")
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(
                signature, signed_message(self.encoded, blob))
        except InvalidSignature:
            raise _refusal(peer, f"bad signature for key {key.fingerprint}") from None
        self.state, self.key = AuthState.ACCEPTED, key
        log.info("%s: Tauth proved key %s (%s) for uname=%s aname=%s", peer, key.fingerprint,
                 key.comment or "no comment", shown(self.challenge.uname),
                 shown(self.challenge.aname))
        return len(data)

    def proven_for(self, uname: str, aname: str, n_uname: int) -> frozenset[str]:
        """The key ids this afid proved, if it proved one for exactly this attach."""
        c = self.challenge
        if self.key is None or (c.uname, c.aname, c.n_uname) != (uname, aname, n_uname):
            raise OSError(errno.EACCES, "the afid did not authenticate this uname/aname")
        return self.key.key_ids


def _refusal(peer: object, reason: str) -> OSError:
    """Log why an afid was refused; the client learns only EACCES."""
    REFUSALS.warning(log, peer, "%s: Tauth refused: %s", peer, reason)
    return OSError(errno.EACCES, reason)


def connection_nonce(conn_id: int) -> bytes:
    """32 bytes unique to a connection of this server process, unguessable beforehand."""
    return hashlib.sha256(_PROCESS_SECRET + conn_id.to_bytes(8, "little")).digest()


def begin(session: Session, msg: m.Tauth) -> m.Rauth:
    """Tauth: bind the afid to a fresh challenge (the caller checked that auth is wanted)."""
    from ninep.server.session import Fid

    keys = session.policy.authorized_keys
    if keys is None:
        raise OSError(errno.EACCES, "no authorized keys file is configured")
    session.check_new_fid(msg.afid)
    challenge = Challenge(os.urandom(32), connection_nonce(session.conn_id), msg.afid,
                          msg.n_uname, msg.uname, msg.aname)
    fid = Fid(_AFID_NAMESPACE, _AFID_NAMESPACE.root(), _NO_CRED)
    fid.auth = AuthExchange(challenge, keys)
    session.bind(msg.afid, fid)
    return m.Rauth(m.Qid(QTAUTH, 0, next(_aqid_paths)))


def attach_key_ids(session: Session, msg: m.Tattach) -> frozenset[str]:
    """The key ids a Tattach carries: from its afid, or from an earlier attach on
    this connection that used one (the kernel behind ``ninep mount`` attaches with
    NOFID after the helper authenticated, as with diod's authenticated connections)."""
    if msg.afid == m.NOFID:
        for proof in session.auth_proofs:
            if proof.covers(msg):
                return proof.key_ids
        return frozenset()
    afid = session.fids.get(msg.afid)
    if afid is None or afid.auth is None:
        raise OSError(errno.EACCES, f"afid {msg.afid} is not an authentication fid")
    return afid.auth.proven_for(msg.uname, msg.aname, msg.n_uname)


def record_attach(session: Session, msg: m.Tattach, key_ids: frozenset[str]) -> None:
    """Remember a key proven through an afid for later NOFID attaches on this connection."""
    if msg.afid == m.NOFID or not key_ids:
        return
    proof = ConnectionProof(msg.aname, msg.uname, msg.n_uname, key_ids)
    if proof in session.auth_proofs:
        return
    if len(session.auth_proofs) >= MAX_PROOFS:  # a client attaching in a loop stays bounded
        log.warning("%s: more than %d proofs on one connection; not kept for NOFID attaches",
                    session.peer, MAX_PROOFS)
        return
    session.auth_proofs.append(proof)


@dataclass(frozen=True, slots=True)
class ConnectionProof:
    """A key proven by an attach with an afid; it survives Tversion on the connection."""

    aname: str
    uname: str
    n_uname: int
    key_ids: frozenset[str]

    def covers(self, msg: m.Tattach) -> bool:
        """Same aname, and the same user, or any user if root authenticated (diod's rule
        for a connection authenticated by mount.diod: the kernel attaches per uid)."""
        if msg.aname != self.aname:
            return False
        if self.n_uname == 0:
            return True
        if self.n_uname != m.NONUNAME:
            return msg.n_uname == self.n_uname
        return (msg.uname, msg.n_uname) == (self.uname, self.n_uname)

