"""The ``ninep`` command: ``serve``, ``check-config`` and the client verbs (ls, cat, ...)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ninep import __version__
from ninep.backends.registry import BackendConfigError, MountSpec, parse_mount
from ninep.config.connections import MOST_CONNECTIONS, ConnectionLimits
from ninep.server.listeners import ListenAddress, Server, parse_listen, systemd_sockets
from ninep.server.malloc_tuning import tune_malloc
from ninep.server.sd_notify import notify, notify_reloading
from ninep.server.session import ServerLimits
from ninep.vfs.budget import BUDGET, raise_descriptor_limit
from ninep.vfs.policy import Policy
from ninep.wire.constants import MIN_MSIZE

if TYPE_CHECKING:
    from ninep.config.file import Config
    from ninep.workers.owner import Owned
    from ninep.workers.supervisor import Bound

__all__ = ["build_parser", "main"]

log = logging.getLogger("ninep")
DEFAULT_LISTEN = "tcp://127.0.0.1:5640"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_DEFAULTS = ServerLimits()
_CONNECTIONS = ConnectionLimits()


def _connection_count(text: str) -> int:
    """A --max-connections(-per-peer) value: an integer from 1 up."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count, got {text!r}") from None
    if not 1 <= value <= MOST_CONNECTIONS:
        raise argparse.ArgumentTypeError(f"{value} is out of range 1..{MOST_CONNECTIONS}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ninep", description="A 9P2000.L file server and client.")
    parser.add_argument("--version", action="version", version=f"ninep {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", metavar="FILE", type=Path,
                       help="serve the policies and namespaces of a TOML file (docs/config.md)")
    serve.add_argument("--stdio", action="store_true",
                       help="serve one connection on stdin/stdout (ssh, inetd), then exit")
    serve.add_argument("--listen", action="append", metavar="URL",
                       help="tcp://HOST:PORT, unix:///PATH or systemd:[NAME] (repeatable; "
                            "refused beside a config that has [[listen]] tables; default "
                            f"{DEFAULT_LISTEN}, or the sockets systemd passed)")
    serve.add_argument("--mount", action="append", metavar="PATH=KIND[:SOURCE][,OPT=VAL][,ro]",
                       help="mount a backend, e.g. /=ram, /data=passthrough:/srv/data,ro or "
                            "/dist=tar:/srv/dist.tar.gz (repeatable)")
    serve.add_argument("--groups", choices=("host", "client"), default="host",
                       help="with --mount: where callers' groups come from, the server's user "
                            "database (default) or the client kernel's checks (docs/config.md)")
    serve.add_argument("--msize", type=int, default=_DEFAULTS.max_msize,
                       help="largest msize offered (default 1 MiB)")
    serve.add_argument("--max-fids", type=int, default=_DEFAULTS.max_fids, metavar="N",
                       help="fids one connection may hold (default "
                            f"{_DEFAULTS.max_fids}); more are refused with EMFILE")
    serve.add_argument("--max-inflight", type=int, default=_DEFAULTS.max_inflight, metavar="N",
                       help="requests one connection may have in flight before the server "
                            f"stops reading from it (default {_DEFAULTS.max_inflight})")
    serve.add_argument("--handshake-timeout", type=float, metavar="SECONDS",
                       default=_DEFAULTS.handshake_timeout,
                       help="seconds a new connection has for its TLS handshake and then for "
                            "its Tversion before it is closed (default "
                            f"{_DEFAULTS.handshake_timeout:g}; a negotiated one may idle)")
    serve.add_argument("--max-connections", type=_connection_count, metavar="N",
                       help="connections this process holds at once, each worker its own; "
                            "more are closed at accept (default "
                            f"{_CONNECTIONS.max_connections}; config: [server] "
                            "max_connections; lowered to what RLIMIT_NOFILE can hold)")
    serve.add_argument("--max-connections-per-peer", type=_connection_count, metavar="N",
                       help="connections one IP address may hold at once over tcp and tls "
                            f"(default {_CONNECTIONS.max_connections_per_peer}; config: "
                            "[server] max_connections_per_peer)")
    serve.add_argument("--metrics", metavar="URL",
                       help="serve Prometheus metrics (GET /metrics) over HTTP at tcp://HOST:PORT "
                            "(e.g. tcp://127.0.0.1:9640) or unix:///PATH; off by default "
                            "(config: [metrics] listen)")
    serve.add_argument("--workers", metavar="N|auto",
                       help="processes that accept and serve connections on the same "
                            "listeners (default 1: one process; auto: one per CPU; "
                            "config: [server] workers; docs/operations.md)")
    serve.add_argument("--log-level", default="info", type=str.lower, choices=LOG_LEVELS,
                       help="least severe messages logged on stderr (default info)")
    serve.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a config file and print each "
                           "policy's namespace")
    check.add_argument("file", type=Path, metavar="FILE", help="the TOML config file")
    check.add_argument("--strict", action="store_true",
                       help="exit 1 when there are warnings (a policy that can never match, ...)")
    check.set_defaults(func=_check_config)
    from ninep.certs import add_cert_commands
    from ninep.mount.helper import add_mount_command

    add_cert_commands(sub)
    add_mount_command(sub)
    try:
        from ninep.clients.cli import add_client_commands
    except ImportError:  # pragma: no cover - the client is part of the distribution
        pass
    else:
        add_client_commands(sub)
        from ninep.clients.fuse import add_fuse_command  # imports mfusepy only when the verb runs

        add_fuse_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_descriptor_limit()  # before backends size their tables from the limit
    try:
        config = None
        if not 0 < args.handshake_timeout <= 3600:
            raise ValueError(f"--handshake-timeout {args.handshake_timeout:g}: "
                             "must be more than 0 and at most 3600 seconds")
        limits = ServerLimits(max_msize=args.msize, max_fids=args.max_fids,
                              max_inflight=args.max_inflight,
                              handshake_timeout=args.handshake_timeout)
        if args.config is not None:
            if args.mount:
                raise ValueError("--mount and --config: put the mounts in the config file")
            from ninep.config.file import load_config
            config = load_config(args.config)
            limits = config.limits
            from ninep.config.lint import config_warnings
            for warning in config_warnings(config):  # check-config's, for a server under systemd
                log.warning("%s: %s", config.path, warning)
        listens = _listeners(args, config)
        metrics_at = args.metrics or (config.metrics if config else None)
        if metrics_at is not None:
            from ninep.server.metrics_http import parse_metrics_address
            parse_metrics_address(metrics_at)
        mounts = [parse_mount(t) for t in (args.mount or [])]
        if args.msize < MIN_MSIZE:
            raise ValueError(f"--msize {args.msize}: must be at least {MIN_MSIZE}")
        workers = _workers(args, config, listens, mounts, metrics_at)
        connections = _connection_limits(args, config)
    except ValueError as exc:
        print(f"ninep serve: {exc}", file=sys.stderr)
        return 2
    if not args.no_uvloop:
        _install_uvloop()
    tune_malloc()  # before any frame is allocated; workers inherit it through fork
    if workers > 1:
        return _supervise(workers, listens, mounts, limits, config, args.groups, connections)
    try:
        asyncio.run(_run(listens, mounts, limits, config, args.groups, metrics_at,
                         connections=connections))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        print(f"ninep serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ninep serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _connection_limits(args: argparse.Namespace, config: Config | None) -> ConnectionLimits:
    """The command line's, else the config's [server], else the defaults; then
    max_connections as far as the descriptor limit holds it beside the server's own
    descriptors and the backends' share (vfs/budget.py), with one warning if lowered.
    Each worker inherits the budget sized here, and its own limit is the same."""
    base = config.connections if config is not None else ConnectionLimits()
    wanted = args.max_connections or base.max_connections
    per_peer = args.max_connections_per_peer or base.max_connections_per_peer
    held = BUDGET.hold_connections(wanted)
    if held < wanted:
        log.warning("max_connections lowered from %d to %d: the descriptor limit of %d "
                    "holds %d sockets beside the server's own descriptors and half of it "
                    "for clients' files (raise LimitNOFILE= or ulimit -n)", wanted, held,
                    BUDGET.limit, held)
    return ConnectionLimits(held, per_peer)


def _workers(args: argparse.Namespace, config: Config | None, listens: list[ListenAddress],
             mounts: list[MountSpec], metrics_at: str | None) -> int:
    """--workers, else the config's [server] workers, else 1; what N > 1 cannot serve is
    refused here, before anything listens."""
    from ninep.workers import worker_count
    if args.workers is not None:
        try:
            count = worker_count(args.workers)
        except ValueError as exc:
            raise ValueError(f"--workers {exc}") from None
    else:
        count = config.workers if config else 1
    if count == 1:
        return 1
    if any(a.kind == "stdio" for a in listens):
        raise ValueError("--workers: a stdio connection is served by one process")
    if metrics_at is not None:
        raise ValueError("--workers: the metrics endpoint counts one process; serve it "
                         "with one worker")
    # worker 0 owns the mounts that keep their tree in one process and shares them
    # (ninep/workers/owner.py), all but a config file's with placeholders (one per user)
    from ninep.workers.owner import owned_mounts
    from ninep.workers.placement import process_local_mounts
    local = []
    if config is not None:
        owned = set(owned_mounts(config))
        local = [m for m in process_local_mounts(mounts, config) if m not in owned]
    if local:
        raise ValueError("--workers: these mounts of the config file keep their files in "
                         "one process per expansion of their placeholders, and workers could "
                         "not share them: " + "; ".join(local) + " (serve them with one "
                         "worker, or a passthrough, tar or read-only ext2 mount)")
    return count


def _supervise(count: int, listens: list[ListenAddress], specs: list[MountSpec],
               limits: ServerLimits, config: Config | None, groups: str,
               connections: ConnectionLimits) -> int:
    """Bind once, fork ``count`` workers that each run :func:`_run` on the sockets; the
    command line's mounts that live in one process are worker 0's, shared with the
    others through a private socket (ninep/workers/owner.py)."""
    import shutil
    import tempfile

    from ninep.workers.owner import Owned
    from ninep.workers.placement import process_local_mounts
    from ninep.workers.supervisor import Supervisor
    private = tempfile.mkdtemp(prefix="ninep-workers-")  # 0700: the server's user only
    from ninep.workers.owner import owned_mounts
    shared = bool(owned_mounts(config) if config is not None
                  else process_local_mounts(specs, None))

    def worker(index: int, bound: Bound, ready: Callable[[], None]) -> int:
        _log_as_worker(index)
        owned = Owned(index, os.path.join(private, "owned.sock")) if shared else None
        try:
            asyncio.run(_run(listens, specs, limits, config, groups, bound=bound, ready=ready,
                             owned=owned, connections=connections))
        except KeyboardInterrupt:
            pass
        except (ValueError, OSError) as exc:
            log.error("%s", exc)
            return 2
        return 0

    try:
        # the owner accepts on the private socket before the others mount it
        return Supervisor(count, listens, worker, config.path if config else None,
                          first_alone=shared).run()
    except KeyboardInterrupt:
        return 0
    except (ValueError, OSError) as exc:
        print(f"ninep serve: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _log_as_worker(index: int) -> None:
    """A worker's log lines name it and its pid (which worker served a connection)."""
    fmt = f"%(asctime)s %(levelname)s worker {index} [{os.getpid()}] %(name)s: %(message)s"
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(fmt))


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed; using the stdlib event loop")
        return
    uvloop.install()


def _listeners(args: argparse.Namespace, config: Config | None) -> list[ListenAddress]:
    """--stdio, else --listen (refused beside a config's [[listen]]), else the config's
    [[listen]], else systemd's sockets, else the default address."""
    if args.stdio:
        return [ListenAddress("stdio")]
    configured = list(config.listeners) if config else []
    if args.listen and configured:
        # Refused rather than merged or replaced: the file is where a configured
        # server's listeners are decided, and dropping them silently (or adding a
        # listener the file's policies were not written for) hides a mistake.
        assert config is not None
        raise ValueError(f"--listen beside {config.path}, which has [[listen]] tables: put "
                         "the listeners in the file, or remove its [[listen]] tables")
    if args.listen:
        return [parse_listen(u) for u in args.listen]
    if configured:
        return configured
    if systemd_sockets():
        return [ListenAddress("systemd")]
    return [parse_listen(DEFAULT_LISTEN)]


async def _policy(specs: list[MountSpec], config: Config | None, groups: str = "host",
                  owned: Owned | None = None) -> Policy:
    if config is not None:
        from ninep.config.runtime import build_policy
        # a worker other than the owner mounts the owner's exports instead (owner.py)
        return await build_policy(owned.route(config) if owned is not None else config)
    from ninep.backends.image_sources import open_in_order
    from ninep.config.defaults import default_policy, default_ram

    if owned is not None:  # a worker: what lives in one process is worker 0's
        mounts = await owned.open_mounts(specs, None if specs else default_ram())
    else:
        mounts = await open_in_order(specs)  # in order: "@" sources name files of earlier mounts
    return await default_policy(mounts, groups=groups)


async def _run(listens: list[ListenAddress], specs: list[MountSpec], limits: ServerLimits,
               config: Config | None = None, groups: str = "host",
               metrics_at: str | None = None, bound: Bound | None = None,
               ready: Callable[[], None] | None = None, owned: Owned | None = None,
               connections: ConnectionLimits | None = None) -> None:
    """Serve until SIGINT or SIGTERM; a worker (``bound``: the supervisor's sockets)
    calls ``ready`` instead of telling systemd, which the supervisor does."""
    server = Server(await _policy(specs, config, groups, owned), limits,
                    config.path if config else None, connections)
    if owned is not None:
        if config is not None:
            await owned.export_config_mounts(server.policy)
            server.config_filter = owned.route
            server.on_reload.append(owned.reloaded)
        await owned.start(server)
    # The start-up objects (a tar index of 100,000 members, ...) live as long as the
    # server: keep them out of the collector's full passes (0.4 s pauses otherwise).
    gc.freeze()
    loop = asyncio.get_running_loop()
    if [a.kind for a in listens] == ["stdio"]:
        try:
            await server.serve_stdio()
        finally:
            await server.policy.close()
        return
    if any(a.kind == "stdio" for a in listens):
        raise ValueError("a stdio listener cannot be combined with others")
    if bound is not None:
        for address, socks in bound:
            await server.adopt(address, socks)
    else:
        for address in listens:
            await server.listen(address)
    from ninep.server.metrics_http import MetricsListener
    exporter = MetricsListener(metrics_at) if metrics_at else None
    if exporter is not None:
        await exporter.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        notify_reloading()  # systemd's reload waits for the READY=1 after it
        task = loop.create_task(server.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)
        task.add_done_callback(lambda _: notify("READY=1"))

    loop.add_signal_handler(signal.SIGHUP, reload)
    if ready is not None:
        ready()
    else:
        notify("READY=1", "STATUS=listening on " + ", ".join(map(str, listens)))
    await stop.wait()
    log.info("stopping")
    notify("STOPPING=1")
    if exporter is not None:
        await exporter.close()
    await server.close()
    if owned is not None:
        await owned.close()
    await server.policy.close()  # backends write back and close (an ext2 image is marked clean)


def _check_config(args: argparse.Namespace) -> int:
    """Validate a config file (backends opened, then closed) and print its namespaces."""
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    from ninep.config.file import load_config
    from ninep.config.tree import describe_config

    try:
        config = load_config(args.file)
        policy = asyncio.run(_open_and_close(config))
    except (BackendConfigError, OSError) as exc:
        print(f"ninep check-config: {exc}", file=sys.stderr)
        return 2
    print("\n".join(describe_config(config, policy, DEFAULT_LISTEN)))
    from ninep.config.lint import config_warnings
    warnings = config_warnings(config)
    for warning in warnings:
        print(f"ninep check-config: warning: {warning}", file=sys.stderr)
    return 1 if warnings and args.strict else 0


async def _open_and_close(config: Config) -> Policy:
    from ninep.config.runtime import build_policy
    policy = await build_policy(config)
    await policy.close()
    return policy
