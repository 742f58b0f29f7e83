"""Before/after figures for the four fixes to the paper recipe (docs/training.md, "The paper's recipe").

Command (CPU, about a minute; the run logs of results/paper_cpu/ must exist for fix 2):

    python experiments/paper_recipe_fixes.py --data DIR

Writes results/paper_recipe/fixes.md, which docs/training.md shows. Every figure is computed here:

1. PCA lighting: the per-image RGB shift on the real training images (256 px, one stratified
   split), with the eigenvalues (variances) as magnitudes, as before, and with the pixel
   standard deviations, as now.
2. Plateau rule: both rules replayed on the validation curve of results/paper_cpu's towers run.
3. Weight decay: PaperSGD against the paper's formula over three steps on a toy weight, and the
   steady-state shrink per step with no loss gradient, against Keras's decoupled decay.
4. Run length: the steps the old and new protocols allow.
"""

import argparse
import csv
import math
from pathlib import Path

from alexnet_split import runlog

runlog.quiet_tensorflow_import()  # before TensorFlow is imported: its C++ banner reads like errors

import keras
import numpy as np

from alexnet_split import config, data, pipeline, report, sweep
from alexnet_split.optimizers import PaperSGD
from alexnet_split.schedule import Plateau


def pca_rows(data_root):
    ds = data.load(data_root, size=256)
    train = ds.images[data.stratified_split(ds.labels, 0)["train"]]
    magnitudes, eigvec = pipeline.pca_basis(train)
    alpha = np.random.default_rng(0).normal(0.0, 0.1, (100_000, 3))
    before = (alpha * magnitudes ** 2) @ eigvec.T  # the eigenvalues themselves as magnitudes
    after = pipeline.pca_shifts(np.random.default_rng(0), 100_000, (magnitudes, eigvec), 0.1)
    ratio = (after @ eigvec).std(0) / (0.1 * magnitudes)

    def p99(s):
        return np.percentile(np.linalg.norm(s, axis=1), 99)

    return (f"top component: eigenvalue {magnitudes.max() ** 2:,.0f} (pixel values²), std {magnitudes.max():.1f}; "
            f"99th percentile of the shift's length: before {p99(before):,.0f}, after {p99(after):.1f} pixel values; "
            f"after, shift std / (0.1 x component std) = {', '.join(f'{r:.3f}' for r in ratio)}")


def old_rule(history, patience=5):
    """The committed rule: 5 validations without a better accuracy, counted from the start."""
    best, since, drops = -1.0, 0, []
    for row in history:
        best, since = (row["val_accuracy"], 0) if row["val_accuracy"] > best else (best, since + 1)
        if since >= patience and len(drops) < 3:
            drops.append(int(row["step"]))
            since = 0
    return drops


def plateau_rows(results):
    run = results / "runs" / sweep.run_name("paper", "towers", 0)
    if not (run / "history.csv").is_file():
        return f"(no run log at {run}: run the paper_cpu comparison first)"
    with open(run / "history.csv") as f:
        history = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    recipe = config.get_recipe("paper_cpu")
    new = Plateau(recipe.lr_drop_patience, recipe.max_lr_drops, data.NUM_CLASSES)
    for row in history:
        new.update(int(row["step"]), row["val_accuracy"])
    return (f"replayed on {run.relative_to(results.parent)}/history.csv ({len(history)} validations, "
            f"{int(history[-1]['step']):,} steps; validation left 2x chance at step {new.left_chance_step}): "
            f"old rule drops the lr at steps {old_rule(history) or 'none'}, new rule at {new.drop_steps or 'none'}")


def decay_rows():
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(0, 1, (4, 3)), [rng.normal(0, 1, (4, 3)) for _ in range(3)]
    w, v = w0.copy(), np.zeros_like(w0)
    for g in grads:
        v = 0.9 * v - 0.0005 * 0.01 * w - 0.01 * g
        w = w + v
    results = {}
    for name, opt in (("paper", PaperSGD()),
                      ("keras", keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=5e-4))):
        kernel = keras.Variable(w0.astype("float32"))
        opt.build([kernel])
        for g in grads:
            opt.apply([keras.ops.convert_to_tensor(g.astype("float32"))], [kernel])
        results[name] = np.abs(keras.ops.convert_to_numpy(kernel) - w).max()
    shrink = {}
    for name, opt in (("paper", PaperSGD()),
                      ("keras", keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=5e-4))):
        kernel = keras.Variable(np.ones((2, 2), "float32"))
        opt.build([kernel])
        for _ in range(200):
            before = float(keras.ops.convert_to_numpy(kernel)[0, 0])
            opt.apply([keras.ops.zeros((2, 2))], [kernel])
        shrink[name] = 1 - float(keras.ops.convert_to_numpy(kernel)[0, 0]) / before
    return (f"3 steps on a toy weight, max |w - formula|: PaperSGD {results['paper']:.1e}, Keras decoupled "
            f"{results['keras']:.1e}; steady-state shrink per step (lr 0.01, no loss gradient): PaperSGD "
            f"{shrink['paper']:.2e}, Keras {shrink['keras']:.2e} ({shrink['paper'] / shrink['keras']:.1f}x)")


def length_rows():
    n_train = 680
    old_cpu, old_paper = 20 * math.ceil(n_train / 32), 90 * math.ceil(n_train / 128)
    new_cpu, new_paper = config.get_recipe("paper_cpu"), config.get_recipe("paper")
    return (f"before: 20 epochs x {math.ceil(n_train / 32)} steps = {old_cpu} steps (paper_cpu), 90 epochs x "
            f"{math.ceil(n_train / 128)} = {old_paper} steps (paper); after: up to {new_cpu.steps:,} (paper_cpu) and "
            f"{new_paper.steps:,} (paper) steps, validation every {new_paper.eval_every}, stop at the plateau after "
            f"the third drop")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="Flowers 17 folder; default $FLOWERS17_DIR or a download")
    p.add_argument("--results", default="results")
    args = p.parse_args()
    results = Path(args.results)
    lines = ["# The paper recipe's four fixes: before and after", "",
             "Generated by `python experiments/paper_recipe_fixes.py`.", "",
             f"1. PCA lighting: {pca_rows(args.data)}.",
             f"2. Plateau rule: {plateau_rows(results / 'paper_cpu')}.",
             f"3. Weight decay: {decay_rows()}.",
             f"4. Run length: {length_rows()}.", ""]
    out = results / "paper_recipe" / "fixes.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    runlog.atomic_write(out, "\n".join(lines))
    report.sync_readme_for(out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
