"""`run ID --bundle DIR`: create + start + wait, and delete at the end (runc's run);
with --detach: create + start, and return."""

from __future__ import annotations

import argparse

from pyvisor.runtime.cmd.common import apply_limit_flags, bundle_dir, preserve_fds
from pyvisor.runtime.cmd.create import add_create_flags, check_terminal, setup_terminal


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="create and start a container from an OCI bundle")
    add_create_flags(p)
    p.add_argument("--detach", "-d", action="store_true")
    p.add_argument("--keep", action="store_true", help="accepted (runc): keep after exit")
    p.add_argument("id")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    from pyvisor.runtime.spec import load_bundle
    from pyvisor.runtime.state import check_id
    check_id(args.id)
    bundle = bundle_dir(args.bundle)
    cfg = load_bundle(bundle)
    # In the foreground without --console-socket, process.terminal is the caller's
    # terminal through the launcher's console (runtime/console.py; an error without one).
    check_terminal(args, cfg.terminal, detach=args.detach)
    cfg.preserve_fds = preserve_fds(args.preserve_fds)
    cfg.strace = args.strace
    cfg.network = args.network
    apply_limit_flags(cfg, args)
    setup_terminal(args, cfg)
    if not args.detach:
        from pyvisor.runtime import hooks
        if not hooks.from_bundle(bundle):
            return Container.run_foreground(args.root, args.id, bundle, cfg, args.pid_file)
        # Hooks run between create and start, and poststop at delete: the lifecycle
        # verbs in turn, this process waiting for the container as runc's run does.
        c = Container.create(args.root, args.id, bundle, cfg, args.pid_file)
        try:
            c.start()
            return c.wait()
        finally:
            c.delete(force=True)
    c = Container.create(args.root, args.id, bundle, cfg, args.pid_file)
    try:
        c.start()
    except BaseException:
        c.delete(force=True)
        raise
    return 0
