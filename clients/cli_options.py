"""The connection options every client verb takes, each also read from the environment."""

from __future__ import annotations

import argparse
import errno
import getpass
import os
import ssl

from ninep.wire.messages import NONUNAME

from .address import DEFAULT_SERVER, parse_address
from .client import DEFAULT_MSIZE
from .tls import client_context

__all__ = ["add_connection_options", "check_connection_options", "tls_for"]


def _default_uname() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """Where the server is, who we are, how we prove it: options with NINEP_* defaults."""
    group = parser.add_argument_group("connection (each option's default comes from the "
                                      "environment variable named)")
    group.add_argument("--server", default=_env("NINEP_SERVER") or DEFAULT_SERVER, metavar="URL",
                       help="tcp://HOST:PORT, tls://HOST:PORT, unix:///PATH, or HOST[:PORT] "
                            f"for TCP (port 5640 if left out; $NINEP_SERVER, else {DEFAULT_SERVER})")
    group.add_argument("--ca", default=_env("NINEP_CA"), metavar="FILE",
                       help="PEM file of the CA(s) that signed the server's TLS certificate "
                            "($NINEP_CA; default: the system's CAs)")
    group.add_argument("--cert", default=_env("NINEP_CERT"), metavar="FILE",
                       help="TLS client certificate (PEM) to present ($NINEP_CERT)")
    group.add_argument("--tls-key", default=_env("NINEP_TLS_KEY"), metavar="FILE",
                       help="private key of --cert, if not inside that file ($NINEP_TLS_KEY)")
    group.add_argument("--server-name", default=_env("NINEP_SERVER_NAME"), metavar="NAME",
                       help="name the server's TLS certificate must carry (default: the host "
                            "of --server) ($NINEP_SERVER_NAME)")
    group.add_argument("--key", default=_env("NINEP_KEY"), metavar="FILE",
                       help="Ed25519 private key (OpenSSH or PEM) to prove through Tauth "
                            "(docs/auth.md) ($NINEP_KEY)")
    group.add_argument("--aname", default=os.environ.get("NINEP_ANAME", ""), metavar="NAME",
                       help="attach name: which tree to attach ($NINEP_ANAME; default empty)")
    group.add_argument("--uname", default=_env("NINEP_UNAME") or _default_uname(),
                       metavar="USER", help="user name sent in Tattach ($NINEP_UNAME; default: "
                                            "the local user)")
    group.add_argument("--uid", type=int, default=NONUNAME, dest="n_uname", metavar="N",
                       help="numeric user id sent in Tattach as n_uname (default: none)")
    group.add_argument("--msize", type=int, default=DEFAULT_MSIZE, metavar="BYTES",
                       help=f"largest message size to offer (default {DEFAULT_MSIZE})")


def check_connection_options(args: argparse.Namespace) -> str | None:
    """The usage error in the connection options, or None."""
    try:
        address = parse_address(args.server)
    except ValueError as exc:
        return str(exc)
    # only options given on the command line: NINEP_CA exported for one server must
    # not make every plain tcp:// server a usage error
    tls_options = [o for o, v, env in (("--ca", args.ca, "NINEP_CA"),
                                       ("--cert", args.cert, "NINEP_CERT"),
                                       ("--tls-key", args.tls_key, "NINEP_TLS_KEY"))
                   if v and v != _env(env)]
    if tls_options and address.scheme == "tcp":
        return (f"{', '.join(tls_options)} need a TLS server: write --server "
                f"tls://{args.server.split('://', 1)[-1]}")
    if tls_options and address.scheme == "unix":
        return f"{', '.join(tls_options)}: TLS is for tls://HOST:PORT servers, not unix://"
    if args.tls_key and not args.cert:
        return "--tls-key needs --cert (the certificate it belongs to)"
    return None


def tls_for(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context for a tls:// server, else None."""
    if parse_address(args.server).scheme != "tls":
        return None
    for path in (args.ca, args.cert, args.tls_key):
        if path and not os.path.isfile(path):  # ssl's own error would not name the file
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    try:
        return client_context(args.ca, args.cert, args.tls_key)
    except ssl.SSLError as exc:
        files = ", ".join(p for p in (args.ca, args.cert, args.tls_key) if p)
        raise ValueError(f"{files}: not usable as PEM CA, certificate and key: "
                         f"{exc.reason or exc}") from None
