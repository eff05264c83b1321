"""runtime/modcache.py: pyvisor's byte code served from one file.

The finder must never run code the standard import would not: a stale, missing or
damaged bundle, or a package imported from another tree, falls through to the standard
import.  Each case imports in a fresh interpreter (the finder changes sys.meta_path)
a small package made in a temp dir, then the real tree; the last case checks that a
confined Sentry holds no fd of the bundle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvtest import REPO, pyvisor_env

PROBE = r"""
import json, sys
root, bundle, save = sys.argv[1], sys.argv[2], sys.argv[3] == "save"
sys.path.insert(0, root)
sys.dont_write_bytecode = True          # only the bundle's own save() writes
from pyvisor.runtime import modcache
finder = modcache.BundleFinder("pvmod", root + "/pvmod", bundle)
sys.meta_path.insert(0, finder)
import pvmod.a, pvmod.sub.b
out = {"a": pvmod.a.VALUE, "b": pvmod.sub.b.VALUE,
       "loaders": {n: type(sys.modules[n].__loader__).__name__
                   for n in ("pvmod.a", "pvmod.sub", "pvmod.sub.b")},
       "b_file": pvmod.sub.b.__file__, "sub_path": list(pvmod.sub.__path__),
       "dirty": finder.dirty}
import inspect
out["source_ok"] = "VALUE" in inspect.getsource(pvmod.sub.b)
if save:
    sys.dont_write_bytecode = False
    finder.save()
