"""The layer rule, read from the imports (Python's ast), followed transitively.

What counts is what a module LOADS when it is imported: its top-level ``import`` and
``from ... import`` statements (also inside top-level ``if``/``try``/``with`` and class bodies),
plus every package ``__init__`` on the way (importing ``aovs.openflow.flows`` executes
``aovs/openflow/__init__.py`` first). Imports inside functions (lazy imports) and inside
``if TYPE_CHECKING:`` blocks are not load-time imports and do not count.

The rule:

- PURE modules (the domain values, the pipelines, the firewall drivers, the Flow values and
  table constants, the agent core and everything it loads) load none of ``FORBIDDEN_IN_PURE``:
  no asyncio, sockets, ssl, subprocess, selectors, AMQP, uvloop, os-ken's app/controller/hub
  parts, and no adapter or shell code of aovs.
- ADAPTERS (``aovs.ovsdb``, ``aovs.openflow``, ``aovs.rpc``, ``aovs.observability``) never load
  ``aovs.agent``.
- Only the COMPOSERS (``aovs.cli``, the agent shell ``aovs.agent.agent``, ``aovs.demo``,
  ``aovs.sandbox``, ``aovs.testing``) load the agent shell or another composer.
- No import cycles between aovs modules (for this rule ``if TYPE_CHECKING:`` imports count).

Each violation is reported with the import chain that causes it. Third-party packages are not
followed by the ast walk (only what aovs imports of them directly counts); a run-time check in a
fresh interpreter covers the main pure roots (pydantic, the one library of the pure layer, loads
``socket`` itself, through ``email.utils``, so the run-time check tolerates socket/selectors).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# The pure roots: each of these, and everything it loads, must stay free of FORBIDDEN_IN_PURE.
PURE_ROOTS = (
    "aovs.model",
    "aovs.owners",
    "aovs.config",
    "aovs.backoff",
    "aovs.pipelines",  # a package: every module below it, see _pure_modules()
    "aovs.firewall",
    "aovs.dataplane",  # the desired-flow composition
    "aovs.openflow.flows",
    "aovs.openflow.errors",
    "aovs.rpc.events",
    "aovs.rpc.server_replies",
    "aovs.agent.core",
    "aovs.agent.tunnels",
    "aovs.agent.snapshot",
    "aovs.agent.latencies",
)

# Checked again at run time, in a fresh interpreter (this covers what third-party packages
# load, which the ast walk does not follow). socket and selectors are not in this list:
# pydantic itself loads them (through email.utils) for every model.
RUNTIME_ROOTS = ("aovs.agent.core", "aovs.dataplane", "aovs.firewall.openvswitch")
RUNTIME_FORBIDDEN = (
    "asyncio", "ssl", "subprocess", "aio_pika", "aiormq", "pamqp", "uvloop", "eventlet",
    "os_ken.app", "os_ken.controller", "os_ken.lib.hub",
)  # fmt: skip

# Third-party and stdlib modules a pure module must not load (a name or a dotted prefix).
FORBIDDEN_EXTERNAL = (
    "asyncio",
    "socket",
    "ssl",
    "subprocess",
    "selectors",
    "aio_pika",
    "aiormq",
    "pamqp",
    "uvloop",
    "eventlet",
    "os_ken.app",
    "os_ken.controller",
    "os_ken.lib.hub",
    "os_ken.base",
)

# aovs modules (or packages, with everything below them) that are adapters' I/O or the shell.
FORBIDDEN_INTERNAL = (
    "aovs.ovsdb.client",
    "aovs.ovsdb.connection",
    "aovs.ovsdb.transaction",
    "aovs.ovsdb.monitor",
    "aovs.openflow.channel",
    "aovs.openflow.bundle",
    "aovs.openflow.reconcile",
    "aovs.rpc.amqp",
    "aovs.rpc.notifications",
    "aovs.rpc.server_api",
    "aovs.rpc.state_report",
    "aovs.observability",
    "aovs.agent.agent",
    "aovs.agent.reporter",
    "aovs.agent.telemetry",
    "aovs.agent.tunnel_io",
    "aovs.agent.snapshot_writer",
    "aovs.cli",
    "aovs.demo",
    "aovs.sandbox",
    "aovs.testing",
    "aovs.cleanup",
)

ADAPTERS = ("aovs.ovsdb", "aovs.openflow", "aovs.rpc", "aovs.observability")

COMPOSERS = ("aovs.cli", "aovs.agent.agent", "aovs.demo", "aovs.sandbox", "aovs.testing")


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@cache
def _modules() -> dict[str, Path]:
    """Every aovs module by dotted name (a package by its ``__init__.py``)."""
    found: dict[str, Path] = {}
    for path in sorted((SRC / "aovs").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_package(name: str) -> bool:
    return _modules()[name].name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_statements(
    body: list[ast.stmt], *, type_checking: bool = False
) -> Iterator[ast.stmt]:
    """Statements executed when the module is imported (not function bodies); with
    ``type_checking``, also those under ``if TYPE_CHECKING:`` (for the cycle rule)."""
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        yield stmt
        blocks: list[list[ast.stmt]] = []
        if isinstance(stmt, ast.If):
            if type_checking or not _is_type_checking(stmt.test):
                blocks.append(stmt.body)
            blocks.append(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            blocks += [stmt.body, stmt.orelse, stmt.finalbody]
            blocks += [handler.body for handler in stmt.handlers]
        elif isinstance(stmt, ast.For | ast.While):
            blocks += [stmt.body, stmt.orelse]
        elif isinstance(stmt, ast.With | ast.ClassDef):
            blocks.append(stmt.body)
        for block in blocks:
            yield from _load_time_statements(block, type_checking=type_checking)


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` loads ``a``, ``a.b`` and ``a.b.c``, in that order."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def _imports(module: str, type_checking: bool = False) -> tuple[str, ...]:
    """What importing ``module`` loads directly: aovs modules and external dotted names."""
    path = _modules()[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if _is_package(module) else module.rpartition(".")[0]
    loaded: list[str] = []
    for stmt in _load_time_statements(tree.body, type_checking=type_checking):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                loaded.extend(_with_parents(alias.name))
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (stmt.level - 1)]
                base = ".".join(base_parts + ([stmt.module] if stmt.module else []))
            else:
                base = stmt.module or ""
            loaded.extend(_with_parents(base))
            for alias in stmt.names:
                candidate = f"{base}.{alias.name}"
                if candidate in _modules():
                    loaded.append(candidate)
    own_parents = set(_with_parents(module))
    result: list[str] = []
    for name in loaded:
        if name in own_parents or name in result:
            continue  # a module's own packages are already loading when it runs
        result.append(name)
    return tuple(result)


def _chains(roots: list[str]) -> dict[str, list[str]]:
    """Breadth-first from ``roots`` (with their packages): every loaded name -> its chain."""
    chains: dict[str, list[str]] = {}
    queue: deque[str] = deque()
    for root in roots:
        for name in _with_parents(root):
            if name not in chains:
                chains[name] = [name]
                queue.append(name)
    while queue:
        current = queue.popleft()
        if current not in _modules():
            continue  # external: not followed
        for name in _imports(current):
            if name not in chains:
                chains[name] = [*chains[current], name]
                queue.append(name)
    return chains


def _show(chain: list[str]) -> str:
    return " -> ".join(chain)


def _pure_modules() -> list[str]:
    roots = [
        name
        for name in _modules()
        if any(name == r or (_is_package(r) and name.startswith(r + ".")) for r in PURE_ROOTS)
    ]
    return sorted(roots)


@pytest.mark.parametrize("module", RUNTIME_ROOTS)
def test_pure_roots_load_no_io_at_run_time(module: str) -> None:
    probe = (
        f"import sys, {module}\n"
        f"print(' '.join(n for n in {RUNTIME_FORBIDDEN!r} if n in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not out, f"{module} loads {out} (python -X importtime -c 'import {module}' shows how)"


def test_every_pure_root_exists() -> None:
    missing = [root for root in PURE_ROOTS if root not in _modules()]
    assert not missing


@pytest.mark.parametrize("module", _pure_modules())
def test_pure_modules_load_no_io(module: str) -> None:
    violations = [
        _show(chain)
        for name, chain in _chains([module]).items()
        if (name not in _modules() and _under(name, FORBIDDEN_EXTERNAL))
        or (name in _modules() and _under(name, FORBIDDEN_INTERNAL))
    ]
    assert not violations, f"{module} is pure but loads:\n  " + "\n  ".join(violations)


def _modules_under(prefixes: tuple[str, ...]) -> list[str]:
    return [name for name in _modules() if _under(name, prefixes)]


@pytest.mark.parametrize("module", _modules_under(ADAPTERS))
def test_adapters_never_load_the_agent(module: str) -> None:
    violations = [
        _show(chain) for name, chain in _chains([module]).items() if _under(name, ("aovs.agent",))
    ]
    assert not violations, f"adapter {module} loads the agent:\n  " + "\n  ".join(violations)


def test_only_composers_load_composers() -> None:
    violations = []
    for module in _modules():
        if _under(module, COMPOSERS):
            continue
        violations.extend(
            _show(chain)
            for name, chain in _chains([module]).items()
            if name in _modules() and _under(name, COMPOSERS)
        )
    assert not violations, "only composers may load a composer:\n  " + "\n  ".join(violations)


def _cycles() -> list[list[str]]:
    """One cycle per strongly connected component of the graph between aovs modules; here
    ``if TYPE_CHECKING:`` imports count too (a cycle in the types is still a cycle)."""
    graph = {m: [n for n in _imports(m, True) if n in _modules()] for m in _modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        # one concrete cycle through the component's first module, for the message
        start = component[0]
        members = set(component)
        parents: dict[str, str] = {}
        queue: deque[str] = deque([start])
        seen = {start}
        cycle = component
        while queue:
            current = queue.popleft()
            for succ in graph[current]:
                if succ == start:
                    path = [current]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    cycle = [*reversed(path), start]
                    queue.clear()
                    break
                if succ in members and succ not in seen:
                    seen.add(succ)
                    parents[succ] = current
                    queue.append(succ)
        cycles.append(cycle)
    return cycles


def test_no_import_cycles() -> None:
    cycles = _cycles()
    assert not cycles, "import cycles:\n  " + "\n  ".join(_show(c) for c in cycles)


def test_lazy_and_type_checking_imports_do_not_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import asyncio\n"
        "def f():\n    import socket\n"
        "try:\n    import json\nexcept ImportError:\n    pass\n"
    )
    loaded = [
        alias.name
        for stmt in _load_time_statements(ast.parse(source).body)
        if isinstance(stmt, ast.Import)
        for alias in stmt.names
    ]
    assert loaded == ["json"]


# Error types named after their package's protocol, never imported side by side.
SHARED_CLASS_NAMES = {"ProtocolError"}


def test_public_class_names_are_unique() -> None:
    """One name, one thing: no two public top-level classes of aovs share a name."""
    where: dict[str, list[str]] = {}
    for module, path in _modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(module)
    shared = {
        name: modules
        for name, modules in where.items()
        if len(modules) > 1 and name not in SHARED_CLASS_NAMES
    }
    assert not shared, f"class names defined more than once: {shared}"
