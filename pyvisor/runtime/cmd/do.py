"""`do [--] CMD ARGS...`: run a host command in a sandbox over the host root (read-only,
with a tmpfs overlay); the exit status is the command's."""

from __future__ import annotations

import argparse
import os

from pyvisor.runtime.cmd.common import apply_limit_flags
from pyvisor.runtime.errors import BootError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("do", help="run a host command in a sandbox")
    d.add_argument("--strace", action="store_true", dest="do_strace")
    d.add_argument("--network", default=None, choices=["sandbox", "none", "host"],
                   dest="do_network")
    d.add_argument("--cwd", default=None, help="working directory (default: the current one)")
    d.add_argument("--no-pin", action="store_true",
                   help="no CPU placement: leave every thread where the host puts it")
    d.add_argument("--test-panic", default=None, help=argparse.SUPPRESS)
    d.add_argument("cmd", nargs=argparse.REMAINDER)


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.config import SandboxConfig
    from pyvisor.runtime.sandbox import run_sandbox
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise BootError("do: no command given")
    cwd = args.cwd or os.getcwd()
    env = [f"{k}={v}" for k, v in os.environ.items()]
    cfg = SandboxConfig(root="/", argv=cmd, env=env, cwd=cwd,
                        strace=args.strace or args.do_strace, pin_cpu=not args.no_pin,
                        network=args.do_network or args.network)
    apply_limit_flags(cfg, args)
    if args.test_panic:
        from pyvisor.abi.linux.sysno_amd64 import Sysno
        if args.test_panic not in Sysno.__members__:
            raise BootError(f"--test-panic: unknown syscall {args.test_panic!r}", 125)
        cfg.test_panic = args.test_panic
    return run_sandbox(cfg)
