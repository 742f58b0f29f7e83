"""float32 vs mixed_bfloat16: equal final accuracy on a short run (results/precision_cpu/).

Command (this project's 2-core CPU machine, TensorFlow, towers on two logical CPU devices):

    python experiments/bf16_vs_f32.py --data DIR

The seed recipe (Adam 1e-3, batch 64, 224 px, no augmentation) for 12 epochs instead of 100, towers
model, seeds 0, 1, 2, once in each precision; same seed = same split, initial weights and batch
order, so the table's paired difference isolates the precision. Runtime there: the table's
min/run column (3.9 min float32, 1.7 min bf16 of epochs per run, while other work shared the cores).
The accelerator version (100 epochs, JAX on an H200) is experiments/accelerator.py.
"""

import argparse

import alexnet_split as A
from alexnet_split import report, sweep


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="Flowers 17 folder; default $FLOWERS17_DIR or a download")
    p.add_argument("--results", default="results/precision_cpu")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=12)
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    devices = A.configure_devices(2)
    for precision in ("float32", "mixed_bfloat16"):
        refs = [] if precision == "float32" else [
            {"results": "../float32", "layout": "seed", "mode": "towers", "label": "towers float32"}]
        print(report.report(sweep.compare(f"{args.results}/{precision}", "seed", "seed", ("towers",), seeds,
                                          references=refs, data_root=args.data, devices=devices or None,
                                          overrides={"precision": precision, "epochs": args.epochs})))


if __name__ == "__main__":
    main()
