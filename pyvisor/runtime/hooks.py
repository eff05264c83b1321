"""OCI lifecycle hooks (config.json `hooks`): when each kind runs, what it gets, what a
failure does.  runtime-spec config.md#posix-platform-hooks; runc:
libcontainer/configs/config.go (Hook.Run); runsc: runsc/container/hook.go.

| kind            | runs                                   | state.status | a failure              |
| ---             | ---                                    | ---          | ---                    |
| prestart        | in `create`, the sandbox booted, held  | creating     | create fails (*)       |
| createRuntime   | in `create`, after prestart            | creating     | create fails (*)       |
| createContainer | in `create`, after createRuntime       | creating     | create fails (*)       |
| startContainer  | in `start`, before the init runs       | created      | start fails, stopped   |
| poststart       | in `start`, after the init runs        | running      | a warning line only    |
| poststop        | in `delete`, the sandbox gone          | stopped      | a warning line only    |

(*) the sandbox is killed, the poststop hooks run, and nothing is left behind (the
spec: "generate an error, stop the container, and continue the lifecycle at step
12").  runc 1.1 differs in two ways we do not copy: it runs poststart hooks already
in `create` (fixed in runc 1.2), and stops at the first failing poststop hook.

Each hook is `path` exec'd with `args` (argv[0] included; none: [path]) and `env`
(absent: the runtime's own environment, as Go's exec.Cmd with a nil Env), the
container's state JSON on stdin, stdout and stderr captured (shown only in the
error).  `timeout` (seconds) kills it: "hook ran past specified timeout of 1.0s".

Namespaces: prestart, createRuntime, poststart and poststop run in the runtime's
namespaces, as everywhere.  createContainer and startContainer run "in the
container namespace" in runc; a pyvisor container's mounts exist only inside the
Sentry, where no host program can run, and runsc skips these two kinds with a
warning.  pyvisor runs them in a mount namespace of their own (a private copy of
the host's, so a mount they make never reaches the host) chrooted into the
container's root directory on the host (so `path` resolves in the container's
image, as in runc), in a UTS namespace of their own carrying the container's
hostname, and in the Sentry's network namespace.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from pyvisor.runtime.errors import BootError

log = logging.getLogger("pyvisor.hooks")

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
IN_CONTAINER = frozenset({"createContainer", "startContainer"})
_SHOWN = 2048      # bytes of a failed hook's stdout/stderr in the error line


@dataclass(frozen=True)
class Hook:
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] | None = None        # None: the runtime's environment
    timeout: int | None = None                # seconds

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "args": list(self.args)}
        if self.env is not None:
            out["env"] = list(self.env)
        if self.timeout is not None:
            out["timeout"] = self.timeout
        return out


class HookError(Exception):
    """A hook failed; the message is one line."""


def parse(doc: object) -> dict[str, list[Hook]]:
    """config.json's `hooks` (types already checked by specutils) -> hooks by kind.
    Raises BootError (one line) for what the spec forbids: a relative path, a timeout
    that is not positive."""
    out: dict[str, list[Hook]] = {}
    if not isinstance(doc, dict):
        return out
    for kind in KINDS:
        for i, h in enumerate(doc.get(kind) or ()):
            where = f"hooks.{kind}[{i}]"
            if not isinstance(h, dict) or not isinstance(h.get("path"), str):
                raise BootError(f"{where}.path: missing", 1)
            if not h["path"].startswith("/"):
                raise BootError(f"{where}.path: must be an absolute path, not "
                                f"{h['path']!r}", 1)
            timeout = h.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or timeout <= 0):
                raise BootError(f"{where}.timeout: must be greater than zero, not "
                                f"{timeout!r}", 1)
            env = h.get("env")
            out.setdefault(kind, []).append(Hook(
                path=h["path"], args=tuple(h.get("args") or ()),
                env=None if env is None else tuple(env), timeout=timeout))
    return out


def from_bundle(bundle: str) -> dict[str, list[Hook]]:
    """The hooks of BUNDLE/config.json (already validated by spec.load_bundle)."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return parse(doc.get("hooks") if isinstance(doc, dict) else None)


def to_json(hooks: dict[str, list[Hook]]) -> dict[str, Any]:
    return {k: [h.to_json() for h in v] for k, v in hooks.items() if v}


