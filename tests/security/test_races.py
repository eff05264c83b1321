"""Races: a second thread rewrites what a syscall argument points to while the
Sentry reads it (the Sentry must copy each argument once, and nothing it does
on the strength of the first read may reach the host).

Each attack runs 1000 iterations natively (where the racing writes land in
the host directory: the attack does something) and in the sandbox (where
the host directory must be left exactly as it was, the program must finish,
and the Sentry must log no internal error).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seclib import (assert_native_ran, assert_same_tree, assert_sandbox_ran, pyvisor,
                    tree_state)

ATTACKS = {
    "pathrace": "path string flipped between DIR/sandboxok and DIR/hostonly1 "
                "during open(O_CREAT)",
    "iovrace": "struct iovec base/len flipped (valid, NULL, kernel address, huge) "
               "during writev/preadv",
    "symlinkrace": "symlink swapped between DIR/safe and DIR/target during "
                   "open(O_CREAT) through it",
    "statrace": "struct timespec flipped valid/invalid during utimensat and "
                "clock_nanosleep",
}

# What the native run leaves in DIR, showing the racing writes are real.
NATIVE_EVIDENCE = {
    "pathrace": "hostonly1",
    "iovrace": "iovfile",
    "symlinkrace": "target/f0",
    "statrace": "timesfile",
}


def _dir(root: Path) -> Path:
    d = root / "racedir"
    for sub in ("safe", "target"):
        (d / sub).mkdir(parents=True)
        (d / sub).chmod(0o755)
    d.chmod(0o755)
    return d


@pytest.mark.parametrize("pin", ["pinned", "no-pin"])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_race(attack, pin, run, secprog, world_tmp):
    """The sandbox runs once as by default (platform/ptrace/placement.py: syscall-heavy
    threads beside the Sentry, the racing thread free) and once with --no-pin
    (every thread where the host puts it); in both the racing thread runs in
    parallel with the Sentry's reads. `flips` counts the racing thread's
    rewrites during the run: the race must really have been run."""
    if pin == "pinned":
        nd = _dir(world_tmp / "native")
        n = assert_native_ran(run("native", [secprog("races"), attack, str(nd), "1000"],
                                  timeout=60))
        assert (nd / NATIVE_EVIDENCE[attack]).exists(), (attack, n)
    sd = _dir(world_tmp / "sandbox")
    before = tree_state(sd)
    r = pyvisor([], [secprog("races"), attack, str(sd), "1000"], timeout=90,
                do_options=() if pin == "pinned" else ("--no-pin",))
    s = assert_sandbox_ran(r)
    assert s["getpid"] == "1", r.output
    assert int(s["ok"]) + int(s["fail"]) >= 1000, r.output
    assert int(s["flips"]) >= 10, f"the racing thread did not run\n{r.output}"
    assert_same_tree(before, tree_state(sd))
    print(f"{attack} ({pin}): sandbox {s['seconds']}s, {s['flips']} flips "
          f"(ok {s['ok']}, failed {s['fail']})")
