"""Runs the pyvisor command line with hooks at the points where the seccomp
filters belong, for discovery (discover.py) and for the end-to-end tests.

    python3 -m pyvisor.seccomp.harness --report-fd N [--go-fd M] \
        [--sentry ACTION] [--gofer ACTION] [--force socket] -- <pyvisor arguments>

It runs `pyvisor.runtime.cli.main(<pyvisor arguments>)` unchanged (the
launcher forks the Sentry as usual), except for three wrappers:

* `pyvisor.runtime.boot.boot`: in the Sentry, once the real boot() returns,
  finds the host pids of the Sentry and of its Gofers (children that are not
  stubs) and reports "gofer-status PID Seccomp:\tN" for each Gofer.
* `pyvisor.runtime.boot._install_seccomp`, the production filter point (after
  boot() and confinement, just before kernel.run()): with --go-fd, reports
  "ready SENTRY_PID GOFER_PID..." and waits for one byte, so that a driver can
  attach `strace -p`; with --sentry ACTION, installs the Sentry filter with
  that default action and reports "sentry-status Seccomp:\tN" read back from
  the Sentry's own status (through an fd opened before, as the filter refuses
  open); with --force, then makes an unlisted syscall (socket), which must
  kill the sandbox.  Finally "pids SENTRY_PID GOFER_PID..." (host pids).
  Without --sentry nothing is installed here, whatever production does.
* `pyvisor.gofer.server.serve` (with --gofer ACTION): each forked Gofer child
  installs the Gofer filter, with its socket fd, just before serving.

This module is a test and discovery tool, not part of the runtime.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _status_line(text: bytes, key: bytes = b"Seccomp:") -> str:
    for line in text.splitlines():
        if line.startswith(key):
            return line.decode()
    return key.decode() + "\t?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pyvisor.seccomp.harness")
    p.add_argument("--report-fd", type=int, required=True)
    p.add_argument("--go-fd", type=int, default=-1)
    p.add_argument("--sentry", default="", help="install the Sentry filter with this action")
    p.add_argument("--gofer", default="", help="install the Gofer filter with this action")
    p.add_argument("--force", default="", choices=["", "socket"],
                   help="after installing the Sentry filter, make this unlisted host syscall "
                   "(a test build's proof that the filter kills the sandbox)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    report = os.fdopen(a.report_fd, "w", buffering=1)

    import pyvisor.runtime.boot as rboot
    from pyvisor.seccomp import filters

    if a.gofer:
        import pyvisor.gofer.server as gserver
        orig_serve = gserver.serve

        def serve(sock: Any, root_fd: int, readonly: bool, *rest: Any) -> None:
            filters.install_gofer_filter(
                a.gofer, sock_fd=sock.fileno())
            orig_serve(sock, root_fd, readonly, *rest)

        gserver.serve = serve  # type: ignore[assignment]

    orig_boot = rboot.boot
    state: dict[str, Any] = {"status_fd": -1, "gofers": [], "host_pid": os.getpid()}

    def boot(cfg: Any) -> Any:
        kernel = orig_boot(cfg)
        # Host pids (this may be PID 1 of a new PID namespace; /proc is still the host's).
        try:
            host_pid = int(os.readlink("/proc/self"))
            with open(f"/proc/{host_pid}/task/{host_pid}/children") as f:
                children = [int(x) for x in f.read().split()]
        except OSError:
            host_pid, children = os.getpid(), []
        gofers = []
        for pid in children:
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if "pyvisor-stub" not in exe:
                gofers.append(pid)
        for pid in gofers:
            try:
                with open(f"/proc/{pid}/status", "rb") as f:
                    st = f.read()
            except OSError:
                st = b""
            report.write(f"gofer-status {pid} {_status_line(st)}\n")
        report.flush()
        state.update(host_pid=host_pid, gofers=gofers,
                     status_fd=os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC))
        if not hasattr(rboot, "_install_seccomp"):
            at_filter_point()
        return kernel

    def at_filter_point(control_fd: int | None = None, hostinet: bool = False,
                        platform: str = "ptrace") -> None:
        """Where production installs the Sentry filter (after boot and confinement)."""
        if a.go_fd >= 0:
            report.write(f"ready {state['host_pid']} {' '.join(map(str, state['gofers']))}\n")
            report.flush()
            os.read(a.go_fd, 1)
            os.close(a.go_fd)
        if a.sentry:
            filters.install_sentry_filter(a.sentry, control_fd, hostinet=hostinet,
                                          platform=platform)
            if state["status_fd"] >= 0:
                st = os.pread(state["status_fd"], 65536, 0)
                report.write(f"sentry-status {_status_line(st)}\n")
            if a.force:
                report.write(f"forcing {a.force}\n")
                report.flush()
                import socket
                socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                report.write("forced syscall survived\n")
        if state["status_fd"] >= 0:
            os.close(state["status_fd"])
            state["status_fd"] = -1
        report.write(f"pids {state['host_pid']} {' '.join(map(str, state['gofers']))}\n")
        report.flush()

    if hasattr(rboot, "_install_seccomp"):
        rboot._install_seccomp = at_filter_point  # type: ignore[attr-defined]
    rboot.boot = boot  # type: ignore[assignment]
    sys.argv = ["pyvisor", *args]
    from pyvisor.runtime.cli import main as cli_main
    try:
        return cli_main(args)
    finally:
        report.close()


if __name__ == "__main__":
    raise SystemExit(main())
