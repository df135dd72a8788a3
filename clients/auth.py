"""Tauth from the client side: load an Ed25519 key and answer the server's challenge (docs/auth.md)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ninep.wire.auth import (
    decode_challenge,
    decode_status,
    encode_response,
    public_key_blob,
    signed_message,
)
from ninep.wire.messages import NOFID, Rauth, Rread, Rwrite, Tauth, Tread, Twrite

from .errors import ProtocolError

if TYPE_CHECKING:
    from .client import Client

__all__ = ["KeyLike", "answer_challenge", "authenticate", "load_key"]

KeyLike = str | os.PathLike[str] | Ed25519PrivateKey
_MAX_AUTH_MESSAGE = 4096  # every ninep-auth1 message is far smaller


def load_key(key: KeyLike) -> Ed25519PrivateKey:
    """An Ed25519 private key: given, or read from an OpenSSH or PKCS#8 PEM file (unencrypted)."""
    if isinstance(key, Ed25519PrivateKey):
        return key
    data = Path(key).expanduser().read_bytes()
    loaded: object
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            loaded = serialization.load_ssh_private_key(data, None)
        else:
            loaded = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{key}: cannot load the private key: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{key}: not an Ed25519 private key")
    return loaded


def answer_challenge(challenge: bytes, key: Ed25519PrivateKey, uname: str, aname: str,
                     n_uname: int) -> bytes:
    """The RESPONSE to a CHALLENGE, after checking it names the attach we asked for."""
    try:
        parsed = decode_challenge(challenge)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad Tauth challenge from the server: {exc}") from None
    if (parsed.uname, parsed.aname, parsed.n_uname) != (uname, aname, n_uname):
        raise ProtocolError("the server's Tauth challenge names another uname/aname")
    blob = public_key_blob(key.public_key())
    return encode_response(blob, key.sign(signed_message(challenge, blob)))


async def _read_message(client: Client, afid: int) -> bytes:
    reply = await client.call(Tread(afid, 0, _MAX_AUTH_MESSAGE), Rread)
    return bytes(reply.data)


async def authenticate(client: Client, key: KeyLike, uname: str, aname: str,
                       n_uname: int) -> int:
    """Run the exchange on a new afid; returns it (NOFID when the server wants no auth).

    A refused key raises OSError(EACCES); the afid is then clunked.
    """
    private = load_key(key)
    try:
        afid, _ = await client.call_with_newfid(lambda fid: Tauth(fid, uname, aname, n_uname),
                                                bound=lambda r: isinstance(r, Rauth))
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # diod's "authentication not required"
            return NOFID
        raise
    try:
        response = answer_challenge(await _read_message(client, afid), private, uname, aname,
                                    n_uname)
        await client.call(Twrite(afid, 0, response), Rwrite)
        try:
            status = decode_status(await _read_message(client, afid))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"bad Tauth status from the server: {exc}") from None
        if not status.accepted:
            raise OSError(errno.EACCES, "the server refused the key")
    except BaseException:
        client.spawn_clunk(afid)
        raise
    return afid
