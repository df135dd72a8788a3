"""What contrib/ ships for operators: the systemd units, checked by systemd's own tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"


def unit_lines(name: str) -> dict[str, list[str]]:
    """KEY -> values of a unit file (comments and sections dropped)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze (Debian: systemd) is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    ninep = Path(sys.executable).parent / "ninep"
    for name in ("ninep.socket", "ninep.service"):
        text = (UNITS / name).read_text()
        # systemd-analyze checks that the executable exists: point it at this one
        text = text.replace("ExecStart=ninep ", f"ExecStart={ninep} ")
        (tmp_path / name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(tmp_path / "ninep.socket"), str(tmp_path / "ninep.service")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_units_fit_the_server() -> None:
    socket_unit, service = unit_lines("ninep.socket"), unit_lines("ninep.service")
    # loopback by default; the name is what a [[listen]] kind = "systemd" table takes
    assert socket_unit["ListenStream"] == ["127.0.0.1:5640"]
    assert socket_unit["FileDescriptorName"] == ["ninep"]
    # READY=1 comes from ninep/sd_notify.py; SIGHUP is the server's reload
    assert service["Type"] == ["notify"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["RestartPreventExitStatus"] == ["2"]  # ninep serve's exit for a bad config
