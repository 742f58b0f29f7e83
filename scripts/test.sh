#!/usr/bin/env bash
# The test command: sets up .venv on a fresh machine, then runs the whole suite on CPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; the suite lives in tests/ and must never be empty" >&2
    exit 1
fi
exit "$rc"
