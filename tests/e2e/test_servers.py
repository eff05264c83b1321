"""Real servers with their real clients, both inside ONE sandbox, over loopback:
Python's http.server + curl, redis-server + redis-cli/redis-benchmark, nginx + curl/ab/wrk,
iperf3 -s + iperf3 -c, and a SYN flood against a listener that never accepts.  Each runs
under `pyvisor do --network=sandbox` (netstack) and `--network=host` (hostinet; servers
bind 127.0.0.1 only, on a port found free on the host), and natively for comparison
where the output is deterministic.  The Debian packages come from scripts/install.sh.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Builder, CliRunner, Result, Runner

NETWORKS = ["sandbox", "host"]


def free_port() -> int:
    """A TCP port free on the host's loopback now (for --network=host and native runs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/install.sh installs them)")


def in_sandbox(pyvisor_cli: CliRunner, network: str, script: str, *args: str,
               timeout: float = 300) -> Result:
    return pyvisor_cli(["do", f"--network={network}", "--", "/bin/sh", "-c", script, "sh",
                        *args], timeout=timeout)


def natively(run: Runner, script: str, *args: str, timeout: float = 300) -> Result:
    return run("native", ["/bin/sh", "-c", script, "sh", *args], timeout=timeout)


# Waits until a command succeeds (the server is up), at most ~20 s.
WAIT_FOR = r"""
wait_for() {
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 200 ] && { echo "server never came up: $*"; exit 3; }
        sleep 0.1
    done
}
"""

HTTP_CURL = WAIT_FOR + r"""
set -e
P=$1
D=$(mktemp -d)
cd $D
head -c 2000000 /usr/bin/python3 > blob
python3 -m http.server $P --bind 127.0.0.1 >log 2>&1 &
srv=$!
wait_for curl -sf -o /dev/null http://127.0.0.1:$P/
curl -sf http://127.0.0.1:$P/blob | cmp - blob && echo "GET blob: same bytes"
curl -sfI http://127.0.0.1:$P/blob | grep -i -E '^(HTTP|content-length)' | tr -d '\r'
curl -s -o /dev/null -w 'missing: %{http_code}\n' http://127.0.0.1:$P/nothing
# Five transfers in one curl: one connection after another.
curl -sf $(for i in 1 2 3 4 5; do echo http://127.0.0.1:$P/blob; done) | wc -c
kill $srv
wait $srv || true
cd / && rm -rf $D
"""


@pytest.mark.parametrize("network", NETWORKS)
def test_http_server_and_curl(network: str, run: Runner, pyvisor_cli: CliRunner) -> None:
    need("curl")
    native = natively(run, HTTP_CURL, str(free_port()))
    sandboxed = in_sandbox(pyvisor_cli, network, HTTP_CURL, str(free_port()))
    assert native.returncode == 0, native.output
    assert sandboxed.returncode == 0, sandboxed.output
    assert sandboxed.stdout == native.stdout
    assert sandboxed.stdout.startswith("GET blob: same bytes\nHTTP/1.0 200 OK\n"), \
        sandboxed.output
    assert "Content-Length: 2000000\nmissing: 404\n10000000\n" in sandboxed.stdout


REDIS = WAIT_FOR + r"""
P=$1
D=$(mktemp -d)
redis-server --port $P --bind 127.0.0.1 --save '' --appendonly no --dir $D \
    --logfile $D/log --daemonize no &
srv=$!
wait_for redis-cli -p $P ping
redis-cli -p $P set greeting hello
redis-cli -p $P get greeting
redis-cli -p $P incrby counter 41
redis-cli -p $P incr counter
redis-cli -p $P rpush list a b c
redis-cli -p $P lrange list 0 -1
redis-cli -p $P dbsize
if [ -n "$2" ]; then
    redis-benchmark -p $P -q -n $2 -c 10 -t set,get | tr '\r' '\n' | grep 'requests per second'
fi
redis-cli -p $P shutdown nosave
wait $srv
echo "server exit $?"
rm -rf $D
"""


