"""The ``ninep`` command: ``serve`` and the client verbs (ls, cat, get, put, ...)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Sequence

from backends.registry import MountSpec, parse_mount

from .server import ListenAddress, Server, parse_listen
from .session import ServerLimits

__all__ = ["build_parser", "main"]

log = logging.getLogger("ninep")
DEFAULT_LISTEN = "tcp://127.0.0.1:5640"
_DEFAULTS = ServerLimits()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ninep", description="A 9P2000.L file server and client.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--listen", action="append", metavar="URL",
                       help=f"tcp://HOST:PORT or unix:///PATH (repeatable; default {DEFAULT_LISTEN})")
    serve.add_argument("--mount", action="append", metavar="PATH=KIND[:SOURCE][,OPT=VAL][,ro]",
                       help="mount a backend, e.g. /=ram, /data=passthrough:/srv/data,ro or "
                            "/dist=tar:/srv/dist.tar.gz (repeatable)")
    serve.add_argument("--msize", type=int, default=_DEFAULTS.max_msize,
                       help="largest msize offered (default 1 MiB)")
    serve.add_argument("--max-fids", type=int, default=_DEFAULTS.max_fids)
    serve.add_argument("--max-inflight", type=int, default=_DEFAULTS.max_inflight)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    serve.set_defaults(func=_serve)
    from .certs import add_cert_commands
    from .mount_helper import add_mount_command

    add_cert_commands(sub)
    add_mount_command(sub)
    try:
        from clients.cli import add_client_commands
    except ImportError:  # pragma: no cover - the client is part of the distribution
        pass
    else:
        add_client_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        listens = [parse_listen(u) for u in (args.listen or [DEFAULT_LISTEN])]
        mounts = [parse_mount(t) for t in (args.mount or [])]
        if args.msize < 4096:
            raise ValueError(f"--msize {args.msize}: must be at least 4096")
    except ValueError as exc:
        print(f"ninep serve: {exc}", file=sys.stderr)
        return 2
    limits = ServerLimits(max_msize=args.msize, max_fids=args.max_fids,
                          max_inflight=args.max_inflight)
    if not args.no_uvloop:
        _install_uvloop()
    try:
        asyncio.run(_run(listens, mounts, limits))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        print(f"ninep serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ninep serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed; using the stdlib event loop")
        return
    uvloop.install()


async def _run(listens: list[ListenAddress], specs: list[MountSpec],
               limits: ServerLimits) -> None:
    from .defaults import default_policy

    mounts = [(spec.path, await spec.open(), spec.read_only) for spec in specs]
    server = Server(await default_policy(mounts), limits)
    for address in listens:
        await server.listen(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await server.close()
