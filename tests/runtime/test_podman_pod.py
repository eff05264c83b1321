"""podman pods with pyvisor: `podman pod create` and two `podman run --pod` containers.

podman 4 marks a pod's containers with CRI-O's annotations (ContainerType container,
SandboxID the infra container's id), so pyvisor makes them inside the infra container's
Sentry (runtime/pod.py).  podman's own pause image needs catatonit, which Debian does
not ship with podman 4.3, so the infra image is the busybox image with a `sleep` CMD.
The podman set-up (own storage, runroot, state; the locally imported image) is
test_podman.py's.
"""

from __future__ import annotations

import json
import uuid
from typing import Iterator

import pytest

from test_podman import IMAGE, Podman, podman_session  # noqa: F401 - the fixture

pytestmark = pytest.mark.engines

INFRA = "localhost/pyvisor-busybox-infra:test"


@pytest.fixture
def pod(podman_session: Podman) -> Iterator[tuple[Podman, str]]:  # noqa: F811
    pm = podman_session
    if pm("image", "exists", INFRA).returncode != 0:
        tar = pm.base / "bb-rootfs.tar"
        r = pm("import", "--change", 'CMD ["sleep", "1000000"]', str(tar), INFRA)
        assert r.returncode == 0, r.stderr
    name = f"pvpod-{uuid.uuid4().hex[:8]}"
    r = pm("pod", "create", "--name", name, "--network", "none", "--infra-image", INFRA)
    assert r.returncode == 0, r.stderr
    try:
        yield pm, name
    finally:
        pm("pod", "rm", "--force", "--time", "0", name)


def _pyvisor_state(pm: Podman, cid: str) -> dict[str, object]:
    return dict(json.loads((pm.state / cid / "state.json").read_text()))


def test_podman_pod_two_containers_share_loopback(pod: tuple[Podman, str]) -> None:
    pm, name = pod
    r = pm("run", "-d", "--pod", name, "--name", f"{name}-srv", IMAGE, "sh", "-c",
           "echo listening; while true; do echo hello-from-$(hostname) | nc -l -p 8080; done")
    assert r.returncode == 0, r.stderr
    srv = r.stdout.strip()
    infra = json.loads(pm("pod", "inspect", name).stdout)["InfraContainerID"]
    # The member lives in the infra container's sandbox (one Sentry for the pod).
    assert _pyvisor_state(pm, srv)["config"]["sandbox"] == infra        # type: ignore[index]
    r = pm("run", "--rm", "--pod", name, IMAGE, "sh", "-c",
           "hostname; until nc 127.0.0.1 8080 </dev/null; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    # Its hostname is the pod's; the server of the other container answers on loopback.
    assert r.stdout.splitlines() == [name, f"hello-from-{name}"], r.stdout
    r = pm("logs", f"{name}-srv")                 # its stdout went to conmon's log
    assert (r.returncode, r.stdout) == (0, "listening\n"), r.stderr
    r = pm("exec", f"{name}-srv", "hostname")
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    r = pm("stop", "--time", "2", f"{name}-srv")
    assert r.returncode == 0, r.stderr
    r = pm("inspect", "--format", "{{.State.ExitCode}}", f"{name}-srv")
    assert r.stdout.strip() == "143", r.stdout + r.stderr
    # The pod runs on without the stopped member.
    r = pm("run", "--rm", "--pod", name, IMAGE, "echo", "still")
    assert (r.returncode, r.stdout) == (0, "still\n"), r.stderr
