"""config.json and flag validation: one clear line, never a traceback (issue #6).

The fuzz test mutates every field and nested field of a full config.json with
random JSON values (seeded; the seed and the mutation are in every failure
message).  Each mutated bundle goes through `cli.load_bundle` in-process,
which must return a config or raise BootError with a one-line message; a
fraction also goes through a real `pyvisor run`, which must print no
traceback, and for a rejection exactly that one line, with status 125.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pvtest import REPO, pyvisor_env
from pyvisor.runtime import specutils
from pyvisor.runtime.boot import BootError
from pyvisor.runtime.spec import load_bundle

SEED = int(os.environ.get("PYVISOR_FUZZ_SEED", "6"))
CASES = 800            # in-process: about a millisecond each
END_TO_END_EVERY = 40  # of those, every 40th also through `pyvisor run` (20 runs)


def base_config(bind_src: str) -> dict[str, Any]:
    """A valid config.json using every part of the spec, so mutations reach them all."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "consoleSize": {"height": 24, "width": 80},
            "user": {"uid": 0, "gid": 0, "umask": 18, "additionalGids": [1, 2],
                     "username": "root"},
            "args": ["/bin/sh", "-c", "exit 0"],
            "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
            "apparmorProfile": "x",
            "oomScoreAdj": 100,
            "selinuxLabel": "x",
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 4},
            "scheduler": {"policy": "SCHED_OTHER", "nice": 1, "flags": ["x"]},
        },
        "root": {"path": "/", "readonly": True},
        "hostname": "fuzz",
        "domainname": "example",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "size=65536k"]},
            {"destination": "/mnt", "type": "bind", "source": bind_src,
             "options": ["rbind", "ro"]},
        ],
        "hooks": {"prestart": [{"path": "/bin/true", "args": ["true"], "env": ["A=1"],
                                "timeout": 5}]},
        "annotations": {"a": "b"},
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "sysctl": {"net.ipv4.ip_forward": "1"},
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": 512 << 20, "swap": -1, "disableOOMKiller": False},
                "cpu": {"shares": 1024, "quota": 100000, "period": 100000, "cpus": "0-1"},
                "pids": {"limit": 100},
                "blockIO": {"weight": 10, "weightDevice": [{"major": 8, "minor": 0,
                                                            "weight": 5}]},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                "unified": {"memory.high": "max"},
            },
            "cgroupsPath": "/fuzz",
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}],
            "devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}],
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
            "rootfsPropagation": "private",
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "personality": {"domain": "LINUX"},
        },
    }


