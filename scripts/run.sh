#!/usr/bin/env bash
# The main job. Sets up .venv on a fresh machine, then:
#   1. shows the device plan (tower k on device k);
#   2. trains two steps with TensorFlow's placement log on and prints the proof that each
#      tower's forward, backward and update ops ran on its own device;
#   3. runs a short towers / merged / half comparison on the real Oxford Flowers 17 and prints
#      its table: the first 12 epochs of the answer's recipe (seed_cpu10), seed 0, in which every
#      mode leaves chance (about 8 minutes on 2 CPU cores; one seed is a demonstration, not a result);
#   4. says where the full answer is and how to regenerate or rerun it.
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
start=$(date +%s)
alexnet-split compare --recipe seed_cpu10 --layout seed --modes towers,merged,half --seeds 0 --set epochs=12 \
    --checkpoint-seconds 120 --name demo --results "$root/runs" "$@"
echo "(the comparison took $(( ($(date +%s) - start + 30) / 60 )) min)"
echo
echo "The full answer, 10 paired seeds of 60 epochs: $root/results/seed_cpu10/table.md (the README's headline)."
echo "Regenerate it from its run logs: alexnet-split report $root/results/seed_cpu10"
echo "Rerun it (about 3.5 h on 2 cores, resumable): nice -n 10 python $root/experiments/seed_cpu10.py --data DIR"
echo "(alexnet-split is in $VIRTUAL_ENV/bin: \`source $root/scripts/setup.sh\` puts it on your PATH)"
