"""ninep/server/admission.py: counting in all and per IP address, released once; which
peers are counted per address; refusals logged once per peer per window."""

from __future__ import annotations

import logging

import pytest

from ninep.config.connections import ConnectionLimits
from ninep.server import admission as admission_module
from ninep.server.admission import REFUSAL_LOG_PEERS, Admission, peer_host


def test_places_are_counted_in_all_and_per_address_and_given_back_once() -> None:
    admission = Admission(ConnectionLimits(max_connections=4, max_connections_per_peer=2))
    a1 = admission.admit(("192.0.2.1", 1000), "tcp")
    a2 = admission.admit(("192.0.2.1", 1001), "tls")
    assert a1 is not None and a2 is not None
    assert admission.admit(("192.0.2.1", 1002), "tcp") is None  # its third
    b = admission.admit(("192.0.2.2", 1000), "tcp")
    local = admission.admit("", "unix")  # never counted per peer
    assert b is not None and local is not None and admission.open == 4
    assert admission.admit(("192.0.2.3", 1000), "tcp") is None  # the server's fifth
    a1.release()
    a1.release()  # once only
    assert admission.open == 3 and admission.held_by("192.0.2.1") == 1
    assert admission.admit(("192.0.2.1", 1003), "tcp") is not None


@pytest.mark.parametrize(("address", "kind", "host"), [
    (("192.0.2.1", 5), "tcp", "192.0.2.1"),
    (("::ffff:192.0.2.1", 5, 0, 0), "tcp", "192.0.2.1"),  # a dual-stack listener's
    (("2001:db8::1", 5, 0, 0), "tls", "2001:db8::1"),
    ("/run/ninep.sock", "unix", None),
    ("stdio", "stdio", None),
    (("192.0.2.1", 5), "stdio", None),  # a socket handed over as stdin
])
def test_who_is_counted_per_address(address: object, kind: str, host: str | None) -> None:
    assert peer_host(address, kind) == host


def test_refusals_are_logged_once_per_peer_per_window(caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(admission_module.time, "monotonic", lambda: now[0])
    admission = Admission(ConnectionLimits(max_connections=1, max_connections_per_peer=1))
    assert admission.admit(("192.0.2.1", 1), "tcp") is not None
    with caplog.at_level(logging.WARNING, logger="ninep.server.admission"):
        for port in range(10):
            assert admission.admit(("192.0.2.1", port), "tcp") is None
            assert admission.admit(("192.0.2.2", port), "tcp") is None
        assert [r.getMessage().split(":")[0] for r in caplog.records] == ["192.0.2.1",
                                                                        "192.0.2.2"]
        for n in range(REFUSAL_LOG_PEERS + 50):  # a flood from many addresses
            admission.admit((f"10.0.{n // 256}.{n % 256}", 1), "tcp")
        assert len(caplog.records) == REFUSAL_LOG_PEERS
        now[0] += admission_module.REFUSAL_LOG_WINDOW
        admission.admit(("192.0.2.1", 99), "tcp")
    summary = caplog.records[-2].getMessage()
    assert summary.startswith(f"{18 + 52} more connections were refused"), summary
    assert caplog.records[-1].getMessage().startswith("192.0.2.1: connection refused")
