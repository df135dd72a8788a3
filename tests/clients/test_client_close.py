"""The connection itself: closing with requests queued writes nothing; uvloop works too."""

from __future__ import annotations

import logging

import pytest

from ninep.clients import Client
from tests.clients.targets import Target


async def test_close_with_background_clunks_queued_writes_nothing(
        ninep_target: Target, caplog: pytest.LogCaptureFixture) -> None:
    client = await Client.connect(ninep_target.url, max_inflight=8)
    root = await client.attach(ninep_target.uname, "", ninep_target.n_uname)
    fids = [await root.root.clone() for _ in range(300)]
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        for fid in fids:
            fid.release()  # 300 Tclunks queued behind 8 request slots
        await client.close()
    # asyncio logs "socket.send() raised exception." for each write to a closed socket
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert client.closed and client.pending == 0


def test_the_client_runs_on_uvloop(ninep_target: Target) -> None:
    import uvloop

    async def round_trip() -> bytes:
        async with await Client.connect(ninep_target.url) as client:
            root = await client.attach(ninep_target.uname, "", ninep_target.n_uname)
            await root.write_bytes("on-uvloop", b"fast")
            return await root.read_bytes("on-uvloop")

    assert uvloop.run(round_trip()) == b"fast"
