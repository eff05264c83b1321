"""`create ID --bundle DIR`: a sandbox whose init is loaded and held until `start`."""

from __future__ import annotations

import argparse
import logging

from pyvisor.runtime.cmd.common import apply_limit_flags, bundle_dir, preserve_fds

log = logging.getLogger("pyvisor.cli")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("create", help="create a container (its init waits for `start`)")
    add_create_flags(p)
    p.add_argument("id")


def add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", "-b", default=".", help="bundle directory")
    p.add_argument("--pid-file", default="", help="write the sandbox's pid here")
    p.add_argument("--console-socket", default="", help="AF_UNIX socket for the pty master")
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("--no-pivot", action="store_true", help="accepted; the Sentry always pivots")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted; no keyrings inside")


def check_terminal(args: argparse.Namespace, terminal: bool) -> None:
    from pyvisor.runtime.errors import BootError
    if terminal:
        # TODO(#7): process.terminal with --console-socket (runtime/console.py).
        raise BootError("process.terminal is not supported yet", 1)
    if args.console_socket:
        raise BootError("--console-socket needs process.terminal", 1)


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    from pyvisor.runtime.spec import load_bundle
    from pyvisor.runtime.state import check_id
    check_id(args.id)
    preserve_fds(args.preserve_fds)
    bundle = bundle_dir(args.bundle)
    cfg = load_bundle(bundle)
    check_terminal(args, cfg.terminal)
    cfg.strace = args.strace
    cfg.network = args.network
    apply_limit_flags(cfg, args)
    Container.create(args.root, args.id, bundle, cfg, args.pid_file)
    return 0

