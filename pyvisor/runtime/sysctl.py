"""config.json's linux.sysctl: which are accepted, refused or ignored, and applying them.

runc (libcontainer/configs/validate: sysctl) accepts only the sysctls of a
namespace the container has its own of: the IPC ones (kernel.msg*, sem, shm*,
fs.mqueue.*), net.*, and kernel.domainname; kernel.hostname is refused ("conflicts
with the OCI hostname field"), everything else too ("is not in a separate kernel
namespace"); then it writes each to /proc/sys, failing on a name or value the
kernel refuses.  runsc (release 20221219, measured) ignores linux.sysctl
altogether: /proc/sys inside shows its defaults whatever was asked.

pyvisor follows runc's rules, the sandbox having its own of every namespace:

* refused, one line, as runc words it: kernel.hostname, and anything outside
  those namespaces (vm.*, kernel.panic, a made-up name);
* applied, and shown by /proc/sys inside: the ones the Sentry models
  (sentry/kernel/sysctl.py: kernel.domainname, the IPC ones, net.core.somaxconn,
  net.ipv4.ip_local_port_range, ip_unprivileged_port_start, ping_group_range);
  a value Linux would refuse is refused, one line;
* accepted with one warning line from the booting Sentry ("not modelled by the
  sandbox; ignored"; stderr, or --log for a detached container): other
  net.* and fs.mqueue.* names, which runc would write to the container's own
  /proc/sys.  pyvisor cannot tell a real Linux sysctl from a misspelt one here,
  so it does not fail on them (runc fails on a name its kernel lacks).
With --network=host the application uses the host's stack: net.* cannot be
applied and each is one warning line.
"""

from __future__ import annotations

import logging
from typing import Any

from pyvisor.runtime.errors import BootError

log = logging.getLogger("pyvisor.sysctl")

IPC = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                 "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})


def check(sysctls: dict[str, str]) -> None:
    """Validates linux.sysctl before anything starts: raises BootError (one line) for what
    runc refuses or a modelled value Linux would refuse.  (The warnings for the names
    accepted but not modelled come from the Sentry at boot, apply(): after every other
    check, so that an error is still the only line.)"""
    from pyvisor.sentry.kernel import sysctl as ksysctl
    for name, value in sysctls.items():
        if name == "kernel.hostname":
            raise BootError(f'sysctl "{name}" is not allowed as it conflicts with the OCI '
                            '"hostname" field', 125)
        namespaced = name in IPC or name.startswith(("fs.mqueue.", "net.")) or \
            name == "kernel.domainname"
        if not namespaced:
            raise BootError(f'sysctl "{name}" is not in a separate kernel namespace', 125)
        if not ksysctl.known(name):
            continue
        try:
            _parse_only(name, value)
        except ValueError as e:
            raise BootError(f'sysctl "{name}": invalid value {value!r}: {e}', 125) from None


def _parse_only(name: str, value: str) -> None:
    """set_value's checks, on a scratch kernel."""
    from pyvisor.sentry.kernel import sysctl as ksysctl

    class Scratch:
        domainname = b""

        class network:
            class stack:
                sysctl = ksysctl.NetSysctls()
    ksysctl.set_value(Scratch(), name, value)


def apply(kernel: Any, sysctls: dict[str, str]) -> None:
    """In the Sentry at boot: sets the modelled sysctls (check() has vetted them)."""
    from pyvisor.sentry.kernel import sysctl as ksysctl
    for name, value in sysctls.items():
        if not ksysctl.known(name):
            log.warning("sysctl %s=%r is not modelled by the sandbox; ignored", name, value)
            continue
        try:
            if not ksysctl.set_value(kernel, name, value):
                log.warning("sysctl %s=%r: the application uses the host's network "
                            "(--network=host); ignored", name, value)
        except ValueError as e:
            raise BootError(f'sysctl "{name}": invalid value {value!r}: {e}', 125) from None
