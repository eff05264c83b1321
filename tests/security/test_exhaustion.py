"""Exhaustion: fork bomb, memory bomb, fd bomb, disk fill of /tmp.

Every bomb is bounded so that it ends by itself (a count, a cap in MiB, a
deadline). Each is run twice in the sandbox: with the default limits, where
the sandbox must survive and the host keep working (a host `sleep` stays
alive, a host command runs, another sandbox still answers, host memory comes
back); and, where pyvisor has the option, with a small explicit limit that
must stop the bomb (EAGAIN, ENOMEM or a kill, EMFILE, ENOSPC). Natively each
bomb runs with its bound (a smaller one for memory and disk) to show it is
real. Timings are printed (pytest -s shows them).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


from seclib import (alive, assert_native_ran, assert_no_internal_error, assert_sandbox_ran,
                    kvs, mem_available_mib, pyvisor)


def _host_works() -> None:
    t0 = time.monotonic()
    subprocess.run(["true"], check=True, timeout=30)
    assert time.monotonic() - t0 < 10, "the host is sluggish"


def _another_sandbox_works(run) -> None:
    r = run("pyvisor", ["echo", "still-serving"], timeout=60)
    assert r.returncode == 0 and r.stdout == "still-serving\n", r.output


# -- fork bomb ---------------------------------------------------------------------------


def test_fork_bomb(run, secprog, sleeper):
    """Every process forks until 2000 forks were made in all (or 10 s passed):
    natively 2000 host processes are made in well under a second; the
    sandbox must survive it, and the host and other sandboxes keep working."""
    n = assert_native_ran(run("native", [secprog("exhaust"), "forkbomb", "2000", "10"],
                              timeout=60))
    assert n["forks"] == "2000", n
    t0 = time.monotonic()
    r = run("pyvisor", [secprog("exhaust"), "forkbomb", "2000", "10"], timeout=120)
    took = time.monotonic() - t0
    s = assert_sandbox_ran(r)
    assert s["alive"] == "1", r.output
    print(f"fork bomb: native {n['seconds']}s (max live {n['max_live']}); sandbox "
          f"{took:.1f}s, {s['forks']} forks, {s['fork_errors']} failed "
          f"({s['first_errno']}), max live {s['max_live']}")
    assert alive(sleeper)
    _host_works()
    _another_sandbox_works(run)


def test_fork_bomb_stopped_by_pids_limit(secprog, sleeper):
    """With --pids-limit 64 the bomb never has more than 64 tasks alive: fork
    fails with EAGAIN, and the sandbox goes on."""
    r = pyvisor(["--pids-limit", "64"], [secprog("exhaust"), "forkbomb", "2000", "10"],
                timeout=120)
    assert_no_internal_error(r)
    assert r.returncode == 0, r.output
    s = kvs(r.stdout)
    assert s["alive"] == "1", r.output
    assert s["first_errno"] == "EAGAIN" and int(s["max_live"]) <= 64, r.output
    print(f"fork bomb, --pids-limit 64: {r.seconds:.1f}s, max live {s['max_live']}")
    assert alive(sleeper)


# -- memory bomb --------------------------------------------------------------------------


def test_memory_bomb(run, secprog, sleeper):
    """A child maps and touches memory until mmap fails, it is killed, or
    4 GiB (at most a quarter of the host's available memory) were touched
    (natively: 256 MiB, given at once). The sandbox must survive, map 64 MiB
    afterwards, and give the host its memory back."""
    n = assert_native_ran(run("native", [secprog("exhaust"), "membomb", "256"],
                              timeout=60))
    assert n["touched_mb"] == "256", n
    before = mem_available_mib()
    cap = min(4096, before // 4)
    r = run("pyvisor", [secprog("exhaust"), "membomb", str(cap)], timeout=120)
    s = assert_sandbox_ran(r)
    assert s["alive"] == "1" and s["after"] == "ok", r.output
    stopped = s["bomb"] != "exit:0" or s["mmap_errno"] != "0"
    print(f"memory bomb (default limits): {s['seconds']}s, touched {s['touched_mb']} MiB, "
          f"bomb {s['bomb']}, mmap {s['mmap_errno']}; "
          + ("stopped by a limit" if stopped else f"cap reached: no limit below {cap} MiB"))
    time.sleep(0.5)
    assert mem_available_mib() > before - 2048, "the host did not get its memory back"
    assert alive(sleeper)
    _host_works()


def test_memory_bomb_stopped_by_limit(secprog, sleeper):
    """With --memory 256M the bomb ends with ENOMEM or a kill well before its
    2 GiB cap; the sandbox's init survives and can map 64 MiB again."""
    r = pyvisor(["--memory", "256M"], [secprog("exhaust"), "membomb", "2048"], timeout=120)
    assert_no_internal_error(r)
    assert r.returncode == 0, r.output
    s = kvs(r.stdout)
    assert s["alive"] == "1" and s["after"] == "ok", r.output
    assert s["bomb"] != "exit:0" or s["mmap_errno"] == "ENOMEM", r.output
    assert int(s["touched_mb"]) <= 512, r.output
    print(f"memory bomb, --memory 256M: {r.seconds:.1f}s, touched {s['touched_mb']} MiB, "
          f"bomb {s['bomb']}, mmap {s['mmap_errno']}")
    assert alive(sleeper)


# -- fd bomb ------------------------------------------------------------------------------


def test_fd_bomb(run, secprog, sleeper):
    """open() until EMFILE, then raise RLIMIT_NOFILE to its hard limit and go
    on until EMFILE again (at most 1M opens): natively 20000 host fds; inside,
    the sandbox's limits stop it and it closes and reopens afterwards."""
    n = assert_native_ran(run("native", [secprog("exhaust"), "fdbomb", "1000000"],
                              timeout=60))
    assert n["open_errno"] == "EMFILE", n
    r = run("pyvisor", [secprog("exhaust"), "fdbomb", "1000000"], timeout=120)
    s = assert_sandbox_ran(r)
    assert s["open_errno"] == "EMFILE" and s["open_raised_errno"] == "EMFILE", r.output
    assert int(s["opened_raised"]) <= int(s["hard"]), r.output
    assert s["reopen"] == "3" and s["after_close"] == "3", r.output
    print(f"fd bomb: soft {s['soft']} hard {s['hard']}, {s['opened_raised']} fds, "
          f"{s['seconds']}s")
    assert alive(sleeper)


# -- disk fill ----------------------------------------------------------------------------


def test_disk_fill_tmp(run, secprog, world_tmp, sleeper):
    """Write 1 MiB blocks to /tmp until ENOSPC or a 2 GiB cap (at most an eighth
    of the host's available memory: the upper layer is memory). Natively (64 MiB,
    into the test's directory) the host disk takes it. In the sandbox the
    data lands in the overlay's upper layer, never on the host: no file
    appears in /tmp, and the sandbox survives and writes again after
    unlinking."""
    native_file = world_tmp / "fill"
    n = assert_native_ran(run("native", [secprog("exhaust"), "diskfill", str(native_file),
                                         "64"], timeout=60))
    assert n["written_mb"] == "64", n
    path = Path(f"/tmp/.pyvisor-sec-fill-{time.monotonic_ns()}")
    cap = min(2048, mem_available_mib() // 8)
    r = run("pyvisor", [secprog("exhaust"), "diskfill", str(path), str(cap)], timeout=150)
    assert not path.exists(), "the fill reached the host's /tmp"
    s = assert_sandbox_ran(r)
    assert s["alive"] == "1" and s["after"] == "1048576", r.output
    limited = s["write_errno"] != "0"
    print(f"disk fill (default limits): {s['seconds']}s, {s['written_mb']} MiB, "
          f"{s['write_errno']}; "
          + ("stopped by a limit" if limited else f"cap reached: no limit below {cap} MiB"))
    assert alive(sleeper)
    _host_works()


def test_disk_fill_stopped_by_tmpfs_size(secprog, sleeper):
    """With --tmpfs-size 64M the fill ends with ENOSPC at or below 64 MiB, and
    the space comes back after unlink."""
    path = Path(f"/tmp/.pyvisor-sec-fill-{time.monotonic_ns()}")
    r = pyvisor(["--tmpfs-size", "64M"], [secprog("exhaust"), "diskfill", str(path),
                                           "2048"], timeout=120)
    assert not path.exists(), "the fill reached the host's /tmp"
    assert_no_internal_error(r)
    assert r.returncode == 0, r.output
    s = kvs(r.stdout)
    assert s["write_errno"] == "ENOSPC" and int(s["written_mb"]) <= 64, r.output
    assert s["after"] == "1048576", r.output
    print(f"disk fill, --tmpfs-size 64M: {r.seconds:.1f}s, {s['written_mb']} MiB, "
          f"{s['write_errno']}")
