"""File transfer through the control socket: the Sentry's side of Sandbox.read_file,
write_file, upload and download (pyvisor.api).  runsc: `runsc cp`-like, but served by the
Sentry's own VFS instead of an exec'd tar.

Why here and not a `tar` run inside: it needs no program in the image (a busybox-only or
distroless rootfs works the same), bytes are moved exactly, and it sees precisely what the
sandbox's processes see (the overlay, bind mounts, tmpfs).  Operations run with the
credentials and root of the sandbox's init (root unless the bundle says otherwise), on
absolute paths inside the sandbox; permission checks are the VFS's own.

| method | params | result |
| --- | --- | --- |
| fs_read    | path, offset, length (<= CHUNK) | {data: base64, size}: size is the file's |
| fs_write   | path, data: base64, offset, truncate, mode | {written} |
| fs_stat    | path, follow | {type: file\\|dir\\|symlink\\|other, mode, size, uid, gid, target} |
| fs_list    | path | [{name, type, mode, size, target}] (without . and ..) |
| fs_mkdir   | path, mode, parents | {} (an existing directory is fine with parents) |
| fs_symlink | path, target | {} |

Data moves in chunks of at most CHUNK bytes (a datagram is at most 64 KiB of JSON), one
open per chunk: the server keeps no per-transfer state, so a client that goes away leaves
nothing behind.  Errors are errno replies (ENOENT, EISDIR, EROFS, EACCES, ...).
Names and paths travel as UTF-8 with surrogateescape (any byte string survives).
Concurrency: runs on the Sentry loop between task steps; never blocks (gofer files are read
through the fds the Gofer donated).
"""

from __future__ import annotations

import base64
import errno
import logging
import os
from typing import TYPE_CHECKING, Any, Callable

from pyvisor.abi.linux.fcntl import AT_FDCWD, O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs import ops

if TYPE_CHECKING:
    from pyvisor.runtime import control
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.inode import Inode

log = logging.getLogger("pyvisor.control")

CHUNK = 44 * 1024            # base64 of it plus the envelope stays under control.MAX_MESSAGE
MAX_LIST = 4096              # entries per fs_list reply (a directory beyond it: E2BIG)


def _path(params: dict[str, Any], key: str = "path") -> bytes:
    v = params.get(key)
    if not isinstance(v, str) or not v.startswith("/") or "\0" in v:
        raise ValueError(f"{key} must be an absolute path")
    return v.encode("utf-8", "surrogateescape")


def _name(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _kind(inode: Inode) -> str:
    return "dir" if inode.is_dir() else "file" if inode.is_regular() else \
        "symlink" if inode.is_symlink() else "other"


def _describe(inode: Inode) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _kind(inode), "mode": inode.mode & 0o7777,
                           "size": inode.size() if inode.is_regular() else 0,
                           "uid": inode.uid, "gid": inode.gid}
    if inode.is_symlink():
        out["target"] = _name(inode.readlink())
    return out


