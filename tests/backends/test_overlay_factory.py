"""Tests for backends/overlay/factory.py: opening an overlay through the registry."""

from __future__ import annotations

import pytest

from ninep.backends.overlay import OverlayBackend, parse_layer
from ninep.backends.overlay import open_backend as open_overlay
from ninep.backends.overlay.lowers import shared_lower_count
from ninep.backends.ram import RamBackend
from ninep.backends.registry import BackendConfigError, open_backend, parse_mount

ASYNC = pytest.mark.asyncio


class CountingRam(RamBackend):
    """A RAM backend that remembers how often it was closed."""

    closed = 0

    async def close(self) -> None:
        self.closed += 1


def test_layer_specs() -> None:
    assert parse_layer("lower", "tar:/srv/a:b.tar") == ("tar", "/srv/a:b.tar", {})
    assert parse_layer("upper", "ram") == ("ram", "", {})
    assert parse_layer("upper", {"backend": "ram", "options": {"size": "1M"}}) == (
        "ram", "", {"size": "1M"})
    for bad, words in [(":x", "KIND[:SOURCE]"), ({"source": "/x"}, "'backend'"),
                       ({"backend": "ram", "opts": {}}, "unknown key 'opts'"),
                       ({"backend": "ram", "options": 3}, "'options' must be a table"),
                       (5, "expected KIND[:SOURCE] or a table")]:
        with pytest.raises(BackendConfigError, match=words.replace("[", r"\[")):
            parse_layer("lower", bad)


@ASYNC
async def test_registry_opens_command_line_and_table_forms() -> None:
    spec = parse_mount("/x=overlay,lower=ram,upper=ram:")
    backend = await spec.open()
    assert isinstance(backend, OverlayBackend)
    assert isinstance(backend.lower, RamBackend) and isinstance(backend.upper, RamBackend)
    await backend.close()
    table = await open_backend("overlay", options={
        "lower": {"backend": "ram"}, "upper": {"backend": "ram", "options": {"size": "1M"}}})
    assert isinstance(table, OverlayBackend) and isinstance(table.upper, RamBackend)
    assert table.upper.size_limit == 1 << 20
    await table.close()
    default_upper = await open_backend("overlay", options={"lower": "ram"})
    assert isinstance(default_upper, OverlayBackend)
    assert isinstance(default_upper.upper, RamBackend)
    await default_upper.close()


@ASYNC
async def test_configuration_errors_name_the_layer() -> None:
    with pytest.raises(BackendConfigError, match="overlay needs option lower"):
        await open_backend("overlay", options={"upper": "ram"}, where="--mount '/x'")
    with pytest.raises(BackendConfigError, match="overlay lower: unknown backend 'nope'"):
        await open_backend("overlay", options={"lower": "nope"})
    with pytest.raises(BackendConfigError, match="overlay upper: unknown option 'colour'"):
        await open_backend("overlay", options={
            "lower": "ram", "upper": {"backend": "ram", "options": {"colour": "red"}}})
    with pytest.raises(BackendConfigError, match="unknown option 'extra'"):
        await open_backend("overlay", options={"lower": "ram", "extra": "1"})
    with pytest.raises(BackendConfigError, match="takes no source"):
        await open_backend("overlay", "/somewhere", options={"lower": "ram"})


@ASYNC
async def test_a_shared_lower_is_not_closed_with_the_overlay() -> None:
    shared = CountingRam()
    shared.add_file("f", b"shared")
    first = await open_overlay("", {}, False, shared_lower=shared)
    second = await open_overlay("", {"upper": "ram"}, False, shared_lower=shared)
    assert first.lower is shared and second.lower is shared and not first.owns_lower
    await first.close()
    await second.close()
    assert shared.closed == 0
    with pytest.raises(BackendConfigError, match="already open lower"):
        await open_overlay("", {"lower": "ram"}, False, shared_lower=shared)
    owned = CountingRam()
    await OverlayBackend(owned, RamBackend()).close()
    assert owned.closed == 1


@ASYNC
async def test_overlays_naming_one_lower_share_it_until_the_last_closes() -> None:
    before = shared_lower_count()
    first = await open_backend("overlay", options={"lower": "ram:", "upper": "ram"})
    second = await open_backend("overlay", options={"lower": {"backend": "ram"}})
    other = await open_backend("overlay", options={
        "lower": {"backend": "ram", "options": {"size": "1M"}}})
    alone = await open_backend("overlay", options={"lower": "ram", "share_lower": "false"})
    assert isinstance(first, OverlayBackend) and isinstance(second, OverlayBackend)
    assert isinstance(other, OverlayBackend) and isinstance(alone, OverlayBackend)
    assert first.lower is second.lower  # one instance: a per-connection overlay parses once
    assert other.lower is not first.lower and alone.lower is not first.lower
    assert first.upper is not second.upper  # each overlay's changes are its own
    assert shared_lower_count() == before + 2
    await first.close()
    assert shared_lower_count() == before + 2
    await first.close()  # a second close does not release it twice
    await second.close()
    await other.close()
    await alone.close()
    assert shared_lower_count() == before


@ASYNC
async def test_a_lower_that_fails_to_open_is_not_kept() -> None:
    before = shared_lower_count()
    with pytest.raises(BackendConfigError, match="overlay lower: unknown option 'bogus'"):
        await open_backend("overlay", options={
            "lower": {"backend": "ram", "options": {"bogus": "1"}}})
    with pytest.raises(BackendConfigError, match="overlay upper"):
        await open_backend("overlay", options={"lower": "ram", "upper": "nope"})
    assert shared_lower_count() == before
