"""The initialisation study, step-0 part: activation and gradient scale per layer, per mode and init.

Command (CPU, about a minute):

    python experiments/init_study.py --data ../shared/data

Takes the first 128 training images of the seed-0 split at 256 px, centre crops 227, and
measures every block's output std and kernel-gradient std at the initial weights
(:func:`alexnet_split.initstudy.step0_stats`) for towers / merged / half under the inits
``paper``, ``caffe`` and ``fan_in``. Writes results/init_study/step0.md, step0.csv and
step0.png (activation std per layer, one panel per init).

The runs of the study (escape steps and final accuracy per mode x init x seed) need the
accelerator; see the README's initialisation section.
"""

import argparse
import csv
import io
from pathlib import Path

from alexnet_split import data, initstudy, models, pipeline, report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--out", default="results/init_study")
    args = p.parse_args()
    ds = data.load(args.data, size=256)
    idx = data.stratified_split(ds.labels, 0)["train"][:args.batch]
    (x,) = pipeline.crops(ds.images[idx], 227)
    rows = []
    for init in models.INITS:
        for mode in ("towers", "merged", "half"):
            rows += initstudy.step0_stats(x.astype("float32"), ds.labels[idx], "paper", mode, init)
            print(init, mode, " ".join(f"{r['layer']}:{r['activation_std']:.3g}" for r in rows[-8:]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = (f"{args.batch} training images of the seed-0 stratified split (Flowers 17 at 256 px, centre 227 "
              "crops), paper layout; `python experiments/init_study.py`")
    report.atomic_write(out / "step0.md", initstudy.markdown(rows, source))
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    report.atomic_write(out / "step0.csv", buf.getvalue())
    (out / "step0.png").write_bytes(initstudy.plot(rows, out / "step0.png"))
    print(initstudy.markdown(rows, source))


if __name__ == "__main__":
    main()
