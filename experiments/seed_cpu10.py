"""The answer on a 2-core CPU: towers vs merged vs half, seed layout, 10 paired seeds.

Command (resumable: finished runs are skipped, so run it again after any stop):

    nice -n 10 python experiments/seed_cpu10.py --data DIR [--commit]

Hardware: the project's 2-core x86 CPU machine (TensorFlow, towers on two logical CPU devices).
Runtime: about 3.5 hours of the whole machine for the 30 runs (``config.seed_cpu10``'s docstring).
Result: results/seed_cpu10/table.md, the README's headline; regenerate it from the run logs with
``alexnet-split report results/seed_cpu10``.

``--bench`` first measures one run on both cores against one run per core side by side
(:mod:`alexnet_split.bench_pool`) into results/bench/cpu-2core-sweep.md; the sweep then runs
the faster way (``--workers auto``, the default, reads that file). ``--commit`` commits each run
folder as it lands (``git commit --only`` on that folder, nothing else of the work tree).
"""

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from alexnet_split import bench_pool, report, sweep
from alexnet_split.workers import Pool, RunSpec

ROOT = Path(__file__).resolve().parents[1]
RECIPE, LAYOUT, MODES, SEEDS = "seed_cpu10", "seed", ("towers", "merged", "half"), tuple(range(10))
BENCH = ROOT / "results" / "bench" / "cpu-2core-sweep"
ESTIMATE = {"merged": 720.0, "towers": 600.0, "half": 360.0}  # seconds per run side by side (the pilot)


def workers_from_bench() -> int:
    """The arm of results/bench/cpu-2core-sweep.csv with the higher steady rate (1 without the file)."""
    if not BENCH.with_suffix(".csv").is_file():
        print(f"no {BENCH.with_suffix('.csv')}: one worker on every core (run --bench to measure)", flush=True)
        return 1
    with open(BENCH.with_suffix(".csv")) as f:
        best = max(csv.DictReader(f), key=lambda r: float(r["steady_img_s"]))
    return int(best["workers"])


def commit_run(folder: Path, message: str):
    """Commit one finished run folder and only it; retried while another git command holds the index."""
    for _ in range(30):
        subprocess.run(["git", "add", "--", str(folder)], cwd=ROOT, capture_output=True)
        done = subprocess.run(["git", "commit", "-q", "-m", message, "--only", "--", str(folder)], cwd=ROOT,
                              capture_output=True, text=True)
        if done.returncode == 0 or "nothing to commit" in done.stdout + done.stderr:
            return
        time.sleep(10)
    print(f"could not commit {folder}: {done.stderr.strip()}", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("FLOWERS17_DIR"), help="Flowers 17 (as alexnet-split train)")
    p.add_argument("--results", default=str(ROOT / "results" / RECIPE), help="the comparison folder")
    p.add_argument("--workers", default="auto", help="processes side by side, each bound to a core when 2+; "
                                                     "auto: the faster arm of --bench's file")
    p.add_argument("--bench", action="store_true", help="measure both arms first (about 3 minutes)")
    p.add_argument("--commit", action="store_true", help="git-commit each run folder as it lands")
    args = p.parse_args()
    if args.bench:
        rows = bench_pool.side_by_side(RECIPE, LAYOUT, "towers", epochs=4, data=args.data)
        print(bench_pool.write(rows, BENCH, "python experiments/seed_cpu10.py --bench --data DIR", RECIPE, LAYOUT,
                               "towers"), flush=True)
    workers = workers_from_bench() if args.workers == "auto" else int(args.workers)
    results = Path(args.results)
    sweep.write_manifest(results, RECIPE, LAYOUT, MODES, SEEDS)
    specs = [RunSpec(str(results), LAYOUT, mode, RECIPE, seed, {}, args.data, ESTIMATE[mode], group=seed)
             for seed in SEEDS for mode in MODES]
    todo = [s for s in specs if not (s.out / "final.json").is_file()]
    print(f"{len(specs) - len(todo)} of {len(specs)} runs finished; training {len(todo)} on {workers} worker(s)",
          flush=True)

    def landed(spec, result):
        if result["status"] == "done" and args.commit:
            f = result["final"]
            commit_run(spec.out, f"{RECIPE}: {spec.out.name} finished (test top-1 {f['test_top1']:.3f}, "
                                 f"at best val {f['test_top1_best_val']:.3f})")

    with Pool(workers, backend="tensorflow", pin=workers > 1, deterministic=False, on_result=landed) as pool:
        outcome = pool.run(todo)
    failed = [r for r in outcome if r["status"] != "done"]
    print(report.for_terminal(report.report(results), results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
