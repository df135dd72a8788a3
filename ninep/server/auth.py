"""Tauth with Ed25519 keys, the server side: authorized keys, an afid's exchange, proofs.

The exchange's messages and key forms are the wire's (ninep/wire/auth.py, shared
with the client); this module decides who is let in. It knows nothing of the
session: handlers.py binds the afid and hands in what a decision needs.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Cred
from ninep.vfs.policy import shown
from ninep.vfs.refusals import REFUSALS
from ninep.wire import messages as m
from ninep.wire.auth import (
    CHALLENGE_MAGIC,
    ED25519,
    RESPONSE_MAGIC,
    SIGN_CONTEXT,
    STATUS_MAGIC,
    Challenge,
    Status,
    decode_challenge,
    decode_response,
    decode_status,
    encode_response,
    key_fingerprint,
    public_key_blob,
    raw_ed25519,
    signed_message,
)
from ninep.wire.constants import QTAUTH
from ninep.wire.qid import Qid

# The wire's names that this module's users (tests, certs) take from here too.
__all__ = [
    "AFID_CRED",
    "AFID_NAMESPACE",
    "CHALLENGE_MAGIC",
    "QTAUTH",
    "RESPONSE_MAGIC",
    "SIGN_CONTEXT",
    "STATUS_MAGIC",
    "AuthExchange",
    "AuthorizedKey",
    "Challenge",
    "ConnectionProof",
    "Status",
    "aqid",
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

_PROCESS_SECRET = os.urandom(32)  # connection nonces are unpredictable across restarts
_aqid_paths = itertools.count(1)
MAX_PROOFS = 64  # distinct (aname, uname, n_uname, key) proofs one connection keeps
AFID_NAMESPACE = Namespace("afid")  # an afid points at an empty, read-only directory
AFID_CRED = Cred(m.NONUNAME, m.NONUNAME, frozenset())


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
            raw_ed25519(blob)
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
            raw = raw_ed25519(blob)
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


def begin(keys: Path | None, conn_id: int, msg: m.Tauth) -> AuthExchange:
    """Tauth: a fresh challenge for the afid (the caller checked that auth is wanted,
    and binds the afid)."""
    if keys is None:
        raise OSError(errno.EACCES, "no authorized keys file is configured")
    challenge = Challenge(os.urandom(32), connection_nonce(conn_id), msg.afid,
                          msg.n_uname, msg.uname, msg.aname)
    return AuthExchange(challenge, keys)


def aqid() -> Qid:
    """The qid of a new afid: numbered apart from every file."""
    return Qid.auth(next(_aqid_paths))


def attach_key_ids(msg: m.Tattach, proofs: Sequence[ConnectionProof],
                   afid: AuthExchange | None) -> frozenset[str]:
    """The key ids a Tattach carries: from its afid (``afid``: that fid's exchange,
    None if it has none), or from an earlier attach on this connection that used one
    (the kernel behind ``ninep mount`` attaches with NOFID after the helper
    authenticated, as with diod's authenticated connections)."""
    if msg.afid == m.NOFID:
        for proof in proofs:
            if proof.covers(msg):
                return proof.key_ids
        return frozenset()
    if afid is None:
        raise OSError(errno.EACCES, f"afid {msg.afid} is not an authentication fid")
    return afid.proven_for(msg.uname, msg.aname, msg.n_uname)


def record_attach(proofs: list[ConnectionProof], peer: object, msg: m.Tattach,
                  key_ids: frozenset[str]) -> None:
    """Remember a key proven through an afid for later NOFID attaches on this connection."""
    if msg.afid == m.NOFID or not key_ids:
        return
    proof = ConnectionProof(msg.aname, msg.uname, msg.n_uname, key_ids)
    if proof in proofs:
        return
    if len(proofs) >= MAX_PROOFS:  # a client attaching in a loop stays bounded
        log.warning("%s: more than %d proofs on one connection; not kept for NOFID attaches",
                    peer, MAX_PROOFS)
        return
    proofs.append(proof)


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

