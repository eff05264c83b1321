"""`exec ID CMD...` or `exec --process FILE ID`: a new process in a running container.

Without --process, the process is the bundle's (env, cwd, user) with the given
args, --env added, --cwd and --user replacing.  Its stdio are this command's
fds 0-2 (and fds 3..3+N-1 with --preserve-fds N), passed to the Sentry as
SCM_RIGHTS; the exit status is the process's.  --detach returns at once; the
pid in --pid-file is a child of this command that exits with the process's
status (runsc does the same).  --tty (or process.terminal): a new pty whose
master goes to --console-socket, or, in the foreground without one, the
caller's terminal (runtime/terminal.py).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from pyvisor.runtime.cmd.common import preserve_fds, stdio_fds
from pyvisor.runtime.errors import BootError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("exec", help="run a new process in a running container")
    p.add_argument("--process", "-p", default="", help="process.json (OCI process object)")
    p.add_argument("--tty", "-t", action="store_true")
    p.add_argument("--console-socket", default="")
    p.add_argument("--cwd", default="")
    p.add_argument("--env", "-e", action="append", default=[])
    p.add_argument("--user", "-u", default="", help="UID[:GID]")
    p.add_argument("--additional-gids", "-g", action="append", type=int, default=[])
    p.add_argument("--detach", "-d", action="store_true")
    p.add_argument("--pid-file", default="")
    p.add_argument("--process-label", default="", help="accepted; no SELinux inside")
    p.add_argument("--apparmor", default="", help="accepted; no AppArmor inside")
    p.add_argument("--no-new-privs", action="store_true", help="accepted; always so")
    p.add_argument("--cap", "-c", action="append", default=[], help="accepted; no capabilities")
    p.add_argument("--preserve-fds", type=int, default=0,
                   help="pass fds 3..3+N-1 of this command to the process as the same fds")
    p.add_argument("--cgroup", default="", help="accepted; one cgroup per sandbox")
    p.add_argument("--ignore-paused", action="store_true")
    p.add_argument("id")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _user(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or 0)
    except ValueError:
        raise BootError(f"--user {text!r}: only numeric UID[:GID] is supported", 1) from None


def build_process(args: argparse.Namespace, bundle: str) -> dict[str, Any]:
    from pyvisor.runtime.spec import parse_process
    if args.process:
        try:
            with open(args.process) as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            raise BootError(f"--process {args.process!r}: {e}", 1) from None
        return parse_process(args.process, raw)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise BootError("exec: no command given (args or --process)", 1)
    base: dict[str, Any] = {"env": [], "cwd": "/", "uid": 0, "gid": 0, "groups": []}
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            base = parse_process(bundle, {**(json.load(f).get("process") or {}),
                                          "args": command})
    except (OSError, ValueError, AttributeError, BootError):
        pass       # the bundle moved: defaults
    # The terminal is --tty's, never the bundle's (as runc's exec without --process).
    proc = {**base, "args": command, "terminal": False, "console_size": None}
    proc["env"] = list(base.get("env", [])) + list(args.env)
    if args.cwd:
        proc["cwd"] = args.cwd
    if args.user:
        proc["uid"], proc["gid"] = _user(args.user)
    if args.additional_gids:
        proc["groups"] = list(args.additional_gids)
    return proc


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container, ExecTTY
    n = preserve_fds(args.preserve_fds)
    c = Container(args.root, args.id)
    st, _ = c.load()
    proc = build_process(args, st.bundle)
    terminal = bool(args.tty or proc.pop("terminal", False))
    size = proc.pop("console_size", None)
    if not proc["cwd"].startswith("/"):
        raise BootError("--cwd must be an absolute path", 1)
    if args.console_socket and not terminal:
        raise BootError("cannot use console socket if the process has no terminal "
                        "(--tty)", 1)
    if terminal and args.detach and not args.console_socket:
        raise BootError("cannot allocate tty if pyvisor will detach without setting "
                        "console socket", 1)
    fds = {i: fd for i, fd in enumerate(stdio_fds()) if fd >= 0}
    fds.update({fd: fd for fd in range(3, 3 + n)})
    tty = None
    if terminal:
        tty = ExecTTY(console_socket=args.console_socket, size=size)
        if not args.console_socket:
            tty.console = _caller_terminal()
    elif not args.detach:
        # A terminal on stdio without --tty: a pty of its own standing for the terminal
        # fds, as `do` and `run` give (runtime/console.py), so nothing inside can
        # reconfigure the caller's terminal.
        from pyvisor.runtime.console import open_console
        console = open_console((0, 1, 2))
        if console is not None:
            tty = ExecTTY(console=console)
    if args.detach:
        c.exec_detached(proc, fds, args.pid_file, tty)
        return 0
    if args.pid_file:
        from pyvisor.runtime.container import write_pid_file
        write_pid_file(args.pid_file, os.getpid())
    return c.exec(proc, fds, tty)


def _caller_terminal() -> object:
    """exec --tty in the foreground without --console-socket: the caller's terminal, as
    runc's exec uses its own (runtime/console.py copies between it and the pty)."""
    from pyvisor.runtime.console import open_console
    console = open_console((0, 1, 2), whole=True)
    if console is None:
        raise BootError("exec --tty: stdin, stdout and stderr are not terminals (run from "
                        "a terminal or pass --console-socket)", 1)
    return console
