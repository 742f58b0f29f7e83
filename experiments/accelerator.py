"""Accelerator runs behind results/bench/<gpu>.md and results/precision_<gpu>/ (KERAS_BACKEND=jax, one GPU).

1. The benchmark: towers (on one device: JAX has no TF-style per-layer placement), merged and
   half; float32 and mixed_bfloat16; batches 64, 128 and 256; the card's matmul peak measured in
   the same run in each precision.
2. float32 vs mixed_bfloat16 final accuracy: the seed recipe (Adam, 100 epochs, 224 px), towers,
   seeds interleaved (float32 then bf16 for seed 0, then seed 1, ...) so that a run cut short by
   the time budget still leaves complete pairs.

Command on a GPU machine with JAX and Keras installed (a compact data copy is made with
``alexnet-split export-data --size 256``):

    KERAS_BACKEND=jax python experiments/accelerator.py --data DATA --out OUT --budget 420

`--budget` seconds bound the whole script: no new measurement or run starts once it would not
finish in time. Writes OUT/bench/<gpu>.md|.csv and OUT/precision.tar (the run folders, without
checkpoints, refreshed after every run); unpack the latter into results/precision_<gpu>/.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexnet_split import runlog

runlog.quiet_tensorflow_import()  # before TensorFlow is imported: its C++ banner reads like errors

import keras  # noqa: E402

from alexnet_split import bench, devices, report, sweep, train  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Flowers 17 folder (a compact export is enough)")
    p.add_argument("--out", required=True)
    p.add_argument("--work", default=None, help="where the run folders live (default: OUT)")
    p.add_argument("--budget", type=float, default=420.0, help="seconds for the whole script")
    p.add_argument("--bench-share", type=float, default=0.45, help="part of the budget the benchmark may start in")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=None, help="override the seed recipe's 100 epochs")
    p.add_argument("--batches", default="64,128,256")
    p.add_argument("--bench-input-size", type=int, default=None, help="smaller inputs, for a smoke test")
    args = p.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    left = lambda: args.budget - (time.perf_counter() - t0)  # noqa: E731
    print(f"backend {keras.backend.backend()}, host {devices.host_kind()}", flush=True)

    bench.run("paper", batches=tuple(int(b) for b in args.batches.split(",")),
              variants=("towers_1dev", "merged", "half"), out_dir=out / "bench", input_size=args.bench_input_size,
              deadline=args.bench_share * args.budget, log=lambda line: print(line, flush=True))
    print(f"bench done at {time.perf_counter() - t0:.0f} s", flush=True)

    seeds = [int(s) for s in args.seeds.split(",")]
    kind = devices.host_kind()
    root = Path(args.work or out) / f"precision_{kind}"
    overrides = {p_: {"precision": p_, **({"epochs": args.epochs} if args.epochs else {})} for p_ in PRECISIONS}
    sweep.write_manifest(root / "float32", "seed", "seed", ("towers",), seeds, overrides=overrides["float32"])
    sweep.write_manifest(root / "mixed_bfloat16", "seed", "seed", ("towers",), seeds,
                          references=[{"results": "../float32", "layout": "seed", "mode": "towers",
                                       "label": "towers float32"}], overrides=overrides["mixed_bfloat16"])
    longest = 0.0
    for seed in seeds:
        for precision in PRECISIONS:
            if left() < 1.3 * longest + 10:
                print(f"stopping: {left():.0f} s left, a run took up to {longest:.0f} s", flush=True)
                break
            start = time.perf_counter()
            keras.backend.clear_session()
            run_dir = root / precision / "runs" / sweep.run_name("seed", "towers", seed)
            final = train.train(run_dir, "seed", "towers", "seed", seed=seed, data_root=args.data,
                                overrides=overrides[precision], checkpoint_seconds=1e9, verbose=2)
            longest = max(longest, time.perf_counter() - start)
            print(f"{precision} seed {seed}: test top-1 {final['test_top1']:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            sweep.pack_logs(root, out / "precision.tar")
        else:
            continue
        break
    for precision in PRECISIONS:
        try:
            print(report.report(root / precision), flush=True)
        except ValueError as e:  # no finished run
            print(e, flush=True)
    sweep.pack_logs(root, out / "precision.tar")
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
