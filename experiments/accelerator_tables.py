"""The full towers / merged / half tables on the accelerator, in slots of a few minutes.

Command on the device machine (KERAS_BACKEND=jax, one GPU; carry Keras and a compact data copy
made with ``alexnet-split export-data --size 256``, as for experiments/accelerator.py):

    KERAS_BACKEND=jax python experiments/accelerator_tables.py --data DATA --out OUT --budget 480

For each recipe (default: the fixed ``paper`` recipe, then ``seed``), runs seed by seed, the three
modes of a seed before the next seed, with the device engine; a run that would not finish in the
budget left (1.3x the longest run so far) is not started. After every run OUT/<name>.tar is
refreshed with the run folders' logs (config.json, history.csv, state.json, final.json,
conv1.npz; never checkpoints). Unpack it over results/<name>/ and rerun with the same
arguments in the next slot: finished runs are skipped (their logs come back in the tar), so a
table fills over several slots. Then ``alexnet-split report results/<name>``.

The runner row of the benchmark (the device loop end to end against ``train_on_batch``, same
model, batch and precision) is measured first with ``--bench``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from alexnet_split import bench, report, train  # noqa: E402

MODES = ("towers", "merged", "half")
LAYOUT = {"paper": "paper", "seed": "seed"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Flowers 17 folder (a compact export is enough)")
    p.add_argument("--out", required=True, help="where the tars (and the bench tables) go")
    p.add_argument("--work", default=None, help="where the results folders live (default: OUT)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole script")
    p.add_argument("--recipes", default="paper,seed")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--precision", default="mixed_bfloat16")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more recipe overrides (smoke tests)")
    p.add_argument("--bench", action="store_true", help="measure the runner row first")
    args = p.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or out)
    kind = bench.host_kind()
    print(f"backend {keras.backend.backend()}, host {kind}", flush=True)
    if args.bench:
        bench.run("paper", batches=(128,), precisions=("float32", "mixed_bfloat16"), variants=("towers_1dev",),
                  out_dir=out / "bench", log=lambda line: print(line, flush=True))
    overrides = {"precision": args.precision, **{k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}}
    seeds = [int(s) for s in args.seeds.split(",")]
    longest = 0.0
    for recipe in args.recipes.split(","):
        name = f"{recipe}_{kind}"
        root = work / name
        report.write_manifest(root, recipe, LAYOUT[recipe], MODES, seeds, overrides=overrides)
        for seed in seeds:
            for mode in MODES:
                run_dir = root / "runs" / report.run_name(LAYOUT[recipe], mode, seed)
                if (run_dir / "final.json").is_file():
                    continue
                left = args.budget - (time.perf_counter() - t0)
                if left < 1.3 * longest + 10:
                    print(f"not starting {name} {mode} seed {seed}: {left:.0f} s left, a run took up to "
                          f"{longest:.0f} s", flush=True)
                    continue
                start = time.perf_counter()
                keras.backend.clear_session()
                final = train.train(run_dir, LAYOUT[recipe], mode, recipe, seed=seed, data_root=args.data,
                                    overrides=overrides, checkpoint_seconds=1e9, verbose=2, engine="device")
                longest = max(longest, time.perf_counter() - start)
                print(f"{name} {mode} seed {seed}: test top-1 {final['test_top1']:.4f}, left chance at step "
                      f"{final['steps_to_leave_chance']}, {final['steps']} steps "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
                report.pack_logs(root, out / f"{name}.tar")
        try:
            print(report.report(root), flush=True)
        except ValueError as e:  # no finished run yet
            print(e, flush=True)
        report.pack_logs(root, out / f"{name}.tar")
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
