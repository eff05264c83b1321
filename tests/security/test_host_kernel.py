"""The host kernel: privileged and rarely needed system calls.

Each attack makes the raw system call(s) inside the sandbox, where every one
must return an error (the Sentry refuses it; nothing reaches the host). The
attacks that are harmless natively -- they act on the calling process, an fd
that dies with it, or a throwaway namespace -- are also run natively as root,
where they must succeed (the call is real and reachable on this kernel).
The others are not run natively, for the reason given in NATIVE_SKIP.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import pytest

from seclib import assert_native_ran, assert_same_tree, assert_sandbox_ran, tree_state

# attack -> the keys that must succeed natively.
NATIVE = {
    "bpf": ("bpf", "bpf_map"),
    "perf_event_open": ("perf_event_open", "perf_system_wide"),
    "userfaultfd": ("userfaultfd",),
    "add_key": ("add_key",),
    "keyctl": ("keyctl", "keyctl_join"),
    "request_key": ("request_key",),
    "modify_ldt": ("modify_ldt",),
    "acct": ("acct",),                    # acct(NULL) only: turns nothing off
    "io_uring_setup": ("io_uring_setup",),
    "open_tree": ("open_tree", "fspick"),
    "fsopen": ("fsopen", "fsopen_proc"),
    "move_mount": ("move_mount",),        # in a private mount namespace
    "mount_setattr": ("mount_setattr",),  # in a private mount namespace
    "unshare": ("unshare", "unshare_pid_time"),  # in a child
    "setns": ("setns",),                  # into our own net namespace
    "personality": ("personality",),
    "syslog": ("syslog",),                # READ_ALL only
}

NATIVE_SKIP = {
    "kexec_load": "would load a kernel; also not built into this kernel (ENOSYS)",
    "kexec_file_load": "would load a kernel; also not built into this kernel",
    "init_module": "would load a module; this kernel has no modules (ENOSYS)",
    "finit_module": "would load a module; this kernel has no modules (ENOSYS)",
    "delete_module": "would unload a module; this kernel has no modules (ENOSYS)",
    "reboot": "would reboot the host (or change its Ctrl-Alt-Del action)",
    "swapon": "would change the host's swap",
    "iopl": "port I/O access; not built into this kernel (ENOSYS)",
    "quotactl": "would turn quotas on on the host's disk",
    "clock_settime": "would move the host's clock",
    "settimeofday": "would move the host's clock",
    "vhangup": "would hang up the host's terminal",
    "lookup_dcookie": "removed from this kernel (ENOSYS)",
}

# Calls the Sentry now serves itself, on its own objects, as gVisor does (namespaces it
# keeps, kernel/namespaces.py; keyrings and io_uring, kernel/keys.py and
# kernel/io_uring.py): these may succeed in the sandbox; the host must still be
# unchanged.  They never reach the host: the Sentry's seccomp filter has no unshare,
# setns, mount API calls, add_key, keyctl or io_uring_setup
# (tests/seccomp/test_filters.py), and the host's session keyring is checked below.
# attack -> the keys allowed to succeed.
SERVED_INSIDE = {
    "unshare": ("unshare_user",),
    "setns": ("setns", "setns_init_mnt"),
    "open_tree": ("open_tree", "fspick"),     # a detached copy of the Sentry's tree
    "fsopen": ("fsopen", "fsopen_proc"),      # a context for a Sentry tmpfs/proc
    "move_mount": ("move_mount",),            # a Sentry tmpfs in the Sentry's tree
    "mount_setattr": ("mount_setattr",),      # in the Sentry's own mount namespace
    "add_key": ("add_key_session",),
    "keyctl": ("keyctl_join", "keyctl_describe_user"),
    "io_uring_setup": ("io_uring_setup",),
}

CAD = Path("/proc/sys/kernel/ctrl-alt-del")
ALL = sorted(NATIVE) + sorted(NATIVE_SKIP)


def _host_has_key(ktype: bytes, desc: bytes) -> bool:
    """Whether the host's keyrings of this process (session, user) hold such a key."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, type, description, 0)
    return libc.syscall(250, 10, ctypes.c_long(-3), ktype, desc, 0) >= 0


def _clock_offset() -> float:
    """CLOCK_REALTIME - CLOCK_MONOTONIC: stable unless someone sets the clock."""
    return time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(
        time.CLOCK_MONOTONIC)


@pytest.mark.parametrize("attack", sorted(NATIVE))
def test_native_call_is_real(attack, secprog, run, world_tmp):
    r = run("native", [secprog("kernel"), attack, "native", str(world_tmp)], timeout=30)
    rep = assert_native_ran(r)
    for key in NATIVE[attack]:
        assert rep[key] != "-1", f"{key} failed natively: {rep}"


@pytest.mark.parametrize("attack", ALL)
def test_sandbox_refuses(attack, secprog, run, world_tmp):
    """Every call of the attack returns an error in the sandbox (but those the
    Sentry serves on its own objects, SERVED_INSIDE), the program goes on, and
    the host is unchanged (clock, files in DIR, the guard's mount table and host
    name)."""
    before = tree_state(world_tmp)
    cad = CAD.read_text()
    offset = _clock_offset()
    r = run("pyvisor", [secprog("kernel"), attack, "sandbox", str(world_tmp)], timeout=60)
    drift = _clock_offset() - offset
    if abs(drift) > 100:  # put the host's clock back before failing
        time.clock_settime(time.CLOCK_REALTIME,
                           time.clock_gettime(time.CLOCK_REALTIME) - drift)
    assert abs(drift) < 5, f"the host clock moved by {drift:.1f}s"
    rep = assert_sandbox_ran(r)
    assert rep.get("alive") == "1", r.output
    calls = {k: v for k, v in rep.items()
             if not k.endswith("_errno") and k not in ("alive", "read_implies_exec",
                                                       "personality_now", "open_ns")}
    assert calls, r.output
    succeeded = {k: v for k, v in calls.items()
                 if v != "-1" and k not in SERVED_INSIDE.get(attack, ())}
    assert not succeeded, f"accepted in the sandbox: {succeeded}\n{r.output}"
    assert not _host_has_key(b"keyring", b"pyvisor-sec-ring"), "a keyring reached the host"
    assert not _host_has_key(b"user", b"pyvisor-sec"), "a key reached the host"
    if attack == "personality":
        assert rep["read_implies_exec"] == "0", r.output
    if attack == "acct":
        assert not (world_tmp / "acct").exists()
    assert_same_tree(before, tree_state(world_tmp))
    assert CAD.read_text() == cad, "reboot(CAD_OFF) reached the host"
