"""Towers vs merged vs half on Oxford Flowers 17: the experiment behind results/.

Command (CPU, the reduced protocol that produced results/seed_cpu and results/paper_cpu):

    python experiments/towers_vs_merged.py --data DIR

Hardware: the project's 2-core CPU machine (TensorFlow 2.21, two logical CPU devices, towers
placed on /CPU:0 and /CPU:1; merged and half on /CPU:0).
Runtime there: the tables' min/run column (seed_cpu: 30 epochs per run, 3 seeds; paper_cpu:
up to 4,000 steps per run of the fixed paper recipe at 131x131, 1 seed).
Result: results/seed_cpu/table.md and results/paper_cpu/table.md; regenerate them from the run
logs with ``alexnet-split report results/<name>``. Finished runs are skipped, so an interrupted
experiment resumes where it stopped.

The full protocol (``--protocol full``: the seed recipe at 100 epochs and the paper recipe at up
to 10,000 steps, 5 seeds each) needs a GPU.
"""

import argparse

import alexnet_split as A
from alexnet_split import report, sweep

SEED_AS_WRITTEN = "seed-as-written"
PROTOCOLS = {
    # name: [(recipe, layout, default seeds, reference rows)], run in order (the paper table
    # shows the seed model as written as a reference row)
    "cpu": [("seed_cpu", "seed", "0,1,2", []),
            ("paper_cpu", "paper", "0", [{"results": "../seed_cpu", "layout": "seed", "mode": "merged",
                                          "label": SEED_AS_WRITTEN}])],
    "full": [("seed", "seed", "0,1,2,3,4", []),
             ("paper", "paper", "0,1,2,3,4", [{"results": "../seed", "layout": "seed", "mode": "merged",
                                               "label": SEED_AS_WRITTEN}])],
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    p.add_argument("--seeds", default=None, help="default: each recipe's (see PROTOCOLS)")
    p.add_argument("--data", default=None, help="Flowers 17 folder; default $FLOWERS17_DIR or a download")
    p.add_argument("--results", default="results")
    p.add_argument("--checkpoint-seconds", type=float, default=120.0,
                   help="checkpoint at most this often (a kill replays the intervals since)")
    args = p.parse_args()
    devices = A.configure_devices(2)
    for recipe, layout, seeds, refs in PROTOCOLS[args.protocol]:
        seeds = [int(s) for s in (args.seeds or seeds).split(",")]
        print(report.report(sweep.compare(f"{args.results}/{recipe}", recipe, layout, ("towers", "merged", "half"),
                                          seeds, references=refs, data_root=args.data, devices=devices or None,
                                          checkpoint_seconds=args.checkpoint_seconds)))


if __name__ == "__main__":
    main()