class FileService:
    """The fs_* methods of one sandbox's control socket."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def handlers(self) -> dict[str, Callable[..., None]]:
        return {"fs_read": self._wrap(self.read), "fs_write": self._wrap(self.write),
                "fs_stat": self._wrap(self.stat), "fs_list": self._wrap(self.listdir),
                "fs_mkdir": self._wrap(self.mkdir), "fs_symlink": self._wrap(self.symlink)}

    def _wrap(self, fn: Callable[[Task, dict[str, Any]], Any]) -> Callable[..., None]:
        def handler(conn: control.Connection, params: dict[str, Any], fds: list[int],
                    reply: control.Reply) -> None:
            for fd in fds:
                os.close(fd)
            fds.clear()
            t = self._context()
            if t is None:
                reply(None, errno.ESRCH, "the sandbox is not running")
                return
            try:
                result = fn(t, params)
            except SyscallError as e:
                reply(None, e.errno, os.strerror(e.errno))
                return
            except (TypeError, ValueError, KeyError):
                raise                     # the server's "bad parameters" reply
            except Exception:  # noqa: BLE001 - a transfer must never stop the Sentry
                log.exception("control: %s failed", fn.__name__)
                reply(None, errno.EIO, f"{fn.__name__}: internal error")
                return
            reply(result)
        return handler

    def _context(self) -> Task | None:
        """The init's task: its root, credentials and umask are the transfer's."""
        init = self.kernel.init
        if init is None or init.zombie or init.exiting or not init.tasks:
            return None
        return init.tasks[0]  # type: ignore[no-any-return]

    # -- methods ------------------------------------------------------------------------

    def read(self, t: Task, params: dict[str, Any]) -> dict[str, Any]:
        path = _path(params)
        offset, length = int(params.get("offset", 0)), int(params.get("length", CHUNK))
        if offset < 0 or not 0 <= length <= CHUNK:
            raise ValueError(f"offset must be >= 0 and length in 0..{CHUNK}")
        f = ops.open_at(t, AT_FDCWD, path, O_RDONLY, 0)
        try:
            if not f.inode.is_regular():
                raise SyscallError(errno.EISDIR if f.inode.is_dir() else errno.EINVAL)
            chunks, got = [], 0
            while got < length:
                b = f.impl.read(f, t, length - got, offset + got)
                if not b:
                    break
                chunks.append(b)
                got += len(b)
            return {"data": base64.b64encode(b"".join(chunks)).decode(),
                    "size": f.inode.size()}
        finally:
            f.decref()

    def write(self, t: Task, params: dict[str, Any]) -> dict[str, Any]:
        path = _path(params)
        data = base64.b64decode(str(params.get("data", "")), validate=True)
        offset = int(params.get("offset", 0))
        mode = params.get("mode")
        if offset < 0 or len(data) > CHUNK:
            raise ValueError(f"offset must be >= 0 and data at most {CHUNK} bytes")
        flags = O_WRONLY | O_CREAT | (O_TRUNC if params.get("truncate") else 0)
        f = ops.open_at(t, AT_FDCWD, path, flags, 0o644 if mode is None else int(mode) & 0o7777)
        try:
            if not f.inode.is_regular():
                raise SyscallError(errno.EINVAL)
            done = 0
            while done < len(data):
                n = f.impl.write(f, t, data[done:], offset + done)
                if n <= 0:
                    raise SyscallError(errno.EIO)
                done += n
            if mode is not None:             # exact, whatever the umask
                f.inode.setattr(mode=int(mode) & 0o7777)
            return {"written": done}
        finally:
            f.decref()

    def stat(self, t: Task, params: dict[str, Any]) -> dict[str, Any]:
        loc = ops.lookup(t, None, _path(params), bool(params.get("follow", True)))
        return _describe(loc.inode)

    def listdir(self, t: Task, params: dict[str, Any]) -> list[dict[str, Any]]:
        loc = ops.lookup(t, None, _path(params), True)
        if not loc.inode.is_dir():
            raise SyscallError(errno.ENOTDIR)
        out = []
        for ent in loc.inode.readdir():
            if ent.name in (b".", b".."):
                continue
            if len(out) >= MAX_LIST:
                raise SyscallError(errno.E2BIG)
            child = loc.dentry.child(ent.name)
            d = _describe(child.inode)
            d["name"] = _name(ent.name)
            out.append(d)
        return out

    def mkdir(self, t: Task, params: dict[str, Any]) -> dict[str, Any]:
        path = _path(params)
        mode = int(params.get("mode", 0o755)) & 0o7777
        parents = bool(params.get("parents", False))
        parts = [p for p in path.split(b"/") if p]
        todo = ["/" + "/".join(_name(p) for p in parts[:i + 1]) for i in range(len(parts))]
        if not parents:
            todo = todo[-1:]
        for i, p in enumerate(todo):
            try:
                loc = ops.lookup(t, None, p.encode("utf-8", "surrogateescape"), True)
                if not loc.inode.is_dir():
                    raise SyscallError(errno.ENOTDIR if i < len(todo) - 1 else errno.EEXIST)
                if not parents:
                    raise SyscallError(errno.EEXIST)
                continue
            except SyscallError as e:
                if e.errno != errno.ENOENT:
                    raise
            parent, name = ops.lookup_parent(t, AT_FDCWD, p.encode("utf-8", "surrogateescape"))
            inode = parent.inode.mkdir(name, mode, t.creds.fsuid, t.creds.fsgid)
            parent.dentry.forget(name)
            inode.setattr(mode=mode)
        return {}

    def symlink(self, t: Task, params: dict[str, Any]) -> dict[str, Any]:
        path = _path(params)
        target = params.get("target")
        if not isinstance(target, str) or not target or "\0" in target:
            raise ValueError("target must be a non-empty string")
        parent, name = ops.lookup_parent(t, AT_FDCWD, path)
        if ops.child_or_none(parent, name) is not None:
            raise SyscallError(errno.EEXIST)
        parent.inode.symlink(name, target.encode("utf-8", "surrogateescape"), t.creds.fsuid,
                             t.creds.fsgid)
        parent.dentry.forget(name)
        return {}
