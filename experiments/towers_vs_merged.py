"""Towers vs merged vs half on Oxford Flowers 17: the experiment behind results/.

Command (CPU, the reduced protocol that produced results/seed_cpu and results/paper_cpu):

    python experiments/towers_vs_merged.py --data ../shared/data

Hardware: the project's 2-core CPU machine (TensorFlow 2.21, two logical CPU devices, towers
placed on /CPU:0 and /CPU:1; merged and half on /CPU:0).
Runtime there: about 1 hour for the 18 runs (the tables' min/run column: 2.3-4.6 minutes per
seed_cpu run of 30 epochs, 1.6-2.5 per paper_cpu run of 20 epochs at 131x131).
Result: results/seed_cpu/table.md (towers, merged and half within a few points, no significant
paired difference at 3 seeds) and results/paper_cpu/table.md (the paper's SGD recipe stays at
chance in this budget); regenerate with ``alexnet-split report results/<name>``.

The full protocol (90-100 epochs, 5 seeds) is ``--protocol full``; it needs a GPU.
"""

import argparse

import alexnet_split as A
from alexnet_split import report

PROTOCOLS = {
    # name: [(recipe, layout, references)], run in order (the paper table refers to the seed one)
    "cpu": [("seed_cpu", "seed", []),
            ("paper_cpu", "paper", [{"results": "../seed_cpu", "layout": "seed", "mode": "merged",
                                     "label": "seed-as-written"}])],
    "full": [("seed", "seed", []),
             ("paper", "paper", [{"results": "../seed", "layout": "seed", "mode": "merged",
                                  "label": "seed-as-written"}])],
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    p.add_argument("--seeds", default=None, help="default: 0,1,2 (cpu) or 0,1,2,3,4 (full)")
    p.add_argument("--data", default=None, help="Flowers 17 folder; default $FLOWERS17_DIR or a download")
    p.add_argument("--results", default="results")
    args = p.parse_args()
    seeds = [int(s) for s in (args.seeds or ("0,1,2" if args.protocol == "cpu" else "0,1,2,3,4")).split(",")]
    devices = A.configure_devices(2)
    for recipe, layout, refs in PROTOCOLS[args.protocol]:
        print(report.compare(f"{args.results}/{recipe}", recipe, layout, ("towers", "merged", "half"), seeds,
                             references=refs, data_root=args.data, devices=devices or None))


if __name__ == "__main__":
    main()
