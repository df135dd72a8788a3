"""The operator's live view (ninep/server/metrics.py, metrics_http.py, metrics_files.py),
against a real ``ninep serve`` process: its Prometheus endpoint scraped over HTTP and
parsed by prometheus-client's own parser, and its ``metrics`` files read by a client
whose policy grants them, while another client works."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ninep.backends.registry import BackendConfigError
from ninep.cli import main
from ninep.clients import LOCK_UNLCK, LOCK_WRLCK, Client
from ninep.config.file import parse_config
from tests.conftest import free_port, wait_for_port
from tests.hostile.serverproc import ServerProcess, serve_process

CONFIG = """
[namespaces.data]
mounts = [{{ path = "/", backend = "ram", options = {{ mode = "1777" }} }}]

[namespaces.ops]
mounts = [{{ path = "/", backend = "metrics" }}]

[[policy]]
name = "operators"
namespace = "ops"
match = {{ transport = "unix", peer_uid = {uid} }}

[[policy]]
name = "anyone"
namespace = "data"
match = {{ transport = "tcp" }}
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Served:
    def __init__(self, proc: ServerProcess, metrics_port: int, sock: Path) -> None:
        self.proc = proc
        self.metrics_port = metrics_port
        self.tcp = f"tcp://127.0.0.1:{proc.port}"
        self.unix = f"unix://{sock}"

    def get(self, path: str = "/metrics", method: str = "GET") -> tuple[int, str, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.metrics_port}{path}",
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, reply.headers["Content-Type"], reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()

    async def scrape(self) -> Samples:
        status, content_type, body = await asyncio.to_thread(self.get)
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        out: Samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                out[sample.name, frozenset(sample.labels.items())] = sample.value
        return out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = tmp_path / "ninep.toml"
    config.write_text(CONFIG.format(uid=os.getuid()))
    sock = tmp_path / "ninep.sock"
    port = free_port()
    with serve_process(["--config", str(config), "--listen", f"unix://{sock}",
                        "--metrics", f"tcp://127.0.0.1:{port}"], tmp_path) as proc:
        wait_for_port(port, proc.proc)
        yield Served(proc, port, sock)


def served_log_of(tmp_path: Path) -> str:
    """The log of a server started with ``[metrics] listen`` (port 0: any free one)."""
    config = tmp_path / "with-metrics.toml"
    config.write_text('[metrics]\nlisten = "tcp://127.0.0.1:0"\n' + CONFIG.format(uid=0))
    with serve_process(["--config", str(config)], tmp_path) as proc:
        for _ in range(200):
            if "metrics on" in proc.log_text():
                break
            time.sleep(0.05)
    return proc.log_text()


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


async def test_scrape_counts_identities_and_totals_after_close(served: Served) -> None:
    client = await Client.connect(served.tcp)
    tree = await client.attach("alice")
    for i in range(3):
        await tree.mkdir(f"/d{i}")
    for i in range(5):
        await tree.write_bytes(f"/d0/f{i}", b"x" * 100)
    samples = await served.scrape()
    assert value(samples, "ninep_requests_total", op="Tmkdir") == 3
    assert value(samples, "ninep_requests_total", op="Tlcreate") == 5
    assert value(samples, "ninep_requests_total", op="Twrite") == 5
    assert value(samples, "ninep_connections", transport="tcp") == 1
    assert value(samples, "ninep_connections_accepted_total") == 2  # with the start-up probe
    # the first attach of a uname waits for the passwd lookup's thread
    assert (value(samples, "ninep_request_wait_seconds_count", op="Tattach") or 0) >= 1
    (info,) = labelled(samples, "ninep_connection_info")
    assert info["transport"] == "tcp" and info["peer"].startswith("127.0.0.1:")
    (attach,) = labelled(samples, "ninep_attach_info")
    assert attach == {"conn": info["conn"], "uname": "alice", "uid": "65534", "aname": "",
                      "namespace": "data", "policy": "anyone", "access": "rw"}
    sent = value(samples, "ninep_connection_requests_total", conn=info["conn"])
    assert sent is not None and sent >= 3 + 5 * 3
    await client.close()
    for _ in range(100):  # the server notices the close on its next loop turn
        samples = await served.scrape()
        if value(samples, "ninep_connections", transport="tcp") is None:
            break
        await asyncio.sleep(0.05)
    assert labelled(samples, "ninep_connection_info") == []
    assert value(samples, "ninep_requests_total", op="Tmkdir") == 3  # folded into the totals
    assert value(samples, "ninep_requests_total", op="Tlcreate") == 5
    assert value(samples, "process_open_fds") is not None  # prometheus-client's own collectors


