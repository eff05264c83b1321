"""The code `dataclasses` compiles for each class, kept from one run to the next.

Every @dataclass compiles the source of its __init__, __repr__, __eq__, ... with
exec(); pyvisor makes ~60 dataclasses as its modules load, and those ~200 compiles
were ~13 ms of the ~60 ms a Sentry spends importing (docs/startup.md).  install()
makes `dataclasses` call `_exec` instead of the built-in exec: a source text seen
before runs its compiled code from the cache; save() writes the cache next to the
package's byte code when something new was compiled.

The cache is keyed by the exact source text, so a stale entry is never used, only
unused; the file starts with the interpreter's byte-code magic number and is ignored
under any other interpreter, or when it cannot be read.  It lives in pyvisor's own
__pycache__ and is trusted as the .pyc files beside it are: whoever can write there
can already change pyvisor's code.  Only the command line (`python3 -m pyvisor`)
installs it; an application importing pyvisor's API keeps the plain `dataclasses`.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys
from importlib.util import MAGIC_NUMBER
from types import CodeType
from typing import Any

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "__pycache__", f"dataclass-code.{sys.implementation.cache_tag}.bin")
MAX_ENTRIES = 4096          # far more than pyvisor's own classes need

_codes: dict[str, CodeType] = {}
_dirty = False


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    """builtins.exec, with `source` text compiled once across runs."""
    global _dirty
    if isinstance(source, str):
        code = _codes.get(source)
        if code is None:
            code = compile(source, "<string>", "exec")
            if len(_codes) < MAX_ENTRIES:
                _codes[source] = code
                _dirty = True
        source = code
    builtins.exec(source, globals, locals)


def install() -> None:
    """Loads the cache and routes dataclasses' exec through it.  Before any dataclass
    is made; harmless where `dataclasses` does not compile through `exec`."""
    import dataclasses
    try:
        with open(PATH, "rb") as f:
            data = f.read()
        if data[:len(MAGIC_NUMBER)] == MAGIC_NUMBER:
            loaded = marshal.loads(data[len(MAGIC_NUMBER):])
            if isinstance(loaded, dict):
                _codes.update((k, v) for k, v in loaded.items()
                              if isinstance(k, str) and isinstance(v, CodeType))
    except (OSError, ValueError, EOFError, TypeError):
        pass        # no cache yet, unreadable or damaged: compile as without one
    dataclasses.exec = _exec            # type: ignore[attr-defined]


def save() -> None:
    """Writes the cache if this process compiled something new (atomically: several
    pyvisor processes may save at once); quietly nothing where it cannot write."""
    global _dirty
    if not _dirty:
        return
    _dirty = False
    tmp = f"{PATH}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC_NUMBER + marshal.dumps(_codes))
        os.replace(tmp, PATH)
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass
