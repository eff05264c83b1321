"""Start-up phase marks, for profiling where a sandbox's start-up and teardown go.

With PYVISOR_PHASES=1 in the environment, each mark writes one line to stderr:

    pyvisor-phase <process> <CLOCK_MONOTONIC ns> <phase>

from the launcher (the monitor), the Sentry and the Gofers, so that a harness that
reads the clock before spawning `pyvisor do` can place every phase on one time line
(bench/phases.py).  Without the variable a mark is one test of a module global.

Safe in every process at every point: it uses only write(2) on fd 2 and
clock_gettime (the vDSO), which the Sentry's and the Gofers' seccomp lists allow.
"""

from __future__ import annotations

import gc
import os
import time

ENABLED = bool(os.environ.get("PYVISOR_PHASES"))


def mark(process: str, phase: str) -> None:
    """Records that `process` (launcher, sentry, gofer) reached `phase` now."""
    if not ENABLED:
        return
    try:
        os.write(2, f"pyvisor-phase {process} {time.monotonic_ns()} {phase}\n".encode())
    except OSError:
        pass


def startup_done(freeze: bool = False) -> None:
    """Start-up is over in this process: the cyclic garbage collector, which `python3 -m
    pyvisor` disables while modules load (__main__.py), runs again.  With `freeze`, the
    objects made so far (modules, classes, the kernel's tables) are moved out of the
    collector's way for good (gc.freeze), so later full collections skip them."""
    if freeze:
        gc.freeze()
    gc.enable()


# PYVISOR_PROFILE=FILE: the Sentry runs under cProfile from its fork to its exit and
# writes pstats data to FILE (`python3 -m pstats FILE`).  The file is opened before
# the Sentry pivots into its empty root; the stats are written with write(2) at exit.
PROFILE = os.environ.get("PYVISOR_PROFILE", "")
_profile: tuple[object, int] | None = None


def start_profile() -> None:
    """In the Sentry, first thing after the fork: profile until stop_profile()."""
    global _profile
    if not PROFILE or _profile is not None:
        return
    import cProfile
    fd = os.open(PROFILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    prof = cProfile.Profile()
    _profile = (prof, fd)
    prof.enable()


def stop_profile() -> None:
    """Writes the Sentry's profile (pstats' marshal format) to PYVISOR_PROFILE."""
    global _profile
    if _profile is None:
        return
    import marshal
    prof, fd = _profile
    _profile = None
    prof.disable()               # type: ignore[attr-defined]
    prof.create_stats()          # type: ignore[attr-defined]
    data = memoryview(marshal.dumps(prof.stats))    # type: ignore[attr-defined]
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
