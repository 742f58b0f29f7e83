#!/usr/bin/env bash
# Prepares what scripts/device_call.sh carries to the accelerator machine (all ignored by git):
#   .whl/  Keras and its two pure dependencies for that machine's Python 3.12 (WHEELS, default
#          ../shared/device-wheels: the machine has no Keras and reaches no package index);
#   .gl/   compact Flowers 17 copies for the paper (256 px) and seed (224 px) recipes, made by
#          `alexnet-split export-data` from ARCHIVE (default ../shared/data/17flowers.tgz) at JPEG
#          QUALITY (default 85: 40 MB for both, where 90 takes 50 MB and leaves the cache ~8 MiB);
# and prints the carried size: a call carries at most 64 MiB, the compile cache .jax_cache included.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
wheels="${WHEELS:-$root/../shared/device-wheels}"
archive="${ARCHIVE:-$root/../shared/data/17flowers.tgz}"
quality="${QUALITY:-85}"
mkdir -p .whl
cp "$wheels"/*.whl .whl/
for size in 256 224; do
    [ -f ".gl/d$size/jpg/files.txt" ] || alexnet-split export-data --data "$archive" --size "$size" --quality "$quality" --out ".gl/d$size"
done
du -sh .whl .gl .jax_cache 2>/dev/null || true
du -scm .whl .gl .jax_cache 2>/dev/null | tail -1 | awk '{ if ($1 > 60) print "device_prep: WARNING: " $1 " MiB carried, near the 64 MiB limit"; else print "device_prep: " $1 " MiB to carry" }'