@pytest.mark.parametrize("network", NETWORKS)
def test_redis_server_cli_and_benchmark(network: str, run: Runner,
                                        pyvisor_cli: CliRunner) -> None:
    need("redis-server", "redis-cli", "redis-benchmark")
    native = natively(run, REDIS, str(free_port()))
    # redis-benchmark -n 20000 on the sandbox's own stack; fewer through hostinet, whose
    # path below the socket calls is the host's (keeps the test's time bounded).
    requests = "20000" if network == "sandbox" else "5000"
    sandboxed = in_sandbox(pyvisor_cli, network, REDIS, str(free_port()), requests)
    assert native.returncode == 0, native.output
    assert sandboxed.returncode == 0, sandboxed.output
    assert native.stdout == "OK\nhello\n41\n42\n3\na\nb\nc\n3\nserver exit 0\n", native.output
    bench = re.findall(r"^(SET|GET): ([\d.]+) requests per second", sandboxed.stdout, re.M)
    assert [name for name, _ in bench] == ["SET", "GET"], sandboxed.output
    assert all(float(rate) > 0 for _, rate in bench), sandboxed.output
    # Apart from the benchmark's figures, the same as Linux.
    rest = re.sub(r"^(SET|GET): .*\n", "", sandboxed.stdout, flags=re.M)
    assert rest == native.stdout


NGINX = WAIT_FOR + r"""
set -e
P=$1
D=$(mktemp -d)
chmod 755 $D        # nginx's workers run as www-data
mkdir $D/html
head -c 3000000 /usr/bin/python3 > $D/html/big
echo small > $D/html/small.txt
chmod 644 $D/html/*
cat > $D/nginx.conf <<EOF
daemon off;
worker_processes 2;
pid $D/nginx.pid;
error_log $D/error.log;
events { worker_connections 128; }
http {
    access_log $D/access.log;
    client_body_temp_path $D/body; proxy_temp_path $D/proxy; fastcgi_temp_path $D/fcgi;
    uwsgi_temp_path $D/uwsgi; scgi_temp_path $D/scgi;
    sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_timeout 5;
    server {
        listen 127.0.0.1:$P reuseport deferred backlog=64;
        listen [::1]:$P;
        root $D/html;
    }
}
EOF
nginx -c $D/nginx.conf -p $D -e $D/error.log &
srv=$!
wait_for curl -sf -o /dev/null http://127.0.0.1:$P/small.txt
curl -sf http://127.0.0.1:$P/big | cmp - $D/html/big && echo "sendfile: same bytes"
curl -sfg "http://[::1]:$P/small.txt"
curl -sf -r 1000-1999 http://127.0.0.1:$P/big | wc -c
curl -s -o /dev/null -w 'missing: %{http_code}\n' http://127.0.0.1:$P/nothing
ab -q -n 2000 -c 10 http://127.0.0.1:$P/small.txt | grep -E '^(Complete|Failed) requests'
ab -q -k -n 200 -c 4 http://127.0.0.1:$P/big | grep -E '^(Complete|Failed) requests'
if command -v wrk >/dev/null; then
    wrk -t1 -c8 -d1s http://127.0.0.1:$P/small.txt > $D/wrk.txt
    grep -q 'requests in' $D/wrk.txt && echo "wrk: ran"
    grep -E 'Socket errors|Non-2xx' $D/wrk.txt || echo "wrk: no errors"
fi
kill -QUIT $srv
wait $srv
echo "nginx exit $?"
grep -c 'GET /small.txt' $D/access.log >/dev/null && echo "access log written"
rm -rf $D
"""


@pytest.mark.parametrize("network", NETWORKS)
def test_nginx_with_curl_ab_wrk(network: str, run: Runner, pyvisor_cli: CliRunner) -> None:
    need("nginx", "curl", "ab")
    native = natively(run, NGINX, str(free_port()))
    sandboxed = in_sandbox(pyvisor_cli, network, NGINX, str(free_port()))
    assert native.returncode == 0, native.output
    assert sandboxed.returncode == 0, sandboxed.output
    assert sandboxed.stdout == native.stdout
    assert "sendfile: same bytes\nsmall\n1000\nmissing: 404\n" in sandboxed.stdout
    assert ("Complete requests:      2000\nFailed requests:        0\n"
            "Complete requests:      200\nFailed requests:        0\n") in sandboxed.stdout
    assert sandboxed.stdout.endswith("nginx exit 0\naccess log written\n"), sandboxed.output


