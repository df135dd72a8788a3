"""Import rules of the wire: the client loads no server, vfs or backend module; the wire
imports nothing of the rest of ninep; server/auth.py and server/session.py form no circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

NINEP = Path(__file__).resolve().parents[2] / "ninep"


def _loaded_after(statement: str) -> set[str]:
    """The ninep modules in sys.modules after ``statement`` in a fresh interpreter."""
    code = (f"import sys\n{statement}\n"
            "print('\\n'.join(k for k in sys.modules if k.split('.')[0] == 'ninep'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    return set(done.stdout.split())


def test_the_client_loads_no_server_vfs_or_backend() -> None:
    loaded = _loaded_after("import ninep.clients")
    assert "ninep.clients.auth" in loaded and "ninep.wire.auth" in loaded
    assert {m for m in loaded if m.split(".")[1:2] in (["server"], ["vfs"], ["backends"])} == set()


def test_the_wire_loads_nothing_else_of_ninep() -> None:
    loaded = _loaded_after("import ninep.wire.messages, ninep.wire.framing, ninep.wire.fast, "
                           "ninep.wire.auth, ninep.wire.dirent")
    assert {m for m in loaded if m not in ("ninep", "ninep.wire")
            and not m.startswith("ninep.wire.")} == set()


def _imported(path: Path) -> set[str]:
    """Every module a source file imports, at any level (TYPE_CHECKING blocks included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_server_auth_does_not_import_the_session() -> None:
    assert "ninep.server.auth" in _imported(NINEP / "server" / "session.py")
    assert not {n for n in _imported(NINEP / "server" / "auth.py")
                if n.startswith("ninep.server.session")}


def test_wire_sources_import_only_the_wire() -> None:
    for path in sorted((NINEP / "wire").glob("*.py")):
        outside = {n for n in _imported(path)
                   if n.startswith("ninep") and not n.startswith("ninep.wire")}
        assert outside == set(), path.name
