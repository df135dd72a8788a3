"""--workers and [server] workers: what is accepted, and what N > 1 refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ninep.backends.registry import BackendConfigError
from ninep.config.file import parse_config
from ninep.workers import MAX_WORKERS, worker_count

POLICY = {"namespaces": {"main": {"mounts": [{"path": "/", "backend": "null"}]}},
          "policy": [{"name": "all", "namespace": "main"}]}


def test_worker_count() -> None:
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    assert worker_count("3") == 3
    assert worker_count(MAX_WORKERS) == MAX_WORKERS
    for bad in ("0", 0, MAX_WORKERS + 1, "-2", "many", "2.5"):
        with pytest.raises(ValueError):
            worker_count(bad)


def test_the_config_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    assert parse_config(POLICY, path).workers == 1
    assert parse_config({**POLICY, "server": {"workers": 4}}, path).workers == 4
    assert parse_config({**POLICY, "server": {"workers": "auto"}}, path).workers == \
        len(os.sched_getaffinity(0))
    for bad in (0, True, 1.5, "lots", [2]):
        with pytest.raises(BackendConfigError, match=r"\[server\]: workers: "):
            parse_config({**POLICY, "server": {"workers": bad}}, path)


def serve(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "ninep", "serve", *args], capture_output=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "said"), [
    (["--workers", "0"], b"--workers 0: expected 1.."),
    (["--workers", "two"], b"--workers 'two': expected a count"),
    (["--workers", "2", "--stdio"], b"a stdio connection is served by one process"),
    (["--workers", "2", "--metrics", "tcp://127.0.0.1:0"], b"the metrics endpoint"),
])
def test_what_the_command_line_refuses(args: list[str], said: bytes) -> None:
    result = serve("--mount", "/=null", *args)
    assert result.returncode == 2
    assert said in result.stderr, result.stderr