async def test_a_request_that_waits_is_in_flight_then_timed(served: Served) -> None:
    holder = await Client.connect(served.tcp)
    waiter = await Client.connect(served.tcp)
    try:
        tree = await holder.attach("alice")
        await tree.write_bytes("/locked", b"x")
        held = await tree.open("/locked", "r+b")
        await held.lock(LOCK_WRLCK)
        other = await (await waiter.attach("alice")).open("/locked", "r+b")
        blocked = asyncio.create_task(other.lock(LOCK_WRLCK, block=True))
        for _ in range(200):
            samples = await served.scrape()
            if value(samples, "ninep_requests_waiting") == 1:
                break
            await asyncio.sleep(0.02)
        assert value(samples, "ninep_requests_waiting") == 1
        waiting = {labels["conn"]: value(samples, "ninep_connection_requests_waiting", **labels)
                   for labels in labelled(samples, "ninep_connection_requests_waiting")}
        assert sorted(waiting.values()) == [0, 1]
        await held.lock(LOCK_UNLCK)
        await blocked
        samples = await served.scrape()
        assert value(samples, "ninep_requests_waiting") == 0
        timed = value(samples, "ninep_request_wait_seconds_count", op="Tlock")
        assert timed is not None and timed >= 1  # the blocked one, at least
        assert value(samples, "ninep_request_wait_seconds_bucket", op="Tlock", le="+Inf") == timed
    finally:
        await holder.close()
        await waiter.close()


async def test_operator_files_through_a_client(served: Served) -> None:
    worker = await Client.connect(served.tcp)
    operator = await Client.connect(served.unix)
    try:
        work = await worker.attach("alice")
        await work.mkdir("/busy")
        assert "connections" not in await work.listdir("/")  # not in its namespace
        ops = await operator.attach("root")
        assert sorted(await ops.listdir("/")) == ["connections", "metrics", "ops"]
        text = (await ops.read_bytes("/connections")).decode()
        assert "# 2 open, 3 accepted" in text  # and the start-up probe, gone
        assert "attach uname='alice' uid=65534 aname='' namespace='data' policy='anyone' rw" \
            in text
        assert f"unix:local uid={os.getuid()}" in text
        assert "namespace='ops' policy='operators'" in text
        assert "  waited Tattach=1/" in text  # each connection's first attach waited
        table = (await ops.read_bytes("/ops")).decode().splitlines()
        assert table[0].split() == ["op", "requests", "waited", "mean", "ms", "p50", "ms",
                                    "p99", "ms"]
        rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
        assert rows["Tmkdir"][:2] == ["1", "0"]
        assert int(rows["Tattach"][1]) >= 1  # the passwd lookups waited
        prometheus = (await ops.read_bytes("/metrics")).decode()
        families = {f.name for f in text_string_to_metric_families(prometheus)}
        assert {"ninep_requests", "ninep_connection_info", "ninep_attach_info"} <= families
        stat = await ops.stat("/ops")
        assert stat.st_mode & 0o777 == 0o444 and stat.st_size > 0
        with pytest.raises(OSError) as refused:
            await ops.write_bytes("/ops", b"reset")
        assert refused.value.errno == errno.EROFS
    finally:
        await worker.close()
        await operator.close()


def test_http_answers_only_get_metrics(served: Served) -> None:
    status, _, body = served.get("/")
    assert status == 404 and b"/metrics" in body
    assert served.get("/metrics", method="POST")[0] == 405
    status, _, body = served.get("/metrics", method="HEAD")
    assert status == 200 and body == b""
    # a request head over 8 KiB, then garbage: each connection closed, server fine
    with socket.create_connection(("127.0.0.1", served.metrics_port)) as sock:
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000)
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass  # closed with our bytes unread: a reset
    with socket.create_connection(("127.0.0.1", served.metrics_port)) as sock:
        sock.sendall(b"\x00\x01garbage\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert served.get()[0] == 200
    assert served.proc.alive()


async def test_off_by_default(tmp_path: Path) -> None:
    with serve_process(["--mount", "/=ram"], tmp_path) as proc:
        client = await Client.connect(f"tcp://127.0.0.1:{proc.port}")
        await client.attach("alice")  # the server is past its start-up
        await client.close()
    assert "metrics on" not in proc.log_text()
    assert "metrics on http://127.0.0.1:" in served_log_of(tmp_path)


MINIMAL = {"namespaces": {"data": {"mounts": [{"path": "/", "backend": "ram"}]}},
           "policy": [{"namespace": "data"}]}


def test_config_key_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "ninep.toml"
    assert parse_config(MINIMAL, path).metrics is None  # off unless asked for
    on = parse_config({**MINIMAL, "metrics": {"listen": "unix:///run/ninep-metrics.sock"}}, path)
    assert on.metrics == "unix:///run/ninep-metrics.sock"
    with pytest.raises(BackendConfigError, match=r"ninep.toml: \[metrics\]: listen: .*"
                       r"expected tcp://HOST:PORT or unix:///PATH"):
        parse_config({**MINIMAL, "metrics": {"listen": "http://127.0.0.1:9640"}}, path)
    with pytest.raises(BackendConfigError, match=r"\[metrics\]: port: unknown key"):
        parse_config({**MINIMAL, "metrics": {"port": 9640}}, path)


def test_a_bad_metrics_option_is_refused_before_serving(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--mount", "/=ram", "--metrics", "127.0.0.1:9640"]) == 2
    assert "expected tcp://HOST:PORT or unix:///PATH" in capsys.readouterr().err