print(json.dumps(out))
"""


def _package(root: Path, a: int = 1, b: int = 2) -> None:
    pkg = root / "pvmod"
    (pkg / "sub").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(f"VALUE = {a}\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(f"from pvmod.a import VALUE as _A\nVALUE = _A + {b}\n")


def _compile(root: Path) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", str(root / "pvmod")],
                   check=True, capture_output=True, timeout=60)


def _probe(root: Path, bundle: Path, save: bool = False) -> dict:
    env = pyvisor_env(None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    r = subprocess.run([sys.executable, "-c", PROBE, str(root), str(bundle),
                        "save" if save else "-"],
                       capture_output=True, env=env, timeout=60, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return json.loads(r.stdout)


def _write(root: Path, bundle: Path) -> None:
    sys.path.insert(0, str(REPO))
    from pyvisor.runtime import modcache
    assert modcache.write("pvmod", str(root / "pvmod"), str(bundle))


BUNDLED = {"pvmod.a": "_BundledLoader", "pvmod.sub": "_BundledLoader",
           "pvmod.sub.b": "_BundledLoader"}
STANDARD = {"pvmod.a": "SourceFileLoader", "pvmod.sub": "SourceFileLoader",
            "pvmod.sub.b": "SourceFileLoader"}


def test_modules_come_from_the_bundle(tmp_path: Path) -> None:
    _package(tmp_path)
    _compile(tmp_path)
    bundle = tmp_path / "modules.bin"
    _write(tmp_path, bundle)
    # The .pyc files are no longer needed: the code is read from the bundle.
    for pyc in (tmp_path / "pvmod").rglob("*.pyc"):
        pyc.write_bytes(b"not byte code")
    out = _probe(tmp_path, bundle)
    assert out["loaders"] == BUNDLED
    assert (out["a"], out["b"]) == (1, 3)
    assert out["b_file"] == str(tmp_path / "pvmod" / "sub" / "b.py")
    assert out["sub_path"] == [str(tmp_path / "pvmod" / "sub")]
    assert out["source_ok"] and not out["dirty"]


def test_a_changed_source_is_imported_afresh_and_rebundled(tmp_path: Path) -> None:
    _package(tmp_path)
    _compile(tmp_path)
    bundle = tmp_path / "modules.bin"
    _write(tmp_path, bundle)
    # An edit (another size, as the .pyc check compares mtime and size) after bundling.
    (tmp_path / "pvmod" / "sub" / "b.py").write_text(
        "from pvmod.a import VALUE as _A\nVALUE = _A + 40  # edited\n")
    out = _probe(tmp_path, bundle, save=True)
    assert out["b"] == 41 and out["dirty"]
    assert out["loaders"]["pvmod.sub.b"] == "SourceFileLoader"
    assert out["loaders"]["pvmod.a"] == "_BundledLoader"
    # save() rebundled what has a valid .pyc: b.py has none yet (the standard import
    # wrote none here), so it stays out and keeps coming from the source, never stale.
    out = _probe(tmp_path, bundle)
    assert out["b"] == 41 and out["loaders"]["pvmod.sub.b"] == "SourceFileLoader"
    _compile(tmp_path)
    out = _probe(tmp_path, bundle, save=True)       # a miss: rebuilt with b's new .pyc
    assert out["b"] == 41
    out = _probe(tmp_path, bundle)
    assert out["b"] == 41 and out["loaders"] == BUNDLED and not out["dirty"]


@pytest.mark.parametrize("damage", ["garbage", "magic-only", "broken-index",
                                    "offsets-past-end", "truncated", "empty"])
def test_a_damaged_bundle_means_the_standard_import(tmp_path: Path, damage: str) -> None:
    from importlib.util import MAGIC_NUMBER
    _package(tmp_path)
    _compile(tmp_path)
    bundle = tmp_path / "modules.bin"
    _write(tmp_path, bundle)
    good = bundle.read_bytes()
    head = len(MAGIC_NUMBER) + len(b"pyvisor-modules-1\n")
    bad = {
        "garbage": os.urandom(4096),
        "magic-only": MAGIC_NUMBER,
        "broken-index": good[:head] + good[head:head + 8] + b"\xff" * 64,
        # a valid index whose code lies beyond the file's end
        "offsets-past-end": good[:len(good) - 200],
        "truncated": good[:head + 12],
        "empty": b"",
    }[damage]
    bundle.write_bytes(bad)
    out = _probe(tmp_path, bundle)
    assert (out["a"], out["b"]) == (1, 3)
    assert set(out["loaders"].values()) <= {"SourceFileLoader", "_BundledLoader"}
    if damage != "offsets-past-end":
        assert out["loaders"] == STANDARD and out["dirty"]


def test_another_tree_first_on_the_path_is_not_shadowed(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _package(first, a=100)
    _package(second, a=1)
    _compile(first)
    _compile(second)
    bundle = tmp_path / "modules.bin"
    _write(second, bundle)                  # the bundle is of `second`
    out = _probe(first, bundle)             # but `first`'s pvmod is the one imported
    assert out["a"] == 100 and out["loaders"] == STANDARD


def test_the_sentry_imports_from_the_bundle_and_closes_it(tmp_path: Path) -> None:
    """The real tree: a bundle of it serves the Sentry's modules, and a confined
    Sentry no longer holds it open."""
    bundle = tmp_path / "modules.bin"
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from pyvisor.runtime import modcache\n"
        f"assert modcache.write('pyvisor', modcache._PKG_DIR, {str(bundle)!r})\n"
        f"f = modcache.BundleFinder('pyvisor', modcache._PKG_DIR, {str(bundle)!r})\n"
        "sys.meta_path.insert(0, f)\n"
        "import pyvisor.runtime.boot\n"
        "from pyvisor.runtime import confine\n"
        "confine.preload()\n"
        "mods = [m for n, m in sys.modules.items() if n.startswith('pyvisor.')]\n"
        "print(len(mods), sum(type(m.__loader__).__name__ == '_BundledLoader' for m in mods))\n")
    env = pyvisor_env(None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    total, bundled = map(int, r.stdout.split())
    # All but the few imported before the finder (modcache and its package).
    assert total > 150 and bundled >= total - 3, (total, bundled)

    # The installed tree's bundle, as scripts/install.sh writes it.
    installed = str(REPO / "pyvisor" / "__pycache__"
                    / f"modules.{sys.implementation.cache_tag}.bin")
    subprocess.run([sys.executable, "-m", "pyvisor.runtime.modcache"], cwd=str(REPO),
                   env=env, check=True, timeout=120)
    launcher = subprocess.Popen([sys.executable, "-m", "pyvisor", "do", "--", "/bin/sleep",
                                 "30"], env=pyvisor_env(None), cwd=str(REPO),
                                stdin=subprocess.DEVNULL)
    try:
        sentry = _confined_sentry(launcher)
        held = [os.readlink(f"/proc/{sentry}/fd/{fd}")
                for fd in os.listdir(f"/proc/{sentry}/fd")]
        assert installed not in held, held
        held = [os.readlink(f"/proc/{launcher.pid}/fd/{fd}")
                for fd in os.listdir(f"/proc/{launcher.pid}/fd")]
        assert installed in held, "the launcher did not use the bundle"
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)


def _confined_sentry(launcher: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "the sandbox ended early"
        kids = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        for kid in kids:
            try:
                if "Seccomp:\t2" in Path(f"/proc/{kid}/status").read_text():
                    return int(kid)
            except OSError:
                pass
        time.sleep(0.05)
    pytest.fail("no confined Sentry within 60 s")