def _paths(v: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path in v, containers included."""
    out: list[tuple[Any, ...]] = []
    if isinstance(v, dict):
        for k, x in v.items():
            out.append(prefix + (k,))
            out.extend(_paths(x, prefix + (k,)))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out.append(prefix + (i,))
            out.extend(_paths(x, prefix + (i,)))
    return out


_STRINGS = ["", "abc", "/", "/../../x", "relative/path", "a\u0000b", "\ud800", "x" * 300,
            "/proc", "RLIMIT_NOFILE", "bind", "tmpfs", "proc", "=", "A=B", "\n", "é",
            "/nonexistent/dir", "../up", "/tmp/../etc"]
_INTS = [0, 1, -1, 7, 1000, 65535, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 63, -(1 << 63) - 1,
         1 << 70, 100000, 999, 1000001]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value (what json.loads can produce, NaN and Infinity aside)."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice(_INTS)
    if kind == 3:
        return rng.choice([0.0, 1.5, -2.25, 1e300, 100000.0])
    if kind in (4, 5):
        return rng.choice(_STRINGS)
    if kind == 6:
        return []
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "type", "path", "limit", ""]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def mutate(cfg: dict[str, Any], rng: random.Random) -> list[str]:
    """Applies 1-3 random mutations to cfg in place; returns what was done."""
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        paths = _paths(cfg)
        path = rng.choice(paths)
        parent: Any = cfg
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = rng.randrange(10)
        if op == 0:
            del parent[key]
            done.append(f"delete {list(path)}")
        elif op == 1 and isinstance(parent[key], (dict, list)):
            extra = random_value(rng)
            if isinstance(parent[key], dict):
                parent[key][rng.choice(["unknownField", "type", "limit"])] = extra
            else:
                parent[key].append(extra)
            done.append(f"add to {list(path)}: {extra!r}")
        else:
            new = random_value(rng)
            parent[key] = new
            done.append(f"set {list(path)} = {new!r}")
    return done


def _write(bundle: Path, cfg: Any) -> None:
    (bundle / "config.json").write_text(json.dumps(cfg, allow_nan=True))


def _outcome(bundle: Path) -> str | None:
    """None if the bundle is accepted, else the one-line error."""
    try:
        load_bundle(str(bundle))
    except BootError as e:
        assert e.code == 125
        return str(e)
    return None


def _pyvisor_run(bundle: Path, state: Path, cid: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyvisor", "--root", str(state), "run",
                           "--bundle", str(bundle), cid], capture_output=True, text=True,
                          env=pyvisor_env(None), cwd=REPO, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_config_fuzz(tmp_path: Path) -> None:
    bind_src = tmp_path / "src"
    bind_src.mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    base = base_config(str(bind_src))
    _write(bundle, base)
    assert _outcome(bundle) is None, "the base config must be valid"
    rng = random.Random(SEED)
    print(f"config fuzz: seed {SEED} (PYVISOR_FUZZ_SEED), {CASES} cases")
    rejected = accepted = e2e = 0
    for case in range(CASES):
        cfg = copy.deepcopy(base)
        what = mutate(cfg, rng)
        _write(bundle, cfg)
        where = f"seed {SEED} case {case}: {'; '.join(what)}"
        try:
            err = _outcome(bundle)
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{where}: {type(e).__name__}: {e}", pytrace=False)
        if err is None:
            accepted += 1
        else:
            rejected += 1
            assert "\n" not in err and err, where
        if case % END_TO_END_EVERY == 0:
            e2e += 1
            r = _pyvisor_run(bundle, tmp_path / "state", f"fuzz-{case}")
            assert "Traceback" not in r.stderr, f"{where}\n{r.stderr}"
            if err is not None:
                assert r.returncode == 125, f"{where}\n{r.stderr}"
                assert r.stderr == f"pyvisor: {err}\n", where
    print(f"config fuzz: {rejected} rejected, {accepted} accepted, {e2e} through pyvisor run")
    assert rejected > CASES // 4 and accepted > CASES // 20     # the mutations bite, not all


def _named_bundle(tmp_path: Path, change: Any) -> Path:
    cfg = base_config(str(tmp_path))
    change(cfg)
    bundle = tmp_path / "b"
    bundle.mkdir(exist_ok=True)
    _write(bundle, cfg)
    return bundle


@pytest.mark.parametrize("change,field", [
    (lambda c: c["process"]["user"].__setitem__("uid", "abc"), "process.user.uid"),
    (lambda c: c["process"]["user"].__setitem__("gid", [1]), "process.user.gid"),
    (lambda c: c["mounts"].append({"destination": "/../../x", "type": "tmpfs"}),
     "mounts[3].destination"),
    (lambda c: c["linux"]["resources"]["cpu"].__setitem__("period", "x"),
     "linux.resources.cpu.period"),
    (lambda c: c["linux"]["resources"]["cpu"].__setitem__("period", 0),
     "linux.resources.cpu.period"),
    (lambda c: c["process"].__setitem__("args", []), "process.args"),
    (lambda c: c["process"].__setitem__("cwd", "rel"), "process.cwd"),
    (lambda c: c["process"]["env"].append("NOEQUALS"), "process.env[2]"),
    (lambda c: c["process"]["args"].append("a\u0000b"), "process.args[3]"),
    (lambda c: c["process"]["args"].append("\ud800"), "process.args[3]"),
    (lambda c: c["root"].__setitem__("path", "/nonexistent-root"), "root.path"),
    (lambda c: c["mounts"][2].__setitem__("source", "/nonexistent-src"), "mount /mnt"),
    (lambda c: c["linux"]["resources"]["memory"].__setitem__("limit", 4096),
     "linux.resources.memory.limit"),
    (lambda c: c["hostname"].__len__() and c.__setitem__("hostname", "h" * 65), "hostname"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[3].type"),
    (lambda c: c["hooks"]["prestart"][0].__setitem__("timeout", 1.5),
     "hooks.prestart[0].timeout"),
    (lambda c: c.__setitem__("annotations", {"k": 1}), "annotations.k"),
])
def test_named_cases(tmp_path: Path, change: Any, field: str) -> None:
    """The issue's four cases and other classics: one line naming the field, exit 125."""
    bundle = _named_bundle(tmp_path, change)
    r = _pyvisor_run(bundle, tmp_path / "state", "named")
    assert r.returncode == 125, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("text", ["", "[]", "nul", "{\"process\": NaN}", "[" * 100000,
                                  "{\"a\": 1e999999}", "\xff\xfe"])
def test_not_json(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(specutils.SpecError) as e:
        specutils.load_spec(str(tmp_path))
    assert "\n" not in str(e.value) and "config.json" in str(e.value)


def test_valid_config_runs(tmp_path: Path) -> None:
    """The full base config is accepted and runs (validation is not just rejection)."""
    bundle = _named_bundle(tmp_path, lambda c: c["process"].__setitem__(
        "args", ["/bin/sh", "-c", "hostname; ls -d /mnt; exit 3"]))
    r = _pyvisor_run(bundle, tmp_path / "state", "ok")
    assert r.returncode == 3 and r.stdout == "fuzz\n/mnt\n", r.stderr


@pytest.mark.parametrize("flags", [
    ["--memory", "lots"], ["--memory", "-1"], ["--memory", "1e400"], ["--memory", "nan"],
    ["--memory", "4K"], ["--tmpfs-size", "inf"], ["--tmpfs-size", "0"],
    ["--pids-limit", "0"], ["--pids-limit", "x"], ["--pids-limit", str(1 << 64)],
    ["--cpus", "-1"], ["--cpus", "nan"], ["--cpus", "inf"], ["--cpus", "1e308"],
    ["--cpus", "x"], ["--log", "/nonexistent/dir/log"], ["--log-format", "xml"],
    ["--network", "bogus"], ["--bogus"], [],
])
@pytest.mark.parametrize("verb", ["do", "run"])
def test_bad_flags_are_one_line(tmp_path: Path, flags: list[str], verb: str) -> None:
    """Every global flag with a bad value: one line on stderr, non-zero, no traceback."""
    bundle = _named_bundle(tmp_path, lambda c: None)
    tail = ["do", "--", "/bin/true"] if verb == "do" else \
        ["--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), "flags"]
    if not flags and verb == "do":
        tail = ["do"]                     # no command at all
    elif not flags:
        tail = tail[:-1]                  # run without an id
    if verb == "run":
        cmd = [tail[0], tail[1], *flags, *tail[2:]]
    else:
        cmd = [*flags, *tail]
    r = subprocess.run([sys.executable, "-m", "pyvisor", *cmd], capture_output=True,
                       text=True, env=pyvisor_env(None), cwd=REPO, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1, (cmd, r.stderr)
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [
    ["run", "--bundle", "/nonexistent-bundle", "x"],
    ["run", "--bundle", ".", "../escape"],
    ["run", "--pid-file", "/nonexistent/dir/pid", "--bundle", "BUNDLE", "pidf"],
    ["delete", "no-such-container"],
    ["do", "--cwd", "/nonexistent", "--", "/bin/true"],
    ["do", "--", "/nonexistent/program"],
])
def test_bad_verb_flags_are_one_line(tmp_path: Path, args: list[str]) -> None:
    bundle = _named_bundle(tmp_path, lambda c: None)
    args = [str(bundle) if a == "BUNDLE" else a for a in args]
    r = subprocess.run([sys.executable, "-m", "pyvisor", "--root", str(tmp_path / "state"),
                        *args], capture_output=True, text=True, env=pyvisor_env(None),
                       cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1, (args, r.stderr)
    assert "Traceback" not in r.stderr


def test_parse_process_alone() -> None:
    """exec --process validates a process object by itself, with the same messages."""
    p = specutils.parse_process({"args": ["/bin/sh"], "env": ["A=1"], "cwd": "/tmp",
                                 "user": {"uid": 5, "gid": 6}, "terminal": True})
    assert p.args == ("/bin/sh",) and p.user.uid == 5 and p.terminal
    rng = random.Random(SEED)
    for _ in range(200):
        doc = {"args": ["/bin/sh"], "cwd": "/", "user": {"uid": 0}}
        mutate(doc, rng)
        try:
            specutils.parse_process(doc)
        except specutils.SpecError as e:
            assert "\n" not in str(e) and str(e).startswith("process")
