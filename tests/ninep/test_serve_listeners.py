"""``ninep serve``'s listeners as an operator starts them: --listen beside --config, and
socket activation by systemd's own tool (contrib/systemd)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NINEP = [sys.executable, "-m", "ninep"]
RAM = ('[namespaces.data]\nmounts = [{ path = "/", backend = "ram" }]\n\n'
       '[[policy]]\nnamespace = "data"\n')


def test_listen_beside_a_config_with_listeners_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "ninep.toml"
    config.write_text('[[listen]]\nkind = "unix"\npath = "ninep.sock"\n\n' + RAM)
    result = subprocess.run([*NINEP, "serve", "--config", str(config),
                             "--listen", "tcp://127.0.0.1:1"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert (f"ninep serve: --listen beside {config}, which has [[listen]] tables"
            in result.stderr)
    assert not (tmp_path / "ninep.sock").exists()
