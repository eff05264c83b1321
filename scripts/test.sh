#!/usr/bin/env bash
# Installs the dependencies, then runs the whole test suite (on the default platform,
# ptrace), then a second pass on the systrap platform over the security attacks, the
# seccomp lists and the syscall programs (README, *Platforms*).  Extra arguments go to
# the first pass only and skip the second (run it yourself with --platform=systrap).
# The exit status is the first failing pass's pytest status (5 if no tests ran).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/install.sh"
cd "$REPO"
status=0
/usr/bin/python3 -m pytest -q -ra tests "$@" || status=$?
if [ $# -eq 0 ]; then
    /usr/bin/python3 -m pytest -q -ra --platform=systrap \
        tests/security tests/seccomp tests/syscalls tests/runtime/test_platform_flag.py \
        || { s=$?; [ "$status" -ne 0 ] || status=$s; }
fi
exit "$status"
