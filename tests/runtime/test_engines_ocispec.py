"""The OCI spec parts engines rely on (hooks, masked and read-only paths, sysctls, ps),
through the real podman (and docker where it adds something); see test_podman.py for
how the engine runs with state of its own."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from test_docker import IMAGE as DOCKER_IMAGE
from test_docker import Docker, docker  # noqa: F401
from test_podman import IMAGE, ISOLATED, Podman, podman, podman_session  # noqa: F401

pytestmark = pytest.mark.engines

STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
          "poststop")


def test_podman_hooks_dir(podman: Podman, world_tmp: Path) -> None:
    """podman --hooks-dir: every stage fires, each at its point.  The runtime-namespace
    ones log on the host; createContainer and startContainer run in the container's root
    (runc: its mount namespace), so they write there and the container reads them."""
    hooks, log = world_tmp / "hooks.d", world_tmp / "hooks.log"
    hooks.mkdir()
    for st in STAGES:
        dest = f"/tmp/{st}" if st in ("createContainer", "startContainer") else str(log)
        (hooks / f"{st}.json").write_text(json.dumps({
            "version": "1.0.0", "when": {"always": True}, "stages": [st],
            "hook": {"path": "/bin/sh",
                     "args": ["sh", "-c", f'printf "%s %s\\n" {st} "$(cat)" >> {dest}']}}))
    r = podman("--hooks-dir", str(hooks), "run", "--rm", *ISOLATED, IMAGE, "sh", "-c",
               "cat /tmp/createContainer /tmp/startContainer")
    assert r.returncode == 0, r.stderr
    inside = [line.split(" ", 1) for line in r.stdout.splitlines()]
    assert [(k, json.loads(s)["status"]) for k, s in inside] == [
        ("createContainer", "creating"), ("startContainer", "created")]
    cid = json.loads(inside[0][1])["id"]
    outside = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [(k, json.loads(s)["status"], json.loads(s)["id"]) for k, s in outside] == [
        ("prestart", "creating", cid), ("createRuntime", "creating", cid),
        ("poststart", "running", cid), ("poststop", "stopped", cid)]


def test_podman_failing_hook_fails_run(podman: Podman, world_tmp: Path) -> None:
    hooks = world_tmp / "hooks.d"
    hooks.mkdir()
    (hooks / "bad.json").write_text(json.dumps({
        "version": "1.0.0", "when": {"always": True}, "stages": ["createRuntime"],
        "hook": {"path": "/bin/sh", "args": ["sh", "-c", "echo no way >&2; exit 5"]}}))
    r = podman("--hooks-dir", str(hooks), "run", "--rm", *ISOLATED, IMAGE, "echo", "ran")
    assert r.returncode != 0 and "ran" not in r.stdout
    assert "createRuntime hook #0: exit status 5" in r.stderr and "no way" in r.stderr



def test_podman_top_lists_the_sandbox_not_the_host(podman: Podman) -> None:
    """podman top lists /proc in the monitor's mount namespace (runtime/procview.py): the
    sandbox's processes, the application's named after their programs; never the host's
    (it listed all of them before; runsc's list is empty)."""
    r = podman("run", "-d", "--name", "pv-top", *ISOLATED, IMAGE, "sh", "-c",
               "sleep 100 & exec sleep 101")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while True:
        r = podman("top", "pv-top", "pid,comm")
        assert r.returncode == 0, r.stderr
        comms = [line.split()[-1] for line in r.stdout.splitlines()[1:]]
        if comms.count("sleep") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert comms.count("sleep") == 2, r.stdout
    assert "kthreadd" not in comms and "conmon" not in comms and len(comms) < 10, r.stdout


def test_docker_top_lists_the_container_processes(docker: Docker) -> None:
    """docker top runs the host's ps on the pids `ps --format json` gives: the stubs of
    the container's processes, named after their programs (runsc gives sandbox pids,
    which docker looks up on the host: unrelated processes)."""
    r = docker.run("-d", "--name", "pv-top", DOCKER_IMAGE, "sh", "-c",
                   "sleep 100 & exec sleep 101")
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 30
        while True:
            r = docker("top", "pv-top", "-o", "pid,comm")
            assert r.returncode == 0, r.stderr
            comms = sorted(line.split()[-1] for line in r.stdout.splitlines()[1:])
            if comms == ["sleep", "sleep"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert comms == ["sleep", "sleep"], r.stdout
    finally:
        docker("rm", "--force", "pv-top")
