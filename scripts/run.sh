#!/usr/bin/env bash
# The main job: sets up .venv on a fresh machine, shows the device plan and the per-layer
# placement, then trains two steps with TensorFlow's placement log on and prints the proof
# that each tower's forward, backward and update ops ran on its own device.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
alexnet-split devices
echo
alexnet-split summary --layout paper --mode towers
echo
alexnet-split check-placement --layout paper --mode towers --optimizer sgd
