"""The full towers / merged / half tables on the accelerator, in slots of a few minutes.

Command on the device machine (KERAS_BACKEND=jax, one GPU; carry Keras and compact data copies
made with ``alexnet-split export-data --size 256`` and ``--size 224``, see docs/accelerator.md):

    KERAS_BACKEND=jax python experiments/accelerator_tables.py --data D256 --data-seed D224 \\
        --out OUT --budget 540 --jobs bench,paper,seed,init:caffe,init:fan_in

Jobs, in the order given, each skipped once the budget is spent:

* ``bench``: the runner against the scanned compute-only loop, side by side
  (:func:`alexnet_split.bench.runner_table`: mixed_bfloat16 rows per mode and kernel option, the
  PyTorch reference, XLA's concurrent command buffers), OUT/bench/, within ``--bench-seconds``.
  ``bench32``: the same in float32.
* ``paper``: the fixed paper recipe (layout paper, mixed_bfloat16), towers, merged, half.
* ``seed``: the seed recipe as written (layout seed, float32), towers, merged, half.
* ``init:caffe``, ``init:fan_in``: the paper recipe with that init, capped at ``--init-steps``
  steps: enough for the step that leaves chance (issue 11), not the final accuracy.

Runs go seed by seed, the three modes of a seed before the next seed, so that a cut leaves
complete seeds; a mode compiles once per process (the device engine caches its compiled loop per
model structure). A run is started only if the budget left exceeds 1.3x the longest run of the
job so far (``--first-estimate`` for the first). After every run OUT/<name>.tar is refreshed
with the run folders' logs (config.json, history.csv, state.json, final.json, conv1.npz; never
checkpoints). Unpack it over results/<name>/ and rerun with the same arguments in the next slot:
finished runs are skipped, so a table fills over several slots. Then ``alexnet-split report``.
With ``--work results`` the committed runs of the repository copy on the device machine count
as finished, so a slot trains only what is missing.
"""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import alexnet_split  # noqa: E402, F401 (first: TensorFlow imported without its C++ banner)

# isort: split

import keras  # noqa: E402

from alexnet_split import bench, devices, report, runlog, sweep, train  # noqa: E402

MODES = ("towers", "merged", "half")


def jobs(kind, init_steps):
    """name -> (results folder, recipe, layout, overrides)."""
    return {
        "paper": (f"paper_{kind}", "paper", "paper", {"precision": "mixed_bfloat16"}),
        "seed": (f"seed_{kind}", "seed", "seed", {}),
        **{f"init:{init}": (f"init_{init}_{kind}", "paper", "paper",
                            {"precision": "mixed_bfloat16", "init": init, "steps": init_steps})
           for init in ("paper", "caffe", "fan_in")},
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Flowers 17 folder for the paper recipe (256 px export is enough)")
    p.add_argument("--data-seed", default=None, help="folder for the seed recipe's 224 px images (default: --data)")
    p.add_argument("--out", required=True, help="where the tars (and the bench tables) go")
    p.add_argument("--work", default=None, help="where the results folders live (default: OUT)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole script")
    p.add_argument("--jobs", default="bench,paper,seed")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--init-steps", type=int, default=2000)
    p.add_argument("--first-estimate", type=float, default=60.0, help="seconds assumed for a job's first group")
    p.add_argument("--bench-seconds", type=float, default=240.0, help="the most the bench job may take")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more recipe overrides (smoke tests)")
    args = p.parse_args()
    t0 = time.monotonic()
    deadline = t0 + args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or out)
    kind = devices.host_kind()
    print(f"backend {keras.backend.backend()}, host {kind}, {runlog.machine()}", flush=True)
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    seeds = [int(s) for s in args.seeds.split(",")]
    table = jobs(kind, args.init_steps)
    for job in args.jobs.split(","):
        try:
            run_job(job, args, table, seeds, extra, out, work, deadline, t0)
        except Exception:  # one job's failure must not cost the slot's other jobs
            traceback.print_exc()
            print(f"{job}: FAILED (traceback above)", flush=True)
    print(f"done in {time.monotonic() - t0:.0f} s", flush=True)


def run_job(job, args, table, seeds, extra, out, work, deadline, t0):
    left = deadline - time.monotonic()
    if job in ("bench", "bench32"):
        if left < 60:
            print(f"{job}: skipped, {left:.0f} s left", flush=True)
            return
        bench.runner_table("paper", ("mixed_bfloat16",) if job == "bench" else ("float32",),
                           out_dir=out / "bench", suffix="" if job == "bench" else "-float32",
                           log=lambda line: print(line, flush=True), deadline=min(left - 30, args.bench_seconds))
        return
    name, recipe, layout, overrides = table[job]
    overrides = {**overrides, **extra}
    root = work / name
    sweep.write_manifest(root, recipe, layout, MODES, seeds, overrides=overrides)
    data_root = args.data_seed if (layout == "seed" and args.data_seed) else args.data
    longest = 0.0
    for seed in seeds:
        for mode in MODES:
            run_dir = root / "runs" / sweep.run_name(layout, mode, seed)
            if (run_dir / "final.json").is_file():
                continue
            left = deadline - time.monotonic()
            estimate = 1.3 * longest if longest else args.first_estimate
            if left < estimate:
                print(f"{name} {mode} seed {seed}: not started, {left:.0f} s left, estimate {estimate:.0f} s",
                      flush=True)
                continue
            start = time.monotonic()
            keras.backend.clear_session()
            f = train.train(run_dir, layout, mode, recipe, seed=seed, data_root=data_root, overrides=overrides,
                            checkpoint_seconds=1e9, verbose=2, engine="device")
            took = time.monotonic() - start
            longest = max(longest, took)
            print(f"{name} {mode} seed {seed}: test top-1 {f['test_top1']:.4f}, left chance at step "
                  f"{f['steps_to_leave_chance']}, {f['steps']} steps, {f['stopped_by']} ({took:.0f} s, "
                  f"{time.monotonic() - t0:.0f} s into the budget)", flush=True)
            sweep.pack_logs(root, out / f"{name}.tar")
    try:
        print(report.report(root), flush=True)
    except ValueError as e:  # no finished run yet
        print(e, flush=True)
    sweep.pack_logs(root, out / f"{name}.tar")


if __name__ == "__main__":
    main()
