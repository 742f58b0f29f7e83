#!/usr/bin/env bash
# Creates .venv (or $ALEXNET_SPLIT_VENV) and installs the project with its test extras.
# Idempotent: reinstalls only when pyproject.toml changed. Sourced by run.sh and test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ALEXNET_SPLIT_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.alexnet_split-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    echo "setup: installing alexnet_split and its dependencies into $venv (first run downloads TensorFlow)"
    log="$venv/install.log"
    pip_install() { "$venv/bin/python" -m pip install -q "$@" >>"$log" 2>&1; }
    pip_install --upgrade pip && pip_install -e "$root[test]" || { cat "$log" >&2; exit 1; }
    # JAX is optional (its tests skip without it); a platform without a jax wheel still works.
    pip_install -e "$root[jax]" || echo "setup: jax did not install (see $log); JAX tests will skip"
    rm -f "$venv"/.alexnet_split-*
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
