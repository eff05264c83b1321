"""The `pyvisor` command line: an OCI runtime in the manner of runsc.

Global flags: --root STATE_DIR, --log FILE, --log-format, --debug, --strace.
Verbs in this cut: `do` (run a host command in a sandbox over the host root,
read-only with a tmpfs overlay) and `run` (run an OCI bundle to completion).
Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

from pyvisor.runtime.boot import BootError, MountSpec, SandboxConfig, run_sandbox

DEFAULT_ROOT = "/run/pyvisor"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyvisor", description="pyvisor: a Python application kernel")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory")
    p.add_argument("--log", default="", help="log file (default: stderr for warnings)")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true", help="debug logging")
    p.add_argument("--strace", action="store_true", help="print every application syscall")
    p.add_argument("--network", default="none", choices=["none"],
                   help="networking (only 'none' in this cut)")
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
    sub = p.add_subparsers(dest="verb", required=True)
    d = sub.add_parser("do", help="run a host command in a sandbox")
    d.add_argument("--strace", action="store_true", dest="do_strace")
    d.add_argument("--network", default="none", choices=["none"], dest="do_network")
    d.add_argument("--cwd", default=None, help="working directory (default: the current one)")
    d.add_argument("--no-pin", action="store_true", help="do not pin the sandbox to one CPU")
    d.add_argument("--test-panic", default=None, help=argparse.SUPPRESS)
    d.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("syscalls", help="list the syscall table: supported, partial, refused")
    dl = sub.add_parser("delete", help="remove a container's state, killing what is left of it")
    dl.add_argument("--force", "-f", action="store_true", help="kill it if it still runs")
    dl.add_argument("id")
    r = sub.add_parser("run", help="create and start a container from an OCI bundle")
    r.add_argument("--bundle", "-b", default=".", help="bundle directory")
    r.add_argument("--pid-file", default="")
    r.add_argument("--console-socket", default="")
    r.add_argument("--detach", "-d", action="store_true")
    r.add_argument("id")
    return p


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING
    handler: logging.Handler = logging.FileHandler(args.log) if args.log \
        else logging.StreamHandler(sys.stderr)
    fmt = '{"time":"%(asctime)s","level":"%(levelname)s","msg":%(message)r}' \
        if args.log_format == "json" else "pyvisor %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])


def cmd_do(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise BootError("do: no command given")
    cwd = args.cwd or os.getcwd()
    env = [f"{k}={v}" for k, v in os.environ.items()]
    cfg = SandboxConfig(root="/", argv=cmd, env=env, cwd=cwd,
                        strace=args.strace or args.do_strace, pin_cpu=not args.no_pin)
    apply_limit_flags(cfg, args)
    if args.test_panic:
        from pyvisor.abi.linux.sysno_amd64 import Sysno
        if args.test_panic not in Sysno.__members__:
            raise BootError(f"--test-panic: unknown syscall {args.test_panic!r}", 125)
        cfg.test_panic = args.test_panic
    return run_sandbox(cfg)


def apply_limit_flags(cfg: SandboxConfig, args: argparse.Namespace) -> None:
    """--memory/--pids-limit/--cpus/--tmpfs-size override the bundle's resources."""
    from pyvisor.runtime.cgroup import parse_size
    try:
        if args.memory:
            cfg.memory_limit = parse_size(args.memory)
        if args.tmpfs_size:
            cfg.tmpfs_size = parse_size(args.tmpfs_size)
        if args.sentry_memory:
            cfg.sentry_memory = parse_size(args.sentry_memory)
    except ValueError as e:
        raise BootError(f"bad size: {e}", 125) from None
    if args.pids_limit is not None:
        if args.pids_limit < 1:
            raise BootError("--pids-limit must be positive", 125)
        cfg.pids_limit = args.pids_limit
    if args.cpus is not None:
        if args.cpus <= 0:
            raise BootError("--cpus must be positive", 125)
        cfg.cpus = args.cpus


