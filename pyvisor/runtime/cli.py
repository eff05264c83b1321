"""The `pyvisor` command line: an OCI runtime in the manner of runc and runsc.

Global flags (before the verb, as engines pass them): --root STATE_DIR, --log
FILE, --log-format text|json, --debug, --debug-log FILE, --systemd-cgroup (cgroupsPath in
systemd's form, runtime/cgroup.py), --rootless, --criu (the last two accepted and
ignored, with a log line).
Verbs live in runtime/cmd/<verb>.py, each with add_parser() and main(); the
container logic in runtime/container.py.  An error is one line on stderr
(and, with --log, an "error" record there, which engines read) and a non-zero
exit status (runc's 1; `run` and `do` use 125 for their own errors, so a
container's own status stays recognisable), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import import_module
from typing import Any, NoReturn

from pyvisor.runtime.errors import BootError
from pyvisor.runtime.logsetup import LogSetup, configure

DEFAULT_ROOT = "/run/pyvisor"
VERSION = "0.2.0"
VERBS = ("do", "run", "create", "start", "state", "kill", "delete", "exec", "ps", "list",
         "spec", "events", "wait", "pause", "update", "features", "syscalls")
ALIASES = {"resume": "pause", "ls": "list"}
SANDBOX_VERBS = {"do", "run", "create"}     # these boot a Sentry: seccomp must import


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal's width: left to itself it imports shutil
    (and with it bz2 and lzma, ~2 ms of every command) for get_terminal_size."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            out = sys.__stdout__
            columns = os.get_terminal_size(out.fileno()).columns if out is not None else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line on stderr (exit status 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        first = message.splitlines()[0] if message else "invalid arguments"
        self.exit(2, f"{self.prog}: {first} (see {self.prog} --help)\n")


def _verbs_named(argv: list[str]) -> set[str] | None:
    """The verb modules whose sub-parsers `argv` may need: those of every verb (or alias)
    named anywhere in it, so the one in the verb's position is always among them.  None
    (all of them) for a help request or when no verb is named (a usage error)."""
    if "-h" in argv or "--help" in argv:
        return None
    named = {ALIASES.get(a, a) for a in argv} & set(VERBS)
    return named or None


def _parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line.  Only the verbs `argv` names get their full sub-parser (building
    all of them imports every verb module and costs ~15 ms of each start-up); the others
    are bare names, so argparse still knows them."""
    p = ArgumentParser(prog="pyvisor", description="pyvisor: a Python application kernel")
    p.add_argument("--version", "-v", action="version",
                   version=f"pyvisor version {VERSION}\nspec: 1.0.2")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory")
    p.add_argument("--log", default="", help="log file (default: stderr for warnings)")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true", help="debug logging")
    p.add_argument("--debug-log", default="", help="debug log file (runsc's flag)")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="linux.cgroupsPath is systemd's slice:prefix:name (placed where "
                   "systemd would put it, through cgroupfs)")
    p.add_argument("--rootless", default=None, nargs="?", const="true",
                   help="accepted (true|false|auto); pyvisor runs as root")
    p.add_argument("--criu", default=None, help="accepted; no checkpoint/restore")
    p.add_argument("--strace", action="store_true", help="print every application syscall")
    p.add_argument("--network", default="sandbox", choices=["sandbox", "none", "host"],
                   help="sandbox (default): the Sentry's own stack, loopback plus the "
                   "interfaces of the OCI bundle's network namespace (taken over); none: "
                   "loopback only; host: the host's network through sockets the Sentry "
                   "proxies")
    p.add_argument("--platform", default=os.environ.get("PYVISOR_PLATFORM") or "ptrace",
                   help="what runs application code (runsc's flag): ptrace (default; "
                   "every application syscall is a ptrace stop) or systrap (a seccomp "
                   "trap served through shared memory, no ptrace stop); the default "
                   "comes from $PYVISOR_PLATFORM when set")
    p.add_argument("--file-access", default="exclusive", choices=["exclusive", "shared"],
                   help="the root image (runsc's flag): exclusive (default): nothing on the "
                   "host changes it while the sandbox runs, so its attributes, failed "
                   "lookups and listings are cached; shared: every stat asks the host. "
                   "Bind mounts are always shared")
    p.add_argument("--memory", default=None, help="memory limit for the sandbox, e.g. 2G "
                   "(default: half the host's RAM)")
    p.add_argument("--pids-limit", type=int, default=None,
                   help="most tasks (threads) in the sandbox (default 4096)")
    p.add_argument("--cpus", type=float, default=None, help="CPU quota, in CPUs")
    p.add_argument("--tmpfs-size", default=None,
                   help="size of each tmpfs and of the overlay's upper layer (default: memory/2)")
    p.add_argument("--sentry-memory", default=None,
                   help="most memory the Sentry holds for the application: pipe buffers, "
                   "socket queues, epoll watches, queued signals (default: memory/4, at most 1G)")
    p.add_argument("--dcache", default=None,
                   help="dentries kept cached; bounds the host fds of the Sentry and Gofers "
                   "(default 4096; OCI annotation dev.pyvisor.dcache)")
    sub = p.add_subparsers(dest="verb", required=True)
    wanted = None if argv is None else _verbs_named(argv)
    for verb in VERBS:
        if wanted is None or verb in wanted:
            _verb_module(verb).add_parser(sub)  # type: ignore[attr-defined]
            continue
        sub.add_parser(verb)
        for alias, target in ALIASES.items():
            if target == verb and alias != verb:
                sub.add_parser(alias)
    return p


