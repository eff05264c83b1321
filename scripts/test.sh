#!/usr/bin/env bash
# Installs the dependencies, then runs the whole test suite on the default platform
# (ptrace), then the whole suite again on the systrap platform (README, *Platforms*;
# ~12 minutes each on 2 CPUs).  Extra arguments go to the first pass only and skip the
# second (run it yourself with --platform=systrap).
# The exit status is the first failing pass's pytest status (5 if no tests ran).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/install.sh"
cd "$REPO"
status=0
/usr/bin/python3 -m pytest -q -ra tests "$@" || status=$?
if [ $# -eq 0 ]; then
    /usr/bin/python3 -m pytest -q -ra --platform=systrap tests \
        || { s=$?; [ "$status" -ne 0 ] || status=$s; }
fi
exit "$status"
