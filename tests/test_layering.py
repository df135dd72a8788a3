"""The import rules of docs/architecture.md ("Arrows that must never exist"), read with ast.

Every module under ninep/ (vfs/, backends/ and clients/ through the ninep/ links) is
parsed, its imports resolved to module names (relative ones included), and each
rule is checked against them; a subprocess checks what ``import ninep.clients``
really loads.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ninep"
#: The repository's own folders whose Python files the top-level-name rule reads.
SOURCE_DIRS = ("ninep", "vfs", "backends", "clients", "tests", "bench", "scripts", "contrib",
               "docs")
LINKED = ("vfs", "backends", "clients")  # root folders installed as ninep.vfs, ...


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, e.g. ninep.vfs.policy
    target: str  # the imported module (or the package a name comes from)
    line: int
    top: bool  # run when the module is imported: not in a function, not under TYPE_CHECKING


def module_files() -> dict[str, Path]:
    """Every module of the ninep package by name, through the links."""
    out = {}
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for path in sorted(Path(folder) / f for f in files if f.endswith(".py")):
            out[_module_name(path)] = path
    return out


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = module_files()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _type_checking(child):
            for stmt in child.body:
                yield stmt, False
                yield from _walk(stmt, False)
            for stmt in child.orelse:
                yield stmt, top
                yield from _walk(stmt, top)
        else:
            yield child, top
            yield from _walk(child, top)


def imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node, top in _walk(tree, True):
        if isinstance(node, ast.Import):
            out += [Import(module, alias.name, node.lineno, top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(Import(module, sub if sub in MODULES else base, node.lineno, top))
    return out


ALL_IMPORTS = [i for name, path in MODULES.items() for i in imports_of(name, path)]


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _offenders(layer: str, allowed: tuple[str, ...]) -> list[str]:
    """Imports by modules of ``layer`` of ninep modules outside ``allowed``."""
    return [f"{i.module}:{i.line} imports {i.target}" for i in ALL_IMPORTS
            if _inside(i.module, layer) and _inside(i.target, "ninep")
            and not any(_inside(i.target, a) for a in allowed)]


def test_the_package_is_found_through_the_links() -> None:
    for name in ("ninep.wire.messages", "ninep.vfs.policy", "ninep.backends.registry",
                 "ninep.clients.client", "ninep.server.session", "ninep.config.file"):
        assert name in MODULES


def test_no_top_level_vfs_backends_or_clients_imports_in_the_repository() -> None:
    """Everything installed lives under ninep.: a top-level ``vfs`` would import the
    root folder (or another distribution's package of that name)."""
    found = []
    for folder in SOURCE_DIRS:
        base = ROOT / folder
        if not base.is_dir() or base.is_symlink():
            continue
        for path in base.rglob("*.py"):
            if "__pycache__" in path.parts or any(p.startswith(".") for p in path.parts):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                else:
                    continue
                found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                          for name in names if name.split(".")[0] in LINKED]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("layer", "allowed"), [
    # the protocol is sans-I/O and knows nothing of who speaks it
    ("ninep.wire", ("ninep.wire",)),
    # a client program loads no server, configuration, vfs or backend
    ("ninep.clients", ("ninep.clients", "ninep.wire")),
    # the namespace serves whatever backend it is given; policies come in built
    ("ninep.vfs", ("ninep.vfs", "ninep.wire")),
    # a backend implements the vfs contract; the "9p" backend speaks as a client
    ("ninep.backends", ("ninep.backends", "ninep.vfs", "ninep.wire", "ninep.clients")),
])
def test_layer_imports_only_what_it_may(layer: str, allowed: tuple[str, ...]) -> None:
    offenders = _offenders(layer, allowed)
    assert not offenders, "\n".join(offenders)


def test_the_configuration_imports_nothing_of_the_server_or_the_command_line() -> None:
    """The server reads its configuration, never the other way round (there was a
    circle: config.file imported server.listeners, which imported config.tls)."""
    offenders = [f"{i.module}:{i.line} imports {i.target}" for i in ALL_IMPORTS
                 if _inside(i.module, "ninep.config")
                 and any(_inside(i.target, p) for p in ("ninep.server", "ninep.cli",
                                                        "ninep.mount"))]
    assert not offenders, "\n".join(offenders)


#: The 9P open-flag names a backend no longer decodes itself: vfs.node's OpenFlags does.
OPEN_FLAG_NAMES = frozenset({"O_ACCMODE", "O_RDONLY", "O_WRONLY", "O_RDWR", "O_TRUNC",
                             "O_APPEND", "O_DIRECTORY", "O_CREAT", "O_EXCL", "O_NOCTTY",
                             "O_NOFOLLOW", "open_access"})


def open_flag_imports(module: str, source: str, is_package: bool = False) -> list[str]:
    """The open-flag names ``module`` imports from ninep.wire.constants."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.ImportFrom)
                and _resolve(module, is_package, node) == "ninep.wire.constants"):
            found += [f"{module}:{node.lineno} imports {alias.name}" for alias in node.names
                      if alias.name in OPEN_FLAG_NAMES]
    return found


def test_backends_ask_open_flags_instead_of_decoding_o_bits() -> None:
    """The contract hands a backend OpenFlags (vfs/node.py); only that type decodes
    the bits, so no backend (nor vfs/ outside node.py) imports them."""
    offenders = [hit for name, path in MODULES.items()
                 if (_inside(name, "ninep.backends") or _inside(name, "ninep.vfs"))
                 and name != "ninep.vfs.node"
                 for hit in open_flag_imports(name, path.read_text(),
                                              path.name == "__init__.py")]
    assert not offenders, "\n".join(offenders)


def test_the_open_flag_rule_sees_an_offender() -> None:
    source = "from ninep.wire.constants import QTDIR, O_TRUNC\nfrom ...wire.constants import O_RDWR"
    assert open_flag_imports("ninep.backends.tar.nodes", source) == [
        "ninep.backends.tar.nodes:1 imports O_TRUNC", "ninep.backends.tar.nodes:2 imports O_RDWR"]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def test_no_module_level_import_cycles_inside_ninep() -> None:
    """Imports that run when a module is imported (not in a function, not under
    TYPE_CHECKING) form no cycle: a cycle works or not by the order of first import."""
    edges: dict[str, set[str]] = {}
    for i in ALL_IMPORTS:
        if i.top and i.target in MODULES and i.target != i.module:
            edges.setdefault(i.module, set()).add(i.target)
    assert _cycles(edges) == []


def test_the_checker_sees_a_cycle_and_a_relative_import() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    node = ast.parse("from ..node import Attr").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _resolve("ninep.backends.tar.nodes", False, node) == "ninep.backends.node"
    assert _resolve("ninep.backends.tar", True, node) == "ninep.backends.node"


def test_importing_the_client_library_loads_no_server_vfs_or_backend_module() -> None:
    code = ("import sys, ninep.clients, ninep.clients.client, ninep.clients.sync\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith("
            "('ninep.server', 'ninep.config', 'ninep.vfs', 'ninep.backends')))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.split() == []
