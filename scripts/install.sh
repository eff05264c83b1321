#!/usr/bin/env bash
# Installs what pyvisor and its tests need on Debian 12, as root, and a
# /usr/local/bin/pyvisor launcher for this checkout. Idempotent; never
# prompts; runs apt-get only when a package is missing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
    python3 python3-seccomp python3-pyelftools python3-pytest
    gcc libc6-dev busybox-static tar findutils procps runc iputils-ping iproute2
    bash make git sqlite3 stress-ng   # tests/e2e/test_realprogs.py
    strace gdb                        # tests/syscalls/test_ptrace_tools.py (run inside)
    inotify-tools                     # tests/e2e/test_inotify_tools.py
    bsdutils tmux expect              # tests/e2e/test_pty_programs.py (ptys made inside)
    iptables                          # tests/syscalls/test_netlink_netfilter.py (own netns)
)
# The container engines the engine tests drive (tests/runtime/test_{podman,docker,
# containerd}.py): the tests start daemons of their own, so the system services that
# docker.io and containerd enable are stopped and disabled again when this script is
# what installed them.
# netavark + aardvark-dns: podman's bridge networks and port forwarding
# (tests/runtime/test_podman_ports.py, run inside a network namespace of its own).
ENGINES=(podman netavark aardvark-dns docker.io containerd)
OPTIONAL=(runsc)   # gVisor itself, for comparisons; fine if unavailable
# Real servers and clients that tests/e2e/test_servers.py and bench/run.py run
# inside a sandbox. Their host services must never start: while installing, a
# policy-rc.d (exit 101) forbids invoke-rc.d to start anything, and afterwards
# the units are disabled and any daemon that still came up is stopped.
SERVERS=(redis-server redis-tools nginx apache2-utils wrk iperf3 curl)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing() {
    local p
    for p in "$@"; do
        installed "$p" || echo "$p"
    done
}

apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -q </dev/null
        apt_updated=1
    fi
}

apt_install() {
    # Try with the lists we have; refresh them only if that fails.
    apt-get install -y -q --no-install-recommends "$@" </dev/null && return 0
    [ "$apt_updated" = 1 ] && return 1
    apt_update
    apt-get install -y -q --no-install-recommends "$@" </dev/null
}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: must run as root" >&2
    exit 1
fi

need=($(missing "${PACKAGES[@]}"))
if [ "${#need[@]}" -gt 0 ]; then
    echo "install.sh: installing ${need[*]}"
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
        apt_update
    fi
    apt_install "${need[@]}"
fi

eng=($(missing "${ENGINES[@]}"))
if [ "${#eng[@]}" -gt 0 ]; then
    echo "install.sh: installing ${eng[*]}"
    apt_install "${eng[@]}"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        units=()
        for p in "${eng[@]}"; do
            case "$p" in
                docker.io) units+=(docker.socket docker.service) ;;
                containerd) units+=(containerd.service) ;;
            esac
        done
        if [ "${#units[@]}" -gt 0 ]; then
            systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true
        fi
    fi
fi

srv=($(missing "${SERVERS[@]}"))
if [ "${#srv[@]}" -gt 0 ]; then
    echo "install.sh: installing ${srv[*]}"
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# Written by pyvisor install.sh while installing servers.\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made_policy=1
    fi
    echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
    rc=0
    apt_install "${srv[@]}" || rc=$?
    [ "$made_policy" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || exit "$rc"
    for unit in redis-server nginx iperf3; do
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        elif command -v update-rc.d >/dev/null && [ -e "/etc/init.d/$unit" ]; then
            update-rc.d "$unit" disable >/dev/null 2>&1 || true
            "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
        fi
    done
fi

opt=($(missing "${OPTIONAL[@]}"))
if [ "${#opt[@]}" -gt 0 ]; then
    apt_install "${opt[@]}" || echo "install.sh: optional ${opt[*]} unavailable; continuing"
fi

launcher=/usr/local/bin/pyvisor
content="#!/bin/sh
# Installed by $REPO/scripts/install.sh.
PYTHONPATH=\"$REPO\${PYTHONPATH:+:\$PYTHONPATH}\"
export PYTHONPATH
exec /usr/bin/python3 -m pyvisor \"\$@\"
"
if [ ! -f "$launcher" ] || [ "$(cat "$launcher")" != "${content%$'\n'}" ]; then
    mkdir -p "$(dirname "$launcher")"
    printf '%s' "$content" >"$launcher.tmp.$$"
    chmod 0755 "$launcher.tmp.$$"
    mv -f "$launcher.tmp.$$" "$launcher"
    echo "install.sh: installed $launcher"
fi

# Byte-compile the package: start-up imports ~60 modules, and without .pyc files
# (e.g. under PYTHONDONTWRITEBYTECODE=1) compiling them costs ~100 ms per sandbox.
/usr/bin/python3 -m compileall -q "$REPO/pyvisor" >/dev/null
# ... and bundle the .pyc files in one (pyvisor/runtime/modcache.py: ~6 ms per start).
(cd "$REPO" && /usr/bin/python3 -m pyvisor.runtime.modcache)
