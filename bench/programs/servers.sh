#!/bin/sh
# Server benchmarks for bench/run.py: a real server and its real client, both inside
# the environment measured (natively, or in one sandbox), over 127.0.0.1.  Prints
# progress to stderr and one figure on the last line of stdout.
#
#   servers.sh iperf3 PORT SECONDS   loopback TCP throughput, MiB/s (iperf3 -c, one stream)
#   servers.sh redis PORT N OP       redis-benchmark -t OP -n N -c 10 -P 1, requests/s
#   servers.sh http PORT SECONDS     nginx (1 worker, 612-byte file) + wrk -t1 -c10, requests/s
set -e
mode=$1
P=$2
D=$(mktemp -d)
chmod 755 "$D"
trap 'rm -rf "$D"' EXIT

wait_for() {
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 300 ]; then echo "servers.sh: server never came up: $*" >&2; exit 3; fi
        sleep 0.1
    done
}

case "$mode" in
iperf3)
    iperf3 -s -1 -B 127.0.0.1 -p "$P" >"$D/server.log" 2>&1 &
    srv=$!
    # iperf3 -J exits 0 even when its connect is refused (the server not up yet).
    i=0
    while iperf3 -c 127.0.0.1 -p "$P" -t "$3" -J >"$D/client.json" 2>"$D/client.err" || true
          grep -q '"error":.*connect' "$D/client.json"; do
        i=$((i + 1))
        if [ $i -gt 50 ]; then cat "$D/client.json" "$D/client.err" >&2; exit 3; fi
        sleep 0.2
    done
    wait $srv || true
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
if "error" in d:
    sys.exit("iperf3: " + d["error"])
print(d["end"]["sum_received"]["bits_per_second"] / 8 / 2**20)' "$D/client.json"
    ;;
redis)
    redis-server --port "$P" --bind 127.0.0.1 --save '' --appendonly no --dir "$D" \
        --logfile "$D/log" --daemonize no &
    srv=$!
    wait_for redis-cli -p "$P" ping
    redis-benchmark -p "$P" -q -n "$3" -c 10 -t "$4" | tr '\r' '\n' \
        | grep 'requests per second' | tail -1 >"$D/out"
    redis-cli -p "$P" shutdown nosave >/dev/null || true
    wait $srv || true
    cat "$D/out" >&2
    sed -E 's/^[A-Z]+: ([0-9.]+) requests per second.*/\1/' "$D/out"
    ;;
http)
    mkdir "$D/html"
    head -c 612 /dev/zero | tr '\0' x >"$D/html/index.html"   # nginx's welcome page size
    chmod 644 "$D/html/index.html"
    cat >"$D/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $D/nginx.pid;
error_log $D/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $D/body; proxy_temp_path $D/proxy; fastcgi_temp_path $D/fcgi;
    uwsgi_temp_path $D/uwsgi; scgi_temp_path $D/scgi;
    sendfile on; tcp_nodelay on;
    server { listen 127.0.0.1:$P; root $D/html; }
}
EOF
    nginx -c "$D/nginx.conf" -p "$D" -e "$D/error.log" &
    srv=$!
    wait_for curl -sf -o /dev/null "http://127.0.0.1:$P/"
    wrk -t1 -c10 -d"$3"s "http://127.0.0.1:$P/" >"$D/wrk.txt"
    kill -QUIT $srv
    wait $srv || true
    cat "$D/wrk.txt" >&2
    if grep -q -E 'Socket errors|Non-2xx' "$D/wrk.txt"; then exit 4; fi
    awk '/^Requests\/sec:/ {print $2}' "$D/wrk.txt"
    ;;
*)
    echo "usage: servers.sh iperf3|redis|http PORT ..." >&2
    exit 2
    ;;
esac
