#!/usr/bin/env bash
# The test command: sets up .venv on a fresh machine, runs ruff, then the whole suite on CPU.
# Arguments go to pytest (e.g. -m "not slow" for the quick loop).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
ruff check .  # lint first (configured in pyproject.toml): a finding fails the test command
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; the suite lives in tests/ and must never be empty" >&2
    exit 1
fi
exit "$rc"
