"""The README's Python examples run as written against a real server."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.conftest import RunningServer

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_sync_example(ninep_server: RunningServer, capsys: object) -> None:
    sync, _ = python_blocks()
    exec(sync.replace("tcp://127.0.0.1:5640", ninep_server.tcp_url), {})


def test_the_async_example(ninep_server: RunningServer) -> None:
    sync, asynchronous = python_blocks()
    exec(sync.replace("tcp://127.0.0.1:5640", ninep_server.tcp_url), {})
    body = asynchronous.replace("tcp://127.0.0.1:5640", ninep_server.tcp_url)
    namespace: dict[str, object] = {}
    exec("async def example():\n" + "".join(f"    {line}\n" for line in body.splitlines()),
         namespace)
    asyncio.run(namespace["example"]())  # type: ignore[operator]
