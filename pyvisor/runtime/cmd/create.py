"""`create ID --bundle DIR`: a sandbox whose init is loaded and held until `start`."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from pyvisor.runtime.cmd.common import apply_limit_flags, bundle_dir, preserve_fds

if TYPE_CHECKING:
    from pyvisor.runtime.config import SandboxConfig

log = logging.getLogger("pyvisor.cli")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("create", help="create a container (its init waits for `start`)")
    add_create_flags(p)
    p.add_argument("id")


def add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", "-b", default=".", help="bundle directory")
    p.add_argument("--pid-file", default="", help="write the sandbox's pid here")
    p.add_argument("--console-socket", default="", help="AF_UNIX socket for the pty master")
    p.add_argument("--preserve-fds", type=int, default=0,
                   help="pass fds 3..3+N-1 of this command to the container as the same fds")
    p.add_argument("--no-pivot", action="store_true", help="accepted; the Sentry always pivots")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted; no keyrings inside")


def check_terminal(args: argparse.Namespace, terminal: bool, detach: bool) -> None:
    """runc's rules (checkTerminal): a detached container with a terminal needs a console
    socket to send it to; a console socket needs a terminal.  (A foreground `run` may
    also send its terminal to a console socket, and waits as usual.)"""
    from pyvisor.runtime.errors import BootError
    if terminal and detach and not args.console_socket:
        raise BootError("cannot allocate tty if pyvisor will detach without setting "
                        "console socket", 1)
    if args.console_socket and not terminal:
        raise BootError("cannot use console socket if the process has no terminal "
                        "(process.terminal is false)", 1)


def setup_terminal(args: argparse.Namespace, cfg: SandboxConfig) -> None:
    """process.terminal with --console-socket: the pty's master goes to the socket now
    (before the sandbox exists, as runc sends it during create); its slave is the
    container's stdio and terminal (runtime/terminal.py)."""
    from pyvisor.runtime.state import StateDir
    from pyvisor.runtime.errors import BootError
    from pyvisor.runtime.terminal import pty_for_socket
    if cfg.terminal and args.console_socket:
        if os.path.isdir(StateDir(args.root, args.id).path):    # fail before sending
            raise BootError(f"container {args.id!r} already exists", 1)
        cfg.console_fd = pty_for_socket(args.console_socket, cfg.console_size)


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    from pyvisor.runtime.spec import load_bundle
    from pyvisor.runtime.state import check_id
    check_id(args.id)
    bundle = bundle_dir(args.bundle)
    cfg = load_bundle(bundle)
    check_terminal(args, cfg.terminal, detach=True)
    cfg.preserve_fds = preserve_fds(args.preserve_fds)
    cfg.strace = args.strace
    cfg.network = args.network
    apply_limit_flags(cfg, args)
    setup_terminal(args, cfg)
    Container.create(args.root, args.id, bundle, cfg, args.pid_file)
    return 0
