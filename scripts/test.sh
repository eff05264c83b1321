#!/usr/bin/env bash
# Installs the dependencies, then runs the whole test suite. Extra
# arguments go to pytest. The exit status is pytest's (5 if no tests ran).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/install.sh"
cd "$REPO"
exec /usr/bin/python3 -m pytest -q -ra tests "$@"
