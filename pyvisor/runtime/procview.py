"""What `podman top` (psgo) and anyone joining the sandbox's mount namespace see in /proc.

podman top does not ask the runtime: it joins the mount namespace of the pid in the
pid file (the monitor) and lists /proc there.  The monitor used to share the host's
mount namespace, so podman top listed every process of the host; runsc's sandbox
process shows an empty list.  A detached container's monitor therefore gets a mount
namespace of its own (a slave copy of the host's: the host's unmounts still reach
it, so no mount is kept alive by it) whose /proc is a procfs of the Sentry's PID
namespace, mounted by the Sentry as its first act (a procfs shows the PID namespace
of whoever mounts it).  There, /proc lists the sandbox's host processes: the Sentry
(1), its Gofers, the master stub, and one stub per application process named after
its program (kernel/exec.py name_host_stub): `podman top` shows `sleep`, not the host.

Both steps are best effort: a failure leaves the host's view, as before, and is
logged.  The monitor needs nothing of /proc once the Sentry runs (it waits, removes
cgroups by path and writes exit.json).
"""

from __future__ import annotations

import logging

log = logging.getLogger("pyvisor.procview")

_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MS_REC, _MS_SLAVE = 0x4000, 1 << 19


def monitor_namespace() -> bool:
    """In the monitor, before it forks the Sentry: a slave copy of the mount namespace."""
    from pyvisor.runtime import confine
    libc = confine._libc
    if libc.unshare(_CLONE_NEWNS) != 0:
        log.info("procview: no mount namespace of its own for the monitor")
        return False
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_SLAVE, None) != 0:
        log.info("procview: cannot make the monitor's mounts slaves")
    return True


def mount_sandbox_proc() -> None:
    """In the Sentry (PID 1 of its namespace), still in the monitor's mount namespace:
    /proc becomes a procfs of the sandbox's PID namespace there."""
    from pyvisor.runtime import confine
    if confine._libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                           None) != 0:
        log.info("procview: cannot mount the sandbox's /proc for the monitor")
