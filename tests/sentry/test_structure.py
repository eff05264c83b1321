"""The Sentry's layering, checked from the source with `ast` (gVisor keeps the same
rules with its build's visibility lists).

* The ptrace platform sees no kernel: nothing in sentry/platform imports from
  sentry/syscalls, sentry/kernel, sentry/mm or sentry/vfs (not even for types).
* Above the platform (kernel, mm, vfs, syscalls, ...) only the interface
  (sentry/platform/platform.py) is seen: nothing imports sentry/platform/ptrace.
* No import cycle among sentry/'s modules (module-level imports; imports inside
  functions or under `if TYPE_CHECKING:` do not run at import time).
* The lower layers (vfs, mm, loader, arch, platform, and the errors/waitqueue
  modules they share with the kernel) import nothing from sentry/kernel or
  sentry/syscalls at module level, so the packages form no cycle either.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "pyvisor"
SENTRY = "pyvisor.sentry"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _imports(path: Path, *, type_checking: bool) -> set[str]:
    """Modules `path` imports at module level (with `type_checking`, also those under
    `if TYPE_CHECKING:`).  `from pkg import mod` names the module when it is one."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt], guarded: bool) -> None:
        for n in nodes:
            if isinstance(n, ast.If):
                tc = "TYPE_CHECKING" in ast.unparse(n.test)
                if type_checking or not tc:
                    visit(n.body, guarded or tc)
                visit(n.orelse, guarded)
            elif isinstance(n, ast.Try):
                visit(n.body, guarded)
                for h in n.handlers:
                    visit(h.body, guarded)
                visit(n.orelse, guarded)
                visit(n.finalbody, guarded)
            elif isinstance(n, ast.Import):
                found.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom) and n.module:
                for a in n.names:
                    full = f"{n.module}.{a.name}"
                    found.add(full if full in MODULES else n.module)

    visit(ast.parse(path.read_text()).body, False)
    return found


def _sentry_graph() -> dict[str, set[str]]:
    return {m: {i for i in _imports(p, type_checking=False) if i in MODULES and i != m
                and i.startswith(SENTRY)}
            for m, p in MODULES.items() if m.startswith(SENTRY)}


def _under(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


def test_graph_is_read() -> None:
    """The checks below see real edges (a broken parser would pass them vacuously)."""
    g = _sentry_graph()
    assert "pyvisor.sentry.platform.platform" in g["pyvisor.sentry.kernel.kernel"]
    assert "pyvisor.sentry.arch.registers" in g["pyvisor.sentry.platform.ptrace.binding"]
    assert len(g) > 50


def test_ptrace_platform_sees_no_kernel() -> None:
    forbidden = [f"{SENTRY}.{p}" for p in ("syscalls", "kernel", "mm", "vfs")]
    bad = []
    for m, p in MODULES.items():
        if not _under(m, f"{SENTRY}.platform"):
            continue
        for i in _imports(p, type_checking=True):
            if any(_under(i, f) for f in forbidden):
                bad.append(f"{m} imports {i}")
    assert not bad, bad


def test_kernel_sees_only_the_platform_interface() -> None:
    bad = []
    for m, p in MODULES.items():
        if not m.startswith(SENTRY) or _under(m, f"{SENTRY}.platform"):
            continue
        bad += [f"{m} imports {i}" for i in _imports(p, type_checking=True)
                if _under(i, f"{SENTRY}.platform.ptrace")]
    assert not bad, bad


def test_lower_layers_import_no_kernel() -> None:
    lower = [f"{SENTRY}.{p}" for p in ("vfs", "mm", "loader", "arch", "platform",
                                       "errors", "waitqueue")]
    upper = [f"{SENTRY}.kernel", f"{SENTRY}.syscalls"]
    bad = []
    for m, deps in _sentry_graph().items():
        if any(_under(m, low) for low in lower):
            bad += [f"{m} imports {d}" for d in deps if any(_under(d, u) for u in upper)]
    assert not bad, bad


def _cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `g`, or None (depth-first search with colours)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(g, WHITE)
    stack: list[str] = []

    def dfs(v: str) -> list[str] | None:
        colour[v] = GREY
        stack.append(v)
        for w in sorted(g[v]):
            if colour.get(w) == GREY:
                return stack[stack.index(w):] + [w]
            if colour.get(w) == WHITE:
                found = dfs(w)
                if found:
                    return found
        stack.pop()
        colour[v] = BLACK
        return None

    for v in sorted(g):
        if colour[v] == WHITE:
            found = dfs(v)
            if found:
                return found
    return None


def test_no_import_cycle_in_sentry() -> None:
    assert _cycle(_sentry_graph()) is None, " -> ".join(_cycle(_sentry_graph()) or [])


def test_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
