"""pyvisor's byte code in one file, for the command line's start-up.

Each `pyvisor` command starts a fresh interpreter, and a Sentry imports ~200 of
pyvisor's modules before it can boot.  Through the standard path finder each import
costs ~30 µs of Python-level work besides unmarshalling the code: the finders on
sys.meta_path, the package's FileFinder, the stat of the source, the open, read and
header check of its .pyc (docs/startup.md: ~7 ms of the ~50 ms a Sentry spends
importing, on the critical path of `pyvisor do`).

This module keeps a copy of the package's valid .pyc files in one file
(`pyvisor/__pycache__/modules.<tag>.bin`, beside the dataclass code cache) and puts a
finder for `pyvisor.*` first on sys.meta_path that serves a module from it with a
dictionary lookup, a stat of the source and one pread(2) of its code.

Correctness rules, so that it never runs code the standard import would not:
* A bundled module is used only while its source's modification time and size still
  match the .pyc it was copied from: the test the standard import makes of a
  timestamp .pyc (hash-based .pyc files are not bundled).  A mismatch, or a module not
  in the bundle, falls through to the standard import, which compiles it and writes
  its .pyc as usual; save() then rebuilds the bundle from the .pyc files on disk.
* A submodule is served only if its directory is on its parent package's __path__:
  another pyvisor tree earlier on sys.path is never shadowed by this one's bundle.
* The file starts with the interpreter's byte-code magic number and is ignored under
  any other interpreter, or when damaged: then every import is the standard one.

Weighed: zipimport (the standard library's) serves modules from one archive, but it
trusts the .pyc inside against the archive's own copy of the source, not the files a
developer edits, and opens the archive again for each module; PyOxidizer's importer
embeds resources in a built binary.  Neither fits a source tree that changes.

The file is trusted as the .pyc files beside it are: whoever can write there can
already change pyvisor's code.  Only the command line installs the finder (like
runtime/codecache.py); an application importing pyvisor's API keeps the standard one.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import MAGIC_NUMBER, cache_from_source, spec_from_file_location
from types import CodeType, ModuleType
from typing import Any

_FORMAT = b"pyvisor-modules-1\n"
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # .../pyvisor
PATH = os.path.join(_PKG_DIR, "__pycache__", f"modules.{sys.implementation.cache_tag}.bin")
_HEADER = 16            # a .pyc's header: magic, flags, source mtime, source size


class _BundledLoader(SourceFileLoader):
    """The standard source loader (get_source, get_data, resources, is_package as
    usual), whose first get_code reads the module's code from the bundle instead of
    its .pyc.  Any later call (runpy, inspect), or a bundle gone unreadable, reads the
    .pyc as the standard one does."""

    def __init__(self, fullname: str, path: str, finder: BundleFinder, off: int,
                 n: int) -> None:
        super().__init__(fullname, path)
        self._where: tuple[BundleFinder, int, int] | None = (finder, off, n)

    def get_code(self, fullname: str) -> CodeType:  # type: ignore[override]
        where, self._where = self._where, None
        if where is not None:
            code = where[0].read_code(where[1], where[2])
            if code is not None:
                return code
        return super().get_code(fullname)


class BundleFinder:
    """A sys.meta_path finder for `package`'s modules, from a bundle at `path`.

    It holds the bundle open (close-on-exec) and reads each module's code with
    pread(2) when the module is loaded: a Sentry needs ~200 of the ~300 modules, and
    the launcher fewer."""

    def __init__(self, package: str, package_dir: str, path: str) -> None:
        self.package = package
        self.prefix = package + "."
        self.package_dir = package_dir
        self.path = path
        self.dirty = False      # a module was missing or stale: save() rebuilds the file
        self._fd = -1
        # name -> (source path, is a package, source mtime & size as its .pyc records
        # them, file offset and length of the code)
        self._index: dict[str, tuple[str, bool, int, int, int, int]] = {}
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self._index = _read_index(self._fd)
        except (OSError, ValueError, EOFError, TypeError, struct.error):
            self.dirty = True   # none yet, foreign or damaged: the next save rewrites it
            self.release()

    def release(self) -> None:
        """Closes the bundle: later imports take the standard path."""
        self._index = {}
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def find_spec(self, name: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if not name.startswith(self.prefix):
            return None
        entry = self._index.get(name)
        if entry is None:
            if self._fd >= 0:       # not after release(): the Sentry's late imports
                self.dirty = True
            return None
        origin, is_pkg, mtime, size, off, n = entry
        home = os.path.dirname(origin)
        parent = os.path.dirname(home) if is_pkg else home
        if path is None or parent not in path:
            return None         # the parent package lives elsewhere: not this tree's code
        try:
            st = os.stat(origin)
        except OSError:
            self.dirty = True
            return None
        if (mtime, size) != _stamp(st):     # the standard import's test of a .pyc
            self.dirty = True
            return None
        return spec_from_file_location(name, origin,
                                       loader=_BundledLoader(name, origin, self, off, n),
                                       submodule_search_locations=[home] if is_pkg else None)

    def read_code(self, off: int, n: int) -> CodeType | None:
        """The code object stored at `off`; None if it cannot be read."""
        try:
            data = os.pread(self._fd, n, off)
            code = marshal.loads(data) if len(data) == n else None
        except (OSError, ValueError, EOFError, TypeError):
            return None
        return code if isinstance(code, CodeType) else None

    def save(self) -> None:
        """Rebuilds the bundle from the package's current .pyc files if an import
        missed it; nothing when byte code is not to be written (PYTHONDONTWRITEBYTECODE:
        scripts/install.sh writes it, as it compiles the .pyc files, with write())."""
        if not self.dirty or sys.dont_write_bytecode:
            return
        self.dirty = False
        if os.access(os.path.dirname(self.path), os.W_OK):
            write(self.package, self.package_dir, self.path)


def _stamp(st: os.stat_result) -> tuple[int, int]:
    """A source's (mtime, size) as a timestamp .pyc records them."""
    return int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF


