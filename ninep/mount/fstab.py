"""``mount.ninep``: the helper mount(8) runs for an fstab line of type ``ninep``.

    files.example.org:5640  /srv/files  ninep  tls,ca=/etc/ninep/ca.crt,auth_key=/etc/ninep/id_ed25519,aname=data,_netdev  0 0

mount(8) runs ``/sbin/mount.ninep SPEC DIR [-sfnv] [-N NS] [-o OPTIONS]``
(mount(8), "External helpers"). The options that name the TLS files, the
Tauth key and the attach become ``ninep mount``'s (ninep/mount/helper.py),
mount(8)'s own userspace options (``_netdev``, ``nofail``, ``x-*``...) are
dropped, and the rest go to v9fs as ``ninep mount -o`` would pass them. Exit
status follows mount(8): 1 for a bad invocation, 32 for a failed mount.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ninep.mount.helper import add_mount_command, parse_endpoint

__all__ = ["HELPER_OPTIONS", "fstab_to_ninep_mount", "main"]

# fstab option -> (``ninep mount`` option, whether it takes a value)
HELPER_OPTIONS: dict[str, tuple[str, bool]] = {
    "tls": ("--tls", False),
    "ca": ("--ca", True),
    "cert": ("--cert", True),
    "key": ("--key", True),
    "server_name": ("--server-name", True),
    "auth_key": ("--auth-key", True),
    "aname": ("--aname", True),
    "uname": ("--uname", True),
}
# Options for mount(8) and its callers (systemd's fstab generator, mount -a), not
# for the file system: mount(8) may hand them on to a helper (mount(8), "FILESYSTEM-
# INDEPENDENT MOUNT OPTIONS"), and v9fs would refuse or misread them.
_USERSPACE = frozenset({"defaults", "auto", "noauto", "nofail", "_netdev", "user", "nouser",
                        "users", "owner", "group"})
_USERSPACE_PREFIXES = ("x-", "X-", "comment=")
EXIT_USAGE = 1
EXIT_FAILURE = 32


def fstab_to_ninep_mount(spec: str, mountpoint: str, options: str,
                         fake: bool = False) -> list[str]:
    """The ``ninep mount`` arguments for one fstab line; ValueError for a bad option."""
    args: list[str] = []
    passed: list[str] = []
    port = None
    for option in filter(None, options.split(",")):
        name, has_value, value = option.partition("=")
        if option in _USERSPACE or option.startswith(_USERSPACE_PREFIXES):
            continue
        if name == "port":  # v9fs's own spelling of the port, as in diod's fstab lines
            port = value
            continue
        helper = HELPER_OPTIONS.get(name)
        if helper is None:
            passed.append(option)
            continue
        flag, takes_value = helper
        if takes_value != bool(has_value) or (takes_value and not value):
            raise ValueError(f"-o {option}: " + (f"expected {name}=VALUE" if takes_value
                                                  else f"{name} takes no value"))
        args += [flag, value] if takes_value else [flag]
    server = spec
    if port is not None:
        endpoint = parse_endpoint(spec)
        if endpoint.kind != "tcp" or not port.isdigit():
            raise ValueError(f"-o port={port}: expected a TCP port for a host name")
        server = f"[{endpoint.host}]:{port}" if ":" in endpoint.host else f"{endpoint.host}:{port}"
    else:
        parse_endpoint(spec)  # a bad spec fails here, before connecting
    if passed:
        args += ["-o", ",".join(passed)]
    if fake:
        args.append("--fake")
    return ["mount", *args, "--source", spec, server, mountpoint]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mount.ninep",
        description="mount(8)'s helper for fstab lines of type ninep: TLS and Tauth "
                    "through 'ninep mount' (man ninep(1)).")
    parser.add_argument("spec", metavar="SERVER",
                        help="HOST[:PORT] (default port 5640), tcp://HOST:PORT or /PATH")
    parser.add_argument("mountpoint", metavar="DIR")
    parser.add_argument("-o", dest="options", default="", metavar="OPTIONS",
                        help="tls, ca=FILE, cert=FILE, key=FILE, server_name=NAME, "
                             "auth_key=FILE, aname=NAME, uname=NAME, port=N; others go to v9fs")
    parser.add_argument("-f", dest="fake", action="store_true",
                        help="do everything but the mount(2) call")
    parser.add_argument("-s", dest="sloppy", action="store_true",
                        help="accepted for mount(8); unknown options go to v9fs anyway")
    parser.add_argument("-n", dest="no_mtab", action="store_true",
                        help="accepted for mount(8); there is no mtab to write")
    parser.add_argument("-v", dest="verbose", action="store_true", help="say what is run")
    parser.add_argument("-t", dest="type", metavar="TYPE", help="accepted for mount(8)")
    parser.add_argument("-N", dest="namespace", metavar="NS",
                        help="not supported: mount from within that namespace instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.namespace is not None:
        print("mount.ninep: -N is not supported", file=sys.stderr)
        return EXIT_USAGE
    try:
        command = fstab_to_ninep_mount(args.spec, args.mountpoint, args.options, args.fake)
    except ValueError as exc:
        print(f"mount.ninep: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.verbose:
        print("mount.ninep: ninep " + " ".join(command), file=sys.stderr)
    parser = argparse.ArgumentParser(prog="ninep")
    add_mount_command(parser.add_subparsers())
    mount_args = parser.parse_args(command)
    return EXIT_FAILURE if mount_args.func(mount_args) else 0


if __name__ == "__main__":  # python -m ninep.mount.fstab, where mount.ninep is not installed
    sys.exit(main())