IPERF = WAIT_FOR + r"""
P=$1
D=$(mktemp -d)
iperf3 -s -1 -B 127.0.0.1 -p $P > $D/server.log 2>&1 &
srv=$!
# iperf3 -J exits 0 even when its connect is refused (the server not listening yet):
# the JSON's "error" says so, and then the client tries again.
i=0
while iperf3 -c 127.0.0.1 -p $P -t $2 -J > $D/client.json 2>/dev/null
      grep -q '"error":.*connect' $D/client.json; do
    i=$((i + 1)); [ $i -gt 100 ] && break
    sleep 0.2
done
wait $srv
echo "server exit $?"
cat $D/client.json
rm -rf $D
"""


@pytest.mark.parametrize("network", NETWORKS)
def test_iperf3(network: str, pyvisor_cli: CliRunner) -> None:
    need("iperf3")
    r = in_sandbox(pyvisor_cli, network, IPERF, str(free_port()), "3")
    assert r.returncode == 0, r.output
    head, _, doc = r.stdout.partition("\n")
    assert head == "server exit 0", r.output
    result = json.loads(doc)
    assert "error" not in result, result.get("error")
    sent, received = result["end"]["sum_sent"], result["end"]["sum_received"]
    assert sent["bytes"] > 0 and received["bytes"] > 0, r.output
    assert received["bytes"] <= sent["bytes"]
    assert 2.5 < received["seconds"] < 60


@pytest.mark.parametrize("network", NETWORKS)
def test_syn_flood_is_bounded(network: str, program: Builder, run: Runner,
                              pyvisor_cli: CliRunner) -> None:
    """3,000 non-blocking connects to a listener (backlog 8) that never accepts: the
    accept queue takes backlog + 1, the rest stay pending, and another connection keeps
    answering throughout, as on Linux."""
    binary = program("syn_flood.c")
    native = run("native", [binary, "3000"], timeout=120)
    sandboxed = pyvisor_cli(["do", f"--network={network}", "--", binary, "3000"], timeout=300)
    assert native.returncode == 0, native.output
    assert sandboxed.returncode == 0, sandboxed.output
    assert sandboxed.stdout == native.stdout
    assert native.stdout.startswith(
        "flood 3000: connected 9 pending 2991 failed 0, echo answered 1\naccepted 9\n"), \
        native.output


def test_syn_flood_meets_the_sentry_memory_bound(program: Builder,
                                                 pyvisor_cli: CliRunner) -> None:
    """With a small --sentry-memory the flood ends at socket() with ENOBUFS (each netstack
    socket is charged), not when the Sentry's heap runs out; the Sentry still serves the
    other connection, and once the sockets are closed new ones work again."""
    binary = program("syn_flood.c")
    r = pyvisor_cli(["--sentry-memory=4M", "do", "--", binary, "4000"], timeout=300)
    assert r.returncode == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "socket() refused with ENOBUFS after many sockets", r.output
    assert re.fullmatch(r"flood \d+: connected 9 pending \d+ failed 0, echo answered 1",
                        lines[1]), r.output
    assert lines[2:] == ["accepted 9", "after the flood: a new connection works", "ok"]


def test_ip_and_ping_in_one_sandbox(pyvisor_cli: CliRunner) -> None:
    """ip addr and ping -c 3 on the sandbox's own loopback (netstack)."""
    need("ip", "ping")
    r = pyvisor_cli(["do", "--", "/bin/sh", "-c",
                     "ip -o addr show lo && ping -c 3 -i 0.2 127.0.0.1"], timeout=120)
    assert r.returncode == 0, r.output
    assert "inet 127.0.0.1/8 scope host lo" in r.stdout
    assert "3 packets transmitted, 3 received, 0% packet loss" in r.stdout, r.output