def load_bundle(bundle: str) -> SandboxConfig:
    """Reads and validates an OCI bundle's config.json."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise BootError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise BootError(f"{path}: invalid config: {e}") from None
    if not isinstance(spec, dict):
        raise BootError(f"{path}: invalid config: not a JSON object")
    proc = spec.get("process")
    if not isinstance(proc, dict):
        raise BootError(f"{path}: process is missing")
    argv = proc.get("args")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise BootError(f"{path}: process.args must be a non-empty list of strings")
    env = proc.get("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise BootError(f"{path}: process.env must be a list of strings")
    cwd = proc.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise BootError(f"{path}: process.cwd must be an absolute path")
    root = spec.get("root", {})
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise BootError(f"{path}: root.path is missing")
    rootfs = root["path"]
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    if not os.path.isdir(rootfs):
        raise BootError(f"root.path {rootfs!r} is not a directory")
    mounts = []
    for m in spec.get("mounts", []) or []:
        if not isinstance(m, dict) or not isinstance(m.get("destination"), str):
            raise BootError(f"{path}: each mount needs a destination")
        src = m.get("source", "")
        if isinstance(src, str) and src and not os.path.isabs(src) and m.get("type") == "bind":
            src = os.path.join(bundle, src)
        mounts.append(MountSpec(m["destination"], str(m.get("type", "bind")), str(src or ""),
                                [str(o) for o in m.get("options", []) or []]))
    user = proc.get("user", {}) or {}
    hostname = spec.get("hostname", "pyvisor")
    # root.readonly: the root is read-only inside too; otherwise writes land in a tmpfs
    # overlay (as runsc's default), so the image on the host is never written.
    readonly = bool(root.get("readonly", False))
    res = ((spec.get("linux") or {}).get("resources") or {}) if isinstance(spec.get("linux"), dict) else {}
    memory = ((res.get("memory") or {}).get("limit")) if isinstance(res, dict) else None
    pids = ((res.get("pids") or {}).get("limit")) if isinstance(res, dict) else None
    cpu = (res.get("cpu") or {}) if isinstance(res, dict) else {}
    quota, period = cpu.get("quota"), cpu.get("period") or 100_000
    for name, v in (("memory.limit", memory), ("pids.limit", pids), ("cpu.quota", quota)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise BootError(f"{path}: linux.resources.{name} must be an integer")
    return SandboxConfig(root=rootfs, argv=argv, env=env, cwd=cwd, mounts=mounts,
                         overlay=not readonly,
                         memory_limit=memory if memory and memory > 0 else None,
                         pids_limit=pids if pids and pids > 0 else None,
                         cpus=quota / period if quota and quota > 0 else None,
                         uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)),
                         hostname=hostname if isinstance(hostname, str) else "pyvisor")


_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}")


def _state_dir(args: argparse.Namespace) -> str:
    """The state directory of container `args.id`; the id must be a plain name."""
    if not _ID_RE.fullmatch(args.id):
        raise BootError(f"invalid container id {args.id!r}", 125)
    return os.path.join(args.root, args.id)


def cmd_run(args: argparse.Namespace) -> int:
    state = _state_dir(args)
    cfg = load_bundle(os.path.abspath(args.bundle))
    cfg.strace = args.strace
    apply_limit_flags(cfg, args)
    try:
        os.makedirs(state, exist_ok=False)
    except FileExistsError:
        raise BootError(f"container {args.id!r} already exists") from None
    except OSError as e:
        raise BootError(f"state directory {state!r}: {e.strerror}") from None
    from pyvisor.runtime.boot import cgroup_name_for
    cfg.cgroup_name = cgroup_name_for(os.getpid())
    try:
        with open(os.path.join(state, "state.json"), "w") as f:
            json.dump({"id": args.id, "bundle": os.path.abspath(args.bundle), "pid": os.getpid(),
                       "cgroup": cfg.cgroup_name, "status": "running"}, f)
        if args.pid_file:
            with open(args.pid_file, "w") as f:
                f.write(str(os.getpid()))
        return run_sandbox(cfg)
    finally:
        import shutil
        shutil.rmtree(state, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether `pid` is still a pyvisor launcher (not a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"pyvisor" in f.read()
    except OSError:
        return False


def cmd_delete(args: argparse.Namespace) -> int:
    """OCI delete: after a container ended (or was killed), remove every trace of it:
    its processes (with --force), its cgroups and its state directory."""
    import shutil
    import signal
    import time
    from pyvisor.runtime.cgroup import remove_leftovers
    state = _state_dir(args)
    try:
        with open(os.path.join(state, "state.json")) as f:
            st = json.load(f)
        pid = int(st["pid"])
        cgroup = str(st.get("cgroup") or f"pyvisor-{pid}")
    except FileNotFoundError:
        raise BootError(f"container {args.id!r} does not exist", 1) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        # A damaged state file: nothing to kill, but the directory still goes.
        print(f"pyvisor: container {args.id!r}: unreadable state ({e}); removing it",
              file=sys.stderr)
        shutil.rmtree(state, ignore_errors=True)
        return 0
    if _alive(pid):
        if not args.force:
            raise BootError(f"container {args.id!r} is still running (use --force)", 1)
        os.kill(pid, signal.SIGKILL)      # the Sentry and everything under it follow
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    if re.fullmatch(r"pyvisor-[0-9]+(-[0-9a-f]+)?", cgroup):    # never anything else
        remove_leftovers(cgroup)
    shutil.rmtree(state, ignore_errors=True)
    return 0


def cmd_syscalls() -> int:
    """Prints every syscall the table knows, with its status and note."""
    from pyvisor.abi.linux.sysno_amd64 import Sysno
    from pyvisor.sentry.syscalls.linux.table_amd64 import AMD64
    counts: dict[str, int] = {}
    for nr in sorted(AMD64.entries):
        e = AMD64.entries[nr]
        counts[e.status] = counts.get(e.status, 0) + 1
        note = f"  ({e.note})" if e.note else ""
        print(f"{Sysno(nr).name:24} {e.status:9}{note}")
    known = len(Sysno)
    print(f"# {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}; "
          f"{known - len(AMD64.entries)} others: ENOSYS")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args)
    try:
        if args.verb == "do":
            return cmd_do(args)
        if args.verb == "run":
            return cmd_run(args)
        if args.verb == "syscalls":
            return cmd_syscalls()
        if args.verb == "delete":
            return cmd_delete(args)
    except BootError as e:
        print(f"pyvisor: {e}", file=sys.stderr)
        return 125 if args.verb == "run" else e.code
    except KeyboardInterrupt:
        return 130
    return 1
