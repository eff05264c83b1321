"""Runs the pyvisor command line with a hook at the point where the seccomp
filters belong, for discovery (discover.py) and for the end-to-end tests.

    python3 -m pyvisor.seccomp.harness --report-fd N [--go-fd M] \
        [--sentry ACTION] [--gofer ACTION] -- <pyvisor arguments>

This process *is* the Sentry: it runs `pyvisor.runtime.cli.main(<pyvisor
arguments>)` unchanged, except for two wrappers that reproduce the
integration points exactly:

* `pyvisor.runtime.boot.boot` is wrapped: when the real boot() returns (the
  kernel is built, the stubs and Gofers are running, nothing of the
  application has run yet), the hook runs, then run_sandbox carries on to
  kernel.run().  With --sentry ACTION the hook installs the Sentry filter
  (install_sentry_filter(ACTION)) there; with --go-fd it first reports
  "ready SENTRY_PID GOFER_PID..." and waits for one byte on the go fd, so a
  discovery driver can attach `strace -p` to the Sentry and the Gofers.
* `pyvisor.gofer.server.serve` is wrapped (with --gofer ACTION): the forked
  Gofer child installs the Gofer filter just before it starts serving.

Lines written to the report fd: "ready ..." (above), "gofer-status PID
Seccomp:\tN" for each Gofer as its host /proc status shows it after boot,
and "sentry-status Seccomp:\tN" read back from the Sentry's own status
after its filter is loaded (through an fd opened before, since the filter
refuses open).  This module is a test and discovery tool, not part of the
runtime.
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
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    report = os.fdopen(a.report_fd, "w", buffering=1)

    import pyvisor.runtime.boot as rboot
    from pyvisor.seccomp import filters

    if a.gofer:
        import pyvisor.gofer.server as gserver
        orig_serve = gserver.serve

        def serve(sock: Any, root_fd: int, readonly: bool) -> None:
            filters.install_gofer_filter(a.gofer, sock_fd=sock.fileno())
            orig_serve(sock, root_fd, readonly)

        gserver.serve = serve  # type: ignore[assignment]

    orig_boot = rboot.boot

    def boot(cfg: Any) -> Any:
        kernel = orig_boot(cfg)
        gofers = [pid for _, pid in getattr(kernel, "gofers", [])]
        for pid in gofers:
            try:
                with open(f"/proc/{pid}/status", "rb") as f:
                    st = f.read()
            except OSError:
                st = b""
            report.write(f"gofer-status {pid} {_status_line(st)}\n")
        if a.go_fd >= 0:
            report.write(f"ready {os.getpid()} {' '.join(map(str, gofers))}\n")
            report.flush()
            os.read(a.go_fd, 1)
            os.close(a.go_fd)
        if a.sentry:
            status_fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
            filters.install_sentry_filter(a.sentry)
            st = os.pread(status_fd, 65536, 0)
            os.close(status_fd)
            report.write(f"sentry-status {_status_line(st)}\n")
        report.flush()
        return kernel

    rboot.boot = boot  # type: ignore[assignment]
    sys.argv = ["pyvisor", *args]
    from pyvisor.runtime.cli import main as cli_main
    try:
        return cli_main(args)
    finally:
        report.close()


if __name__ == "__main__":
    raise SystemExit(main())