def from_json(doc: object) -> dict[str, list[Hook]]:
    try:
        return parse(doc)
    except BootError:
        return {}


def _oneline(data: bytes) -> str:
    text = data[:_SHOWN].decode(errors="replace")
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def run_one(kind: str, i: int, hook: Hook, state: dict[str, Any],
            container_root: str = "", sentry_pid: int = 0, hostname: str = "") -> None:
    """Runs one hook to completion; raises HookError (one line) if it fails."""
    argv = list(hook.args) or [hook.path]
    env = dict(os.environ) if hook.env is None else \
        dict(e.split("=", 1) if "=" in e else (e, "") for e in hook.env)
    preexec = None
    if kind in IN_CONTAINER and container_root:
        preexec = _enter_container(container_root, sentry_pid, hostname)
    try:
        p = subprocess.Popen(argv, executable=hook.path, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=preexec, close_fds=True, cwd="/",
                             start_new_session=True)
    except (OSError, subprocess.SubprocessError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise HookError(f"error running {kind} hook #{i}: {hook.path}: {why}") from None
    try:
        out, err = p.communicate(json.dumps(state).encode(), timeout=hook.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        raise HookError(f"error running {kind} hook #{i}: hook ran past specified "
                        f"timeout of {float(hook.timeout or 0):.1f}s") from None
    except BaseException:
        _kill_group(p)
        raise
    if p.returncode != 0:
        status = f"exit status {p.returncode}" if p.returncode > 0 else \
            f"signal: {_signame(-p.returncode)}"
        raise HookError(f"error running {kind} hook #{i}: {status}, stdout: {_oneline(out)}, "
                        f"stderr: {_oneline(err)}")


def _kill_group(p: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the hook and what it started (its own session, made for it)."""
    import signal
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.communicate(timeout=5)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        p.kill()
        p.wait()


def _signame(n: int) -> str:
    import signal
    try:
        return signal.Signals(n).name.lower()[3:]
    except ValueError:
        return str(n)


def run(kind: str, hooks: dict[str, list[Hook]], state: dict[str, Any],
        container_root: str = "", sentry_pid: int = 0, hostname: str = "") -> None:
    """Runs the hooks of `kind` in order; the first failure raises HookError."""
    for i, h in enumerate(hooks.get(kind) or ()):
        run_one(kind, i, h, state, container_root, sentry_pid, hostname)


def run_best_effort(kind: str, hooks: dict[str, list[Hook]], state: dict[str, Any]) -> None:
    """poststart, poststop: each hook runs; a failure is one warning line on stderr."""
    import sys
    for i, h in enumerate(hooks.get(kind) or ()):
        try:
            run_one(kind, i, h, state)
        except HookError as e:
            log.warning("%s", e)
            if not any(isinstance(x, logging.StreamHandler) and
                       getattr(x, "stream", None) is sys.stderr
                       for x in logging.getLogger().handlers):
                print(f"pyvisor: warning: {e}", file=sys.stderr)


def _enter_container(root: str, sentry_pid: int, hostname: str) -> Any:
    """createContainer/startContainer: a private mount namespace chrooted into the
    container's root, a UTS namespace with its hostname, the Sentry's network namespace
    (see the module doc).  Runs in the forked child, before exec."""
    def enter() -> None:
        from pyvisor.runtime import confine
        libc = confine._libc
        CLONE_NEWNS, CLONE_NEWUTS, MS_REC, MS_PRIVATE = 0x00020000, 0x04000000, 0x4000, 1 << 18
        if libc.unshare(CLONE_NEWNS | CLONE_NEWUTS) != 0:
            raise OSError("unshare(CLONE_NEWNS|CLONE_NEWUTS) failed")
        if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise OSError("cannot make the hook's mounts private")
        if hostname:
            name = hostname.encode()
            libc.sethostname(name, len(name))
        if sentry_pid > 0:
            try:
                fd = os.open(f"/proc/{sentry_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = -1               # the sandbox has gone: the hook still runs
            if fd >= 0:
                try:
                    libc.setns(fd, 0x40000000)      # CLONE_NEWNET
                finally:
                    os.close(fd)
        os.chroot(root)
        os.chdir("/")
    return enter
