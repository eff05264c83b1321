"""File transfer for Sandbox.{write_file,read_file,upload,download}: the client side of
the fs_* control methods (runtime/sentry_files.py), in chunks of CHUNK bytes.

Paths inside the sandbox are absolute.  Downloads never follow a symlink on the host: a
sandbox symlink becomes a host symlink, and files are created with O_NOFOLLOW, so a
hostile sandbox cannot steer a download outside `host_path` through names or links.
"""

from __future__ import annotations

import base64
import errno
import os
import posixpath
import stat
from typing import TYPE_CHECKING, Any

from pyvisor.api.errors import SandboxClosed, SandboxError
from pyvisor.runtime import control

if TYPE_CHECKING:
    from pyvisor.api.sandbox import Sandbox

CHUNK = 44 * 1024          # runtime/sentry_files.py's CHUNK
MAX_DEPTH = 64


class _Session:
    """One control connection for a whole transfer."""

    def __init__(self, sb: Sandbox) -> None:
        sb._check_open()
        try:
            self.client = control.Client(sb.control_path, timeout=60.0)
        except control.ControlError as e:
            raise SandboxClosed(f"the sandbox is not running ({e})") from None

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, **params: Any) -> Any:
        try:
            return self.client.call(method, {"path": path, **params})
        except control.ControlError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                raise SandboxClosed(f"the sandbox stopped answering ({e})") from None
            raise _os_error(e, path) from None


def _os_error(e: control.ControlError, path: str) -> OSError:
    """An errno reply as the OSError subclass Python would raise (FileNotFoundError, ...)."""
    return OSError(e.errno, os.strerror(e.errno) if e.errno else str(e), path)


def _abs(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"sandbox paths are absolute: {path!r}")
    return path


def _write(s: _Session, path: str, data: bytes, mode: int) -> None:
    off = 0
    while True:
        chunk = data[off:off + CHUNK]
        s.call("fs_write", path, data=base64.b64encode(chunk).decode(), offset=off,
               truncate=off == 0, mode=mode)
        off += len(chunk)
        if off >= len(data):
            return


def _read(s: _Session, path: str) -> bytes:
    parts, off = [], 0
    while True:
        r = s.call("fs_read", path, offset=off, length=CHUNK)
        b = base64.b64decode(r["data"])
        parts.append(b)
        off += len(b)
        if len(b) < CHUNK:
            return b"".join(parts)


def write_file(sb: Sandbox, path: str, data: bytes, mode: int = 0o644) -> None:
    with _Session(sb) as s:
        _write(s, _abs(path), bytes(data), mode)


def read_file(sb: Sandbox, path: str) -> bytes:
    with _Session(sb) as s:
        return _read(s, _abs(path))


def upload(sb: Sandbox, host_path: str, sandbox_path: str) -> None:
    _abs(sandbox_path)
    st = os.lstat(host_path)
    with _Session(sb) as s:
        parent = posixpath.dirname(sandbox_path.rstrip("/")) or "/"
        s.call("fs_mkdir", parent, mode=0o755, parents=True)
        _upload(s, host_path, sandbox_path.rstrip("/") or "/", st, 0)


def _upload(s: _Session, src: str, dst: str, st: os.stat_result, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SandboxError(f"{src}: directory tree deeper than {MAX_DEPTH}")
    if stat.S_ISLNK(st.st_mode):
        s.call("fs_symlink", dst, target=os.readlink(src))
    elif stat.S_ISDIR(st.st_mode):
        s.call("fs_mkdir", dst, mode=stat.S_IMODE(st.st_mode), parents=True)
        with os.scandir(src) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            _upload(s, e.path, posixpath.join(dst, e.name), e.stat(follow_symlinks=False),
                    depth + 1)
    elif stat.S_ISREG(st.st_mode):
        with open(src, "rb") as f:
            _write(s, dst, f.read(), stat.S_IMODE(st.st_mode))
    # sockets, fifos, devices: not copied


def download(sb: Sandbox, sandbox_path: str, host_path: str) -> None:
    with _Session(sb) as s:
        info = s.call("fs_stat", _abs(sandbox_path), follow=False)
        _download(s, sandbox_path, host_path, info, 0)


def _download(s: _Session, src: str, dst: str, info: dict[str, Any], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SandboxError(f"{src}: directory tree deeper than {MAX_DEPTH}")
    kind, mode = info.get("type"), int(info.get("mode", 0o644)) & 0o777
    if kind == "symlink":
        os.symlink(str(info.get("target", "")), dst)
    elif kind == "dir":
        os.makedirs(dst, mode=0o700, exist_ok=True)
        for ent in s.call("fs_list", src):
            name = str(ent.get("name", ""))
            if not name or name in (".", "..") or "/" in name or "\0" in name:
                raise SandboxError(f"{src}: the sandbox listed a bad name {name!r}")
            _download(s, posixpath.join(src, name), os.path.join(dst, name), ent, depth + 1)
        os.chmod(dst, mode)
    elif kind == "file":
        data = _read(s, src)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
