"""The Sentry's preload (runtime/confine.py) leaves out the launcher's modules; nothing the
Sentry may import imports one of them, at any level (an import inside a function runs
after the Sentry pivoted into an empty root, where it would fail).  Checked from the
source with `ast`, so it holds for code paths no test reaches."""

from __future__ import annotations

import ast
from pathlib import Path

from pyvisor.runtime import confine

PKG = Path(__file__).resolve().parents[2] / "pyvisor"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every pyvisor module `path` imports anywhere (functions included), except under
    `if TYPE_CHECKING:`, which never runs."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for n in node.orelse:
                visit(n)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                found.add(full if full in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m == "pyvisor" or m.startswith("pyvisor.")}


def test_package_modules_lists_every_module() -> None:
    assert sorted(confine.package_modules()) == sorted(MODULES)


# pyvisor/__init__.py loads the API only when `pyvisor.Sandbox` (etc.) is asked for, which
# no Sentry module does.
ALLOWED = {("pyvisor", "pyvisor.api")}


def test_sentry_modules_never_import_launcher_only_modules() -> None:
    bad = []
    for name, path in sorted(MODULES.items()):
        if confine.launcher_only(name):
            continue
        for imported in sorted(_imports(path)):
            if confine.launcher_only(imported) and (name, imported) not in ALLOWED:
                bad.append(f"{name} imports {imported}")
    assert not bad, "a module the Sentry preloads imports a launcher-only one:\n" + \
        "\n".join(bad)


def test_launcher_only_names_exist() -> None:
    """Every entry names a module (a renamed module must not silently be preloaded)."""
    for name in confine.LAUNCHER_ONLY:
        assert name in MODULES, name


def test_checker_sees_imports_inside_functions() -> None:
    """The scan itself: an import in a function body counts."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write("def f():\n    from pyvisor.runtime import container\n    return container\n")
    try:
        assert "pyvisor.runtime.container" in _imports(Path(f.name))
    finally:
        Path(f.name).unlink()


# The packages sandbox.preload_skip() leaves out for some configurations, and the only
# modules allowed to import them: each runs that import while the Sentry boots, before
# the pivot, and only in the configuration that keeps the package (boot.new_platform for
# --platform=systrap, the socket layer's stack for --network=host).
SKIPPABLE = {
    "pyvisor.sentry.platform.systrap": {"pyvisor.runtime.boot"},
    "pyvisor.sentry.socket.hostinet": {"pyvisor.sentry.socket"},
}


def test_skipped_packages_are_imported_only_at_boot() -> None:
    from pyvisor.runtime.boot import SandboxConfig
    from pyvisor.runtime.sandbox import preload_skip
    assert set(preload_skip(SandboxConfig())) == set(SKIPPABLE)
    assert preload_skip(SandboxConfig(platform="systrap", network="host")) == ()
    for pkg, allowed in SKIPPABLE.items():
        importers = {name for name, path in MODULES.items()
                     if not (name == pkg or name.startswith(pkg + "."))
                     and any(m == pkg or m.startswith(pkg + ".") for m in _imports(path))}
        assert importers == allowed, pkg
