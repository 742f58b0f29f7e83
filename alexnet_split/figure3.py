"""The paper's Figure 3 (Section 6.1) from our own runs: do the two towers specialise in colour?

The paper: "the kernels on GPU 1 are largely color-agnostic, while the kernels on GPU 2 are
largely color-specific. This kind of specialization occurs during every run and is independent
of any particular random weight initialization (modulo a renumbering of the GPUs)."

Each finished run keeps its conv1 kernels in ``conv1.npz`` (:func:`alexnet_split.train.save_conv1`).
:func:`colour_specificity` scores each kernel, :func:`analyse` tests the towers' scores against
random relabellings, :func:`figure3` writes the tables, grids and verdict. Findings: docs/findings.md.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np

from . import stats
from .runlog import atomic_write, read_json, write_figure
from .tables import csv_text, markdown_table

AGNOSTIC = 1 / 3  # a kernel with under half as much colour energy as grey energy counts as colour-agnostic
N_PERMUTATIONS = 10_000
ALPHA = 0.05


def colour_specificity(kernels, smooth=False) -> np.ndarray:
    """Colour-specificity scores of kernels shaped (kh, kw, 3, n), RGB. For one kernel ``W``:

        W' = W - mean(W)                     (its mean over all kh * kw * 3 weights removed)
        L  = per position, the mean of W' over the 3 channels, repeated on each channel
                                             (W' projected on the grey direction (1, 1, 1) / sqrt 3)
        score = ||W' - L||^2 / ||W'||^2      in [0, 1]

    0 is a grey kernel (the same pattern on R, G and B), 1 a kernel with no luminance component
    (pure colour opponency); independent noise, such as the paper's N(0, 0.01) initialisation,
    scores 2/3 in expectation. ``smooth``: score the kernels after a [1, 2, 1] / 4 blur along both
    spatial axes, so pixel-level noise (independent per channel, hence "colour") does not count:
    the control for noisy kernels."""
    k = np.asarray(kernels, dtype=np.float64)
    if k.ndim != 4 or k.shape[2] != 3:
        raise ValueError(f"conv1 kernels must be (kh, kw, 3, n), got shape {k.shape}")
    if smooth:
        k = _blur(k)
    w = k.reshape(-1, 3, k.shape[-1])
    w = w - w.mean(axis=(0, 1))
    chroma = w - w.mean(axis=1, keepdims=True)
    energy = (w ** 2).sum(axis=(0, 1))
    return (chroma ** 2).sum(axis=(0, 1)) / np.where(energy > 0, energy, 1.0)


def _blur(k):
    for axis in (0, 1):
        pad = [(1, 1) if a == axis else (0, 0) for a in range(k.ndim)]
        p = np.pad(k, pad, mode="edge")
        n = k.shape[axis]
        k = (0.25 * p.take(range(0, n), axis) + 0.5 * p.take(range(1, n + 1), axis)
             + 0.25 * p.take(range(2, n + 2), axis))
    return k


def untrained(n=96, seed=0) -> np.ndarray:
    """n conv1 kernels as the paper initialises them, N(0, 0.01): the reference that an untrained
    or dead conv1 stays at."""
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(11, 11, 3, n))


def read_conv1_runs(*results_dirs) -> tuple[list[dict], list[str]]:
    """Finished runs under the `results_dirs` (any depth) that kept conv1.npz, and why others
    were left out. With several folders a run's name starts with its folder's."""
    runs, skipped = [], []
    for results_dir in map(Path, results_dirs):
        found, left = _read_conv1_runs(results_dir, prefix=f"{results_dir.name}-" if len(results_dirs) > 1 else "")
        runs += found
        skipped += left
    if not runs:
        raise ValueError(f"{', '.join(map(str, results_dirs))}: no finished run with conv1.npz under it"
                         + (f" ({len(skipped)} left out: {'; '.join(skipped)})" if skipped else ""))
    return runs, skipped


def _read_conv1_runs(results_dir: Path, prefix: str):
    runs, skipped = [], []
    for f in sorted(results_dir.rglob("conv1.npz")):
        run_dir = f.parent
        if not (run_dir / "final.json").is_file():
            skipped.append(f"{run_dir}: unfinished (no final.json)")
            continue
        cfg, final = read_json(run_dir / "config.json"), read_json(run_dir / "final.json")
        if "steps_to_leave_chance" in final and final["steps_to_leave_chance"] is None:
            skipped.append(f"{run_dir}: never left chance, so its conv1 is as untrained as its accuracy")
            continue
        with np.load(f) as z:
            towers = [z[k].astype(np.float32) for k in sorted(z.files)]
        rel = run_dir.relative_to(results_dir).parts
        name = prefix + ("-".join(p for p in rel if p != "runs") or run_dir.name)  # RESULTS_DIR may be a run
        runs.append({"name": name, "dir": run_dir, "mode": cfg["mode"], "seed": cfg["seed"],
                     "layout": cfg["layout"], "steps": int(final["steps"]), "test_top1": final.get("test_top1"),
                     "recipe": cfg.get("recipe", {}).get("name"), "machine": cfg.get("machine"), "towers": towers})
    return runs, skipped


def analyse(runs, n_permutations=N_PERMUTATIONS, seed=0) -> dict:
    """Per-run scores and tests, the merged-run control and the count over runs.

    Per towers run, d = mean score of tower 1 - mean score of tower 0, against random 48/48
    relabellings of the same 96 kernels (permutation p, two-sided: the paper lets the towers swap),
    and the two-sided Wilcoxon rank-sum test of tower 0's scores against tower 1's (two samples,
    not pairs). Each merged run's random 48/48 splits are the chance control of a net without
    towers. Over runs, the binomial tail: how often as many runs would split at p < ALPHA if
    towers did not matter."""
    rng = np.random.default_rng(seed)
    rows, controls = [], []
    for r in runs:
        row = _scored(r)
        if r["mode"] == "towers" and len(row["scores"]) == 2:
            row.update(_tower_test(row, n_permutations, rng))
        elif r["mode"] == "merged":
            controls.append(_merged_control(row, n_permutations, rng))
        rows.append(row)
    towers = [row for row in rows if "p" in row]
    if controls:
        _test_against_controls(towers, controls)
    n_split = sum(row["p"] < ALPHA for row in towers)
    # how surprising n_split of len(towers) would be if no run's towers differed (each p < ALPHA w.p. ALPHA)
    tail = stats.binomial_tail(n_split, len(towers), ALPHA) if towers else None
    return {"rows": rows, "controls": controls, "towers": towers, "n_split": n_split, "binomial_p": tail,
            "untrained": _untrained_reference()}


def _scored(r: dict) -> dict:
    """One run's row: every kernel's score per tower, and each tower's mean, median, blurred median
    and count of colour-agnostic kernels."""
    scores = [colour_specificity(t) for t in r["towers"]]
    return {"run": r["name"], "mode": r["mode"], "seed": r["seed"], "steps": r["steps"],
            "test_top1": r["test_top1"], "recipe": r.get("recipe"), "machine": r.get("machine"), "scores": scores,
            "mean": [float(s.mean()) for s in scores], "median": [float(np.median(s)) for s in scores],
            "median_smooth": [float(np.median(colour_specificity(t, smooth=True))) for t in r["towers"]],
            "agnostic": [int((s < AGNOSTIC).sum()) for s in scores]}


def _tower_test(row: dict, n_permutations: int, rng) -> dict:
    """A towers run: d = t1 - t0 of the mean scores against random relabellings of its kernels
    (permutation p), and the rank-sum p of the two towers' scores."""
    scores = row["scores"]
    d = row["mean"][1] - row["mean"][0]
    null = stats.split_differences(np.concatenate(scores), scores[0].size, n_permutations, rng)
    return {"d": d, "p": stats.permutation_p(null, d), "null": null, "colour_tower": int(d > 0),
            "p_rank": stats.rank_sum_p(scores[0], scores[1])}


def _merged_control(row: dict, n_permutations: int, rng) -> dict:
    """A merged run: random half/half splits of its kernels, the null of a net without towers."""
    s = row["scores"][0]
    null = stats.split_differences(s, s.size // 2, n_permutations, rng)
    return {"run": row["run"], "seed": row["seed"], "steps": row["steps"], "null": null,
            "q95": float(np.quantile(null, 0.95))}


def _test_against_controls(towers, controls):
    """Each towers run's |d| against the pooled random splits of the merged runs' kernels (`p_merged`)."""
    pooled = np.concatenate([c["null"] for c in controls])
    for row in towers:
        row["p_merged"] = stats.permutation_p(pooled, row["d"])


def _untrained_reference() -> dict:
    init = untrained()
    init_scores = colour_specificity(init)
    return {"median": float(np.median(init_scores)),
            "median_smooth": float(np.median(colour_specificity(init, smooth=True))),
            "range": [float(q) for q in np.quantile(init_scores, [0.1, 0.9])]}


def scope(towers) -> str:
    """What the verdict rests on, read from the runs: how many towers runs, how long, which recipe,
    on what hardware (config.json's machine, its accelerator part when it names one)."""
    steps = sorted({row["steps"] for row in towers})
    facts = [f"{steps[0]:,}" + (f"-{steps[-1]:,}" if len(steps) > 1 else "") + " steps"]
    facts += [f"`{r}` recipe" for r in sorted({row["recipe"] for row in towers if row.get("recipe")})]
    facts.append("Flowers 17")
    facts += sorted({re.sub(r" \((gpu|tpu)\)$", "", row["machine"].split("; ")[-1])
                     for row in towers if row.get("machine")})
    return f"{len(towers)} towers run{'s' if len(towers) > 1 else ''} studied ({', '.join(facts)})"


def verdict(a: dict) -> str:
    """The study's conclusion in words: how many runs split, then whether the paper's claim holds."""
    towers = a["towers"]
    if not towers:
        return "No towers run with conv1 kernels was found: nothing to test."
    return (_split_sentence(a) + " " + _claim(towers) + " Other data (the paper's ImageNet), other lengths or other "
            "hardware are not tested here.")


def _split_sentence(a: dict) -> str:
    towers = a["towers"]
    n_rank = sum(row["p_rank"] < ALPHA for row in towers)
    return (f"The towers' mean scores differ beyond random 48/48 relabelling (p < {ALPHA}) in {a['n_split']} of "
            f"{len(towers)} runs (the chance of as many or more if towers did not matter: {a['binomial_p']:.3f}; "
            f"the rank-sum test, which does not use the means, finds {n_rank} of {len(towers)}); "
            "the tower with more colour is " + ", ".join(f"t{row['colour_tower']}" for row in towers) + ".")


def _claim(towers) -> str:
    """Section 6.1's claim (one colour-agnostic tower beside a colour-specific one) against the runs."""
    where = scope(towers)
    agnostic_towers = sum(m < AGNOSTIC for row in towers for m in row["median"])
    # the paper's picture in one run: the towers differ, and exactly one of them is colour-agnostic
    paper_like = sum(row["p"] < ALPHA and sum(m < AGNOSTIC for m in row["median"]) == 1 for row in towers)
    if agnostic_towers == 0:
        return _no_agnostic_tower(where, towers)
    if paper_like == len(towers):
        return (f"**In the {where}, the paper's claim holds:** in every run one tower is colour-agnostic and the "
                "other is not.")
    return (f"**In the {where}, the paper's claim holds only in part:** {paper_like} of {len(towers)} runs show a "
            "colour-agnostic tower beside a colour-specific one.")


def _no_agnostic_tower(where: str, towers) -> str:
    medians = [m for row in towers for m in row["median"]]
    smooth = [m for row in towers for m in row["median_smooth"]]
    biggest = max(abs(row["d"]) for row in towers)
    return (f"**In the {where}, the paper's claim does not hold:** no tower is colour-agnostic. Every tower's "
            f"median score is {min(medians):.2f}-{max(medians):.2f} (noise scores 2/3; a colour-agnostic tower "
            f"would sit near 0), and the largest difference of tower means is {biggest:.2f}: a shift within "
            "two colour-specific populations, not the paper's grey tower beside a colour one. Not an "
            "artefact of pixel noise in the kernels: blurred before scoring, the towers' medians are "
            f"{min(smooth):.2f}-{max(smooth):.2f}.")


def _table(a: dict, skipped) -> str:
    header = ["run", "mode", "steps", "test top-1", "mean score t0 / t1", "median t0 / t1", "median blurred t0 / t1",
              "agnostic kernels t0 / t1", "d = t1 - t0", "permutation p", "rank-sum p"]
    cells = []
    for row in a["rows"]:
        pair = [f"{m:.3f}" for m in row["mean"]]
        med = [f"{m:.3f}" for m in row["median"]]
        blurred = [f"{m:.3f}" for m in row["median_smooth"]]
        ag = [f"{n}/{s.size}" for n, s in zip(row["agnostic"], row["scores"], strict=True)]
        top1 = f"{100 * row['test_top1']:.1f}%" if row["test_top1"] is not None else "-"
        d = f"{row['d']:+.3f}" if "d" in row else "-"
        p = f"{row['p']:.4f}" if "p" in row else "-"
        p_rank = f"{row['p_rank']:.4f}" if "p_rank" in row else "-"
        cells.append([row["run"], row["mode"], f"{row['steps']:,}", top1, " / ".join(pair), " / ".join(med),
                      " / ".join(blurred), " / ".join(ag), d, p, p_rank])
    u = a["untrained"]
    cells.append(["untrained: N(0, 0.01), 96 kernels", "-", "0", "-", "-",
                  f"{u['median']:.3f} (10-90%: {u['range'][0]:.2f}-{u['range'][1]:.2f})", f"{u['median_smooth']:.3f}",
                  "-", "-", "-", "-"])
    lines = markdown_table(header, cells, "llrrllllrrr")
    if a["controls"]:
        lines += ["", "Control, random 48/48 splits of a merged run's 96 kernels (|difference of means|):", ""]
        lines += [f"- {c['run']} ({c['steps']:,} steps): 95th percentile {c['q95']:.3f}" for c in a["controls"]]
        lines += ["", "Each towers run's |d| against those splits (pooled): "
                  + ", ".join(f"{row['run']} |d| = {abs(row['d']):.3f}, p = {row['p_merged']:.4f}"
                              for row in a["towers"]) + "."]
    else:
        lines += ["", "Control, random 48/48 splits of a merged run's kernels: **no finished merged run with "
                  "conv1.npz is in this folder**, so the only chance control is each run's own permutation null "
                  "(random 48/48 relabellings of its 96 kernels), in the p column and in `scores.png`."]
    if skipped:
        lines += ["", "Left out: " + "; ".join(skipped) + "."]
    return "\n".join(lines)


def _csv(a: dict) -> str:
    fields = ["run", "mode", "seed", "steps", "test_top1", "tower", "kernel", "score"]
    return csv_text(fields, [dict(zip(fields, [row["run"], row["mode"], row["seed"], row["steps"], row["test_top1"],
                                               t, i, f"{s:.5f}"], strict=True))
                             for row in a["rows"] for t, scores in enumerate(row["scores"])
                             for i, s in enumerate(scores)])


def draw_grid(run: dict, path, scores=None):
    """The run's conv1 kernels as the paper shows them: 16 per row, tower 0 above tower 1; each
    kernel scaled to its own range (all three channels together, so colour balance is kept)."""
    from matplotlib.figure import Figure

    blocks = run["towers"]
    canvas = _kernel_canvas(blocks)
    fig = Figure(figsize=(8, 8 * canvas.shape[0] / canvas.shape[1] + 0.6))
    ax = fig.subplots()
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    label = ""
    if scores:
        label = (", ".join(f"tower {t}: mean score {s.mean():.2f}" for t, s in enumerate(scores)) if len(scores) > 1
                 else f"one block of {scores[0].size}: mean score {scores[0].mean():.2f}")
    ax.set_title(f"{run['name']}: conv1 after {run['steps']:,} steps"
                 + (" (tower 0 top, tower 1 bottom)" if len(blocks) > 1 else "") + (f"\n{label}" if label else ""),
                 fontsize=9)
    write_figure(fig, path, dpi=110, bbox_inches="tight")


def _kernel_canvas(blocks, per_row=16) -> np.ndarray:
    """One RGB image of every block's kernels, `per_row` to a row, a gap between blocks, white between kernels."""
    kh, kw = blocks[0].shape[:2]
    rows = [math.ceil(b.shape[-1] / per_row) for b in blocks]
    gap = 1 + kh // 2
    canvas = np.ones(((sum(rows) * (kh + 1)) + gap * (len(blocks) - 1), per_row * (kw + 1), 3))
    y0 = 0
    for b in blocks:
        for i in range(b.shape[-1]):
            k = b[..., i]
            k = (k - k.min()) / max(float(k.max() - k.min()), 1e-12)
            r, c = divmod(i, per_row)
            canvas[y0 + r * (kh + 1): y0 + r * (kh + 1) + kh, c * (kw + 1): c * (kw + 1) + kw] = k
        y0 += math.ceil(b.shape[-1] / per_row) * (kh + 1) + gap
    return canvas


def draw_scores(a: dict, path):
    """Left: every kernel's score by run and tower. Right: each towers run's d against its
    permutation null (and the merged runs' split null, if any)."""
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    fig = Figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ticks = []
    for i, row in enumerate(a["rows"]):
        for t, s in enumerate(row["scores"]):
            x = 2.5 * i + t
            left.scatter(x + rng.uniform(-0.25, 0.25, s.size), s, s=8, alpha=0.6, color=f"C{t}")
            left.hlines(np.median(s), x - 0.35, x + 0.35, color="black")
            ticks.append((x, f"t{t}" if len(row["scores"]) > 1 else "all"))
        left.text(2.5 * i + (len(row["scores"]) - 1) / 2, -0.1, "\n".join(row["run"].rsplit("-", 1)), ha="center",
                  va="top", fontsize=6.5, transform=left.get_xaxis_transform())
    left.axhline(2 / 3, color="grey", ls=":", lw=1)
    left.axhline(AGNOSTIC, color="red", ls="--", lw=1)
    left.text(left.get_xlim()[1], 2 / 3, " noise (2/3)", va="center", fontsize=7, color="grey")
    left.text(left.get_xlim()[1], AGNOSTIC, " agnostic below", va="center", fontsize=7, color="red")
    left.set_xticks([x for x, _ in ticks], [t for _, t in ticks], fontsize=8)
    left.set_ylabel("colour-specificity score")
    left.set_ylim(0, 1)
    left.set_title("conv1 kernels by run and tower (bar = median)", fontsize=10)
    for i, row in enumerate(a["towers"]):
        right.hist(row["null"], bins=60, histtype="step", color=f"C{i + 2}", density=True,
                   label=f"{row['run']}: random splits")
        right.axvline(abs(row["d"]), color=f"C{i + 2}", lw=2)
    for c in a["controls"]:
        right.hist(c["null"], bins=60, histtype="stepfilled", alpha=0.25, color="grey", density=True,
                   label=f"{c['run']} (merged): random splits")
    right.set_xlabel("|mean score of one half - the other|   (vertical lines: the real tower split)")
    right.set_title("real tower split against random 48/48 splits", fontsize=10)
    right.legend(fontsize=7)
    fig.tight_layout()
    write_figure(fig, path, dpi=110, bbox_inches="tight")


def figure3(results_dirs, out="results/figure3", n_permutations=N_PERMUTATIONS, log=print) -> str:
    """Scores, tests, grids and the verdict for every finished run under `results_dirs` (a folder
    or a list of them), written to `out` (figure3.md, scores.csv, scores.png, grids/<run>.png);
    returns figure3.md."""
    results_dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    runs, skipped = read_conv1_runs(*results_dirs)
    folders = " ".join(Path(d).as_posix() for d in results_dirs)
    log(f"{len(runs)} finished runs with conv1 kernels under {folders}"
        + (f"; {len(skipped)} unfinished left out" if skipped else ""))
    a = analyse(runs, n_permutations)
    out = Path(out)
    # the grids folder is replaced as a whole, so no grid of a run that is no longer in the study stays
    staging = out / ".grids.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    for run, row in zip(runs, a["rows"], strict=True):
        draw_grid(run, staging / f"{run['name']}.png", row["scores"])
    shutil.rmtree(out / "grids", ignore_errors=True)
    staging.rename(out / "grids")
    draw_scores(a, out / "scores.png")
    atomic_write(out / "scores.csv", _csv(a))
    md = "\n".join([
        f"# Figure 3: colour specialisation of conv1, `{folders}`", "",
        f"Generated by `alexnet-split figure3 {folders} --out {out.as_posix()}` "
        f"({n_permutations:,} random relabellings per run). Score: share of a kernel's energy, after removing "
        "its mean, outside the grey direction (0 grey, 1 pure colour, 2/3 for noise; formula in "
        f"`alexnet_split/figure3.py`). Agnostic kernel: score < {AGNOSTIC:.3f}. Permutation p: the towers' "
        "difference of means against random 48/48 relabellings; rank-sum p: two-sided Wilcoxon rank-sum "
        "(Mann-Whitney U) of tower 0's scores against tower 1's.", "",
        _table(a, skipped), "", verdict(a), ""])
    atomic_write(out / "figure3.md", md)
    return md
