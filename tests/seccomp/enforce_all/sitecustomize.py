"""Runs every pyvisor process of a test session with both seccomp filters on.

    PYTHONPATH=tests/seccomp/enforce_all python3 -m pytest tests/e2e ...

Until the integration switch (pyvisor.runtime.boot.SENTRY_SECCOMP) is on and
the Gofer installs its filter itself, this turns both on from outside: when a
process imports pyvisor.runtime.boot, SENTRY_SECCOMP becomes True (the Sentry
filter is installed at the production point, _install_seccomp); when it
imports pyvisor.gofer.server, serve() is wrapped so each Gofer child installs
its filter just before serving.  Processes that never import pyvisor (for
instance programs run inside the sandbox) are untouched.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

_TARGETS = ("pyvisor.runtime.boot", "pyvisor.gofer.server")


def _patch(name: str, module: object) -> None:
    if name == "pyvisor.runtime.boot" and hasattr(module, "SENTRY_SECCOMP"):
        module.SENTRY_SECCOMP = True  # type: ignore[attr-defined]
    elif name == "pyvisor.gofer.server":
        from pyvisor.seccomp.filters import install_gofer_filter
        orig = module.serve  # type: ignore[attr-defined]

        def serve(sock, root_fd, readonly):  # type: ignore[no-untyped-def]
            install_gofer_filter(sock_fd=sock.fileno())
            return orig(sock, root_fd, readonly)

        module.serve = serve  # type: ignore[attr-defined]


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, name: str) -> None:
        self._inner, self._name = inner, name

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:  # type: ignore[no-untyped-def]
        self._inner.exec_module(module)
        _patch(self._name, module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name not in _TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, name)
        return spec


sys.meta_path.insert(0, _Finder())
