"""Control for the paper-table towers seeds whose loss jumped to ~15 in the first 100 steps and
stayed there (results/paper_nvidia-h200, seeds 1 and 4, trained as vmapped lanes): the same seeds
alone on the device engine (bf16, then float32), and again as a 2-lane group, for 300 steps.
If the single runs die too, the lanes are not the cause.

    KERAS_BACKEND=jax python experiments/dead_start_control.py --data DATA --out OUT
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from alexnet_split import report, train  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--work", default="/tmp/dead_start")
    p.add_argument("--seeds", default="1,4")
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    work, seeds = Path(args.work), [int(s) for s in args.seeds.split(",")]
    t0 = time.monotonic()
    for label, precision, lanes in (("single_bf16", "mixed_bfloat16", False), ("single_f32", "float32", False),
                                    ("lanes_bf16", "mixed_bfloat16", True)):
        overrides = {"precision": precision, "steps": args.steps}
        outs = [work / label / report.run_name("paper", "towers", s) for s in seeds]
        keras.backend.clear_session()
        if lanes:
            train.train_seeds(outs, "paper", "towers", "paper", seeds, data_root=args.data, overrides=overrides,
                              verbose=0)
        else:
            for out, s in zip(outs, seeds):
                train.train(out, "paper", "towers", "paper", seed=s, data_root=args.data, overrides=overrides,
                            verbose=0, checkpoint_seconds=1e9, engine="device")
        for out, s in zip(outs, seeds):
            rows = (out / "history.csv").read_text().splitlines()[1:]
            print(f"{label} seed {s}: loss by 50 steps " + " ".join(r.split(",")[2][:6] for r in rows)
                  + " | val " + " ".join(r.split(",")[6][:5] for r in rows), flush=True)
        report.pack_logs(work, Path(args.out) / "dead_start_control.tar")
        print(f"{label}: {time.monotonic() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
