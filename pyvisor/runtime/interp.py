"""The Python interpreter pyvisor runs on: make sure it can confine a sandbox.

pyvisor needs one module outside the standard library: `seccomp` (Debian's
python3-seccomp, a C extension in /usr/lib/python3/dist-packages).  Debian's
/usr/bin/python3 sees it; a venv or a pyenv build (as `python3` on PATH may be)
does not, and without it the Gofers could not install their seccomp filters
(they died silently, and the Sentry reported EIO on its first Gofer call).

So before anything starts a sandbox:
 1. `import seccomp` works: done.
 2. Otherwise, when the system's extension is built for this very interpreter
    (same version and ABI: the file name carries the tag), load it from its file.
 3. Otherwise re-exec pyvisor under /usr/bin/python3 (once; PYVISOR_REEXEC marks it).
 4. Otherwise refuse with one clear line.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEM_SITE = ("/usr/lib/python3/dist-packages",
               f"/usr/lib/python3.{sys.version_info.minor}/dist-packages")
_REEXEC = "PYVISOR_REEXEC"


class InterpreterError(Exception):
    """This interpreter cannot run sandboxes."""


def _load_from_system() -> bool:
    """Loads seccomp from the system's dist-packages if its ABI tag matches ours."""
    for d in SYSTEM_SITE:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(d, "seccomp" + suffix)
            if not os.path.isfile(path):
                continue
            spec = importlib.util.spec_from_file_location("seccomp", path)
            if spec is None or spec.loader is None:
                continue
            try:
                mod = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(mod)
            except (ImportError, OSError):
                continue
            sys.modules["seccomp"] = mod
            return True
    return False


def seccomp_here() -> bool:
    """Whether `import seccomp` works in this interpreter (steps 1 and 2), never
    re-executing: the early fork of `do` (runtime/prefork.py) asks before parsing."""
    try:
        import seccomp  # noqa: F401
        return True
    except ImportError:
        return _load_from_system()


def ensure_seccomp(argv: list[str]) -> None:
    """Returns when `import seccomp` works here; may re-exec; raises InterpreterError."""
    if seccomp_here():
        return
    here = os.path.realpath(sys.executable or "")
    system = os.path.realpath(SYSTEM_PYTHON)
    if not os.environ.get(_REEXEC) and here != system and os.access(system, os.X_OK):
        env = dict(os.environ)
        env[_REEXEC] = "1"
        pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = pkg_parent + (os.pathsep + old if old else "")
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(system, [system, "-m", "pyvisor", *argv], env)
    raise InterpreterError(
        f"the Python module 'seccomp' (Debian's python3-seccomp) is not importable by "
        f"{sys.executable} (Python {sys.version.split()[0]}); run pyvisor with "
        f"{SYSTEM_PYTHON} (scripts/install.sh installs it)")