def _pyc_stamp(pyc: bytes, st: os.stat_result) -> tuple[int, int] | None:
    """The (mtime, size) a timestamp .pyc of this interpreter records, if it still
    matches its source's `st` (importlib's own test); None otherwise."""
    if len(pyc) <= _HEADER or pyc[:4] != MAGIC_NUMBER:
        return None
    flags, mtime, size = struct.unpack_from("<III", pyc, 4)
    if flags != 0 or (mtime, size) != _stamp(st):
        return None
    return mtime, size


def _read_index(fd: int) -> dict[str, tuple[str, bool, int, int, int, int]]:
    """A bundle's index; ValueError if the file is not a bundle of this interpreter."""
    head = len(MAGIC_NUMBER) + len(_FORMAT)
    first = os.pread(fd, 1 << 16, 0)
    if first[:head] != MAGIC_NUMBER + _FORMAT or len(first) < head + 8:
        raise ValueError("not a module bundle of this interpreter")
    (n,) = struct.unpack_from("<Q", first, head)
    raw = first[head + 8:head + 8 + n]
    if len(raw) < n:
        raw += os.pread(fd, n - len(raw), head + 8 + len(raw))
    index = marshal.loads(raw)
    if not isinstance(index, dict):
        raise ValueError("damaged module bundle")
    for name, entry in index.items():
        if not (isinstance(name, str) and isinstance(entry, tuple) and len(entry) == 6
                and isinstance(entry[0], str) and isinstance(entry[1], bool)
                and all(isinstance(v, int) and v >= 0 for v in entry[2:])):
            raise ValueError("damaged module bundle")
    return index


def build(package: str, package_dir: str) -> bytes:
    """A bundle of every module under `package_dir` whose .pyc is valid now: the
    interpreter's magic number, the format line, the index's length and the index
    (marshal), then each module's code (marshal, as in its .pyc after the header)."""
    entries: list[tuple[str, str, bool, int, int, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, package_dir)
        base = package if rel == "." else package + "." + rel.replace(os.sep, ".")
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            src = os.path.join(dirpath, fn)
            is_pkg = fn == "__init__.py"
            try:
                st = os.stat(src)
                with open(cache_from_source(src), "rb") as f:
                    pyc = f.read()
            except (OSError, ValueError):
                continue        # no .pyc yet: the standard import makes it
            stamp = _pyc_stamp(pyc, st)
            if stamp is not None:
                entries.append((base if is_pkg else f"{base}.{fn[:-3]}", src, is_pkg,
                                *stamp, pyc[_HEADER:]))
    # The index's length depends on the offsets it holds: size it with placeholders
    # as wide as any real offset (marshal writes every int below 2^31 in 5 bytes).
    def index(start: int) -> bytes:
        out, off = {}, start
        for name, src, is_pkg, mtime, size, code in entries:
            out[name] = (src, is_pkg, mtime, size, off, len(code))
            off += len(code)
        return marshal.dumps(out)
    head = len(MAGIC_NUMBER) + len(_FORMAT) + 8
    n = len(index(0))
    table = index(head + n)
    if len(table) != n:
        raise ValueError("module bundle index changed size")
    return b"".join([MAGIC_NUMBER, _FORMAT, struct.pack("<Q", n), table,
                     *(e[5] for e in entries)])


def write(package: str, package_dir: str, path: str) -> bool:
    """Writes a fresh bundle to `path` (atomically: several pyvisor processes may
    write at once); False, leaving nothing behind, where it cannot."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        blob = build(package, package_dir)
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
        return True
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


_finder: BundleFinder | None = None


def install() -> None:
    """Puts the finder for pyvisor's own modules first on sys.meta_path.  Before the
    package's first submodule import that should use it."""
    global _finder
    if _finder is None:
        _finder = BundleFinder("pyvisor", _PKG_DIR, PATH)
        sys.meta_path.insert(0, _finder)


def save() -> None:
    """Rewrites the bundle if this process imported a module it lacked or had stale."""
    if _finder is not None:
        _finder.save()


def release() -> None:
    """Closes the bundle (the Sentry, before it pivots into its empty root)."""
    if _finder is not None:
        _finder.release()


if __name__ == "__main__":
    # `python3 -m pyvisor.runtime.modcache`, after `python3 -m compileall pyvisor`.
    if not write("pyvisor", _PKG_DIR, PATH):
        sys.stderr.write(f"modcache: cannot write {PATH}\n")
        raise SystemExit(1)
