#!/usr/bin/env bash
# The main job. Sets up .venv on a fresh machine, then:
#   1. shows the device plan (tower k on device k);
#   2. trains two steps with TensorFlow's placement log on and prints the proof that each
#      tower's forward, backward and update ops ran on its own device;
#   3. runs a short towers / merged / half comparison on the real Oxford Flowers 17 and prints
#      its table (seed recipe, 1 seed, 2 epochs: minutes on a laptop CPU, not a result).
# Data: --data DIR or $FLOWERS17_DIR (a folder with jpg/, 17flowers.tgz or tflearn's
# 17flowers.pkl); otherwise Flowers 17 is downloaded from the official VGG page into
# ~/.cache/alexnet_split/17flowers. Extra arguments go to `alexnet-split compare`; paths in them,
# and the commands it prints, are relative to where you run this script.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
alexnet-split devices
echo
alexnet-split check-placement --layout paper --mode towers --optimizer sgd
echo
alexnet-split compare --recipe seed_cpu --layout seed --modes towers,merged,half --seeds 0 --set epochs=2 \
    --name demo --results "$root/runs" "$@"
echo "(alexnet-split is in $VIRTUAL_ENV/bin: \`source $root/scripts/setup.sh\` puts it on your PATH)"
