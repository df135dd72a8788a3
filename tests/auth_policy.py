"""A server whose policy gives aname "secret" only to a Tauth-proven key (test helper)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ninep.backends.ram import RamBackend
from ninep.server.auth import key_fingerprint, public_key_blob
from ninep.vfs.namespace import Namespace
from ninep.vfs.policy import Match, Policy, Rule
from tests.conftest import RunningServer, start_server

SECRET_FILE = "only-for-alice"
PUBLIC_FILE = "for-everyone"


@dataclass
class AuthServer:
    """The running server, its authorized-keys file, and keys in and out of it."""

    running: RunningServer
    authorized_keys: Path
    alice: Ed25519PrivateKey  # listed, comment "alice@test"
    mallory: Ed25519PrivateKey  # not listed
    alice_file: Path  # alice's key in OpenSSH format
    mallory_file: Path

    @property
    def alice_fingerprint(self) -> str:
        return key_fingerprint(public_key_blob(self.alice.public_key()))


def key_rule(ns: Namespace, anames: frozenset[str] | None, key_id: str) -> Rule:
    """A rule needing the Tauth-proven key ``key_id`` (a fingerprint or a comment)."""
    return Rule(ns, anames, name="alice-key", match=Match(key=frozenset({key_id})))


def key_policy(rules: list[Rule], keys: Path | None) -> Policy:
    return Policy(rules, authorized_keys=keys)  # wants_auth follows from the rules


def _openssh_line(key: Ed25519PrivateKey, comment: str) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return f"{public} {comment}\n"


def _write_private(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    return path


def auth_server(tmp: Path) -> Generator[AuthServer, None, None]:
    """Yield a server: aname "secret" needs alice's key (by comment), "public" is open."""
    alice, mallory = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = tmp / "authorized_keys"
    keys.write_text("# test keys\n" + _openssh_line(alice, "alice@test"))

    async def policy() -> Policy:
        secret = RamBackend()
        secret.add_file(SECRET_FILE, b"secret\n")
        public = RamBackend()
        public.add_file(PUBLIC_FILE, b"public\n")
        return key_policy([
            key_rule(await Namespace.build([("/", secret, False)], name="secret"),
                     frozenset({"secret"}), "alice@test"),
            Rule(await Namespace.build([("/", public, False)], name="public"),
                 frozenset({"public"}), name="public"),
        ], keys)

    running = start_server(policy)
    try:
        yield AuthServer(running, keys, alice, mallory,
                         _write_private(tmp / "alice", alice), _write_private(tmp / "mallory",
                                                                              mallory))
    finally:
        running.stop()
        shutil.rmtree(os.path.dirname(running.unix_path), ignore_errors=True)