def _verb_module(verb: str) -> object:
    return import_module(f"pyvisor.runtime.cmd.{ALIASES.get(verb, verb)}")


def log_setup(args: argparse.Namespace) -> LogSetup:
    """The logging flags of `args` (runtime/logsetup.py)."""
    return LogSetup(debug=bool(args.debug or args.debug_log),
                    paths=tuple(p for p in (args.log, args.debug_log) if p),
                    json_format=args.log_format == "json")


def _setup_logging(args: argparse.Namespace) -> None:
    setup = log_setup(args)
    configure(setup)
    from pyvisor.runtime import prefork
    prefork.note_logging(setup)     # an early Sentry logs the same way
    log = logging.getLogger("pyvisor.cli")
    for flag, value in (("--rootless", args.rootless), ("--criu", args.criu)):
        if value:
            log.info("%s is accepted and ignored", flag)


def exit_fast(code: int) -> NoReturn:
    """Ends the CLI with `code`, flushing its output and logs but skipping the
    interpreter's teardown, which frees every module and object one by one (~20 ms
    after a sandbox ran here).  Nothing the CLI holds needs that teardown: it registers
    no atexit handler and starts no thread."""
    if "pyvisor.runtime.prefork" in sys.modules:
        from pyvisor.runtime import prefork
        prefork.cancel()        # an early Sentry nothing claimed (a no-op otherwise)
    if "pyvisor.runtime.modcache" in sys.modules:
        from pyvisor.runtime import modcache
        modcache.save()         # a module of the launcher's that the bundle lacked
    try:
        if "logging" in sys.modules:
            logging.shutdown()
        sys.stdout.flush()
    except (OSError, ValueError):
        pass          # stdout's reader is gone (or it is closed): its output is lost
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.pop("PYVISOR_REEXEC", None)
    from pyvisor.runtime.phases import mark
    mark("launcher", "cli imported")
    args = _parser(argv).parse_args(argv)
    mark("launcher", "arguments parsed")
    try:
        _setup_logging(args)
        if args.verb not in SANDBOX_VERBS:
            from pyvisor.runtime.phases import startup_done
            startup_done()      # a sandbox's launcher enables it after forking the Sentry
        if args.verb in SANDBOX_VERBS:
            from pyvisor.runtime.config import check_platform
            check_platform(args.platform)
            from pyvisor.runtime.interp import InterpreterError, ensure_seccomp
            try:
                ensure_seccomp(argv)
            except InterpreterError as e:
                raise BootError(str(e), 125) from None
            mark("launcher", "seccomp module ready")
        return int(_verb_module(args.verb).main(args))  # type: ignore[attr-defined]
    except BootError as e:
        print(f"pyvisor: {e}", file=sys.stderr)
        if args.log and logging.getLogger().handlers:   # the log file is open
            logging.getLogger("pyvisor.cli").error("%s", e)
        return 125 if args.verb == "run" else e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`events | head`): quietly, as a shell tool.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        print(f"pyvisor: {args.verb}: {e.strerror or e}", file=sys.stderr)
        return 1
