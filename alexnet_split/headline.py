"""The README's headline: the project's answer, generated from the run logs of its comparisons.

Do two cross-connected towers train better or worse than the merged 96-filter model and than a
half-width one? Each headline comparison (:data:`HEADLINE`: the 10-seed CPU comparison, and the
accelerator's paper table once it lands) gives one row per mode, the paired differences towers -
merged and towers - half, a figure of every seed, and a verdict sentence computed from those
numbers, never typed. The headline figure is the test top-1 of the best-validation weights
(model selection on the validation split); the last weights' figure stands beside it.

Every other comparison is listed in ``results/all_comparisons.md`` (docs/results.md).
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import numpy as np

from . import stats
from .run_folders import FINISHED, declared_runs
from .runlog import atomic_write, read_json, write_figure
from .sweep import MANIFEST
from .tables import markdown_table

# Comparison folders under results/ that answer the question, in headline order (patterns).
HEADLINE = ("seed_cpu10", "paper_logits_*")
BEST, LAST = "test_top1_best_val", "test_top1"
MODES = ("towers", "merged", "half")
FIGURE = "paired.png"


def headline_folders(results_root) -> list[Path]:
    """The headline comparisons that exist under `results_root`, in :data:`HEADLINE` order."""
    folders = sorted(p.parent for p in Path(results_root).glob(f"*/{MANIFEST}"))
    return [f for pattern in HEADLINE for f in folders if fnmatch.fnmatch(f.name, pattern)]


def mode_summary(runs) -> dict:
    """One mode's finished runs: n, alive, each test figure's per-seed values and their mean and
    95% t interval, and the architecture's parameters, GFLOPs per image and training images/s."""
    finished = [r for r in runs if r["state"] == FINISHED]
    out = {"declared": len(runs), "finished": len(finished), "alive": sum(r["alive"] for r in finished)}
    for key in (BEST, LAST):
        out[key] = {r["seed"]: r["final"][key] for r in finished if r["final"].get(key) is not None}
        out[key + "_stats"] = stats.mean_std_ci(list(out[key].values())) if out[key] else None
    cfg = next((r["config"] for r in runs if r["config"]), None)
    out["parameters"] = cfg["parameters"] if cfg else None
    out["gflops"] = cfg["flops_per_image"] / 1e9 if cfg else None
    out["img_s"] = float(np.mean([r["final"]["train_images_per_second"] for r in finished])) if finished else None
    return out


def summarise(folder) -> dict:
    """A headline comparison: its manifest, each mode's :func:`mode_summary`, and the paired
    differences towers - merged and towers - half of both test figures."""
    folder = Path(folder)
    runs = declared_runs(folder)
    modes = {m: mode_summary([r for r in runs if r["row"] == m]) for m in read_json(folder / MANIFEST)["modes"]}
    diffs = {}
    if "towers" in modes:
        for other in (m for m in modes if m != "towers"):
            diffs[other] = {key: stats.paired(modes["towers"][key], modes[other][key]) for key in (BEST, LAST)}
    first = next(r for r in runs if r["config"])
    return {"folder": folder, "manifest": read_json(folder / MANIFEST), "modes": modes, "diffs": diffs,
            "config": first["config"], "runs": runs}


def verdict(name: str, d: dict, n_declared: int) -> str:
    """One sentence from a paired difference (fractions): its mean, 95% CI and what they allow."""
    if d["n"] < 2:
        return f"{name}: {d['n']} paired seed(s) so far, too few for an interval."
    lo, hi = 100 * (d["mean"] - d["ci95"]), 100 * (d["mean"] + d["ci95"])
    text = f"{name} = {100 * d['mean']:+.1f} points, 95% CI [{lo:+.1f}, {hi:+.1f}] (paired t p = {d['p']:.3f})"
    seeds = f"{d['n']} seeds" + (f" of {n_declared} so far" if d["n"] < n_declared else "")
    if lo > 0:
        return f"{text}: towers better, with {seeds}."
    if hi < 0:
        return f"{text}: towers worse, with {seeds}."
    return f"{text}: no difference detected with {seeds}."


def _ci_cell(s) -> str:
    if s is None:
        return "-"
    mean, _, ci = s
    return f"{100 * mean:.1f}" + ("" if math.isnan(ci) else f" [{100 * (mean - ci):.1f}, {100 * (mean + ci):.1f}]")


def _diff_cells(d) -> list[str]:
    if not d["n"]:
        return ["-"] * 4
    lo, hi = 100 * (d["mean"] - d["ci95"]), 100 * (d["mean"] + d["ci95"])
    ci = "" if math.isnan(d["ci95"]) else f" [{lo:+.1f}, {hi:+.1f}]"
    p = ("n/a" if math.isnan(d["p"]) else f"{d['p']:.3f}", "n/a" if math.isnan(d["p_rank"]) else f"{d['p_rank']:.3f}")
    return [f"{100 * d['mean']:+.1f}{ci}", *p]


def _protocol(s) -> str:
    cfg, recipe = s["config"], s["config"]["recipe"]
    length = f"{recipe['epochs']} epochs" if recipe.get("epochs") else f"up to {recipe['steps']:,} steps"
    return (f"{cfg['layout']} layout, recipe `{recipe['name']}` ({length}, {recipe['optimizer']} lr "
            f"{recipe['learning_rate']}, batch {recipe['batch_size']}, {recipe['precision']}, augmentation "
            f"{'on' if recipe['augment'] else 'off'}, {'10-crop' if recipe['ten_crop'] else 'centre-crop'} test), "
            f"split {cfg['split_sizes']['train']}/{cfg['split_sizes']['val']}/{cfg['split_sizes']['test']} "
            f"stratified by seed; {cfg['machine']}, backend {cfg['backend']}")


def section(s, results_root) -> list[str]:
    """A headline comparison's lines: verdicts, the mode table, the differences, the figure."""
    folder, modes = s["folder"], s["modes"]
    rel = folder.relative_to(Path(results_root)).as_posix()
    n_declared = len(s["manifest"]["seeds"])
    done = sum(m["finished"] for m in modes.values())
    total = sum(m["declared"] for m in modes.values())
    lines = [f"**{rel}: {' vs '.join(modes)}, {n_declared} paired seeds**", ""]
    if done < total:
        lines += [f"**{done} of {total} runs finished**; the sweep continues (rerun its command: finished runs are "
                  "skipped).", ""]
    lines += [f"- {verdict(f'towers - {m} (best-val weights)', d[BEST], n_declared)}" for m, d in s["diffs"].items()]
    # the figure right under the verdict: the first screen of the README shows both
    lines += ["", f"![Each seed's test top-1 per mode]({rel}/{FIGURE})", "",
              "*Each seed's test top-1 (best-val weights left, last weights right), the three modes of one seed "
              "joined by a line; means with their 95% t intervals in black.*", ""]
    rows = [[m, f"{v['finished']}/{v['declared']}", f"{v['alive']}/{v['declared']}", _ci_cell(v[BEST + "_stats"]),
             _ci_cell(v[LAST + "_stats"]), f"{v['parameters']:,}" if v["parameters"] else "-",
             f"{v['gflops']:.2f}" if v["gflops"] else "-", f"{v['img_s']:.1f}" if v["img_s"] else "-"]
            for m, v in modes.items()]
    lines += markdown_table(["mode", "n", "alive", "test top-1 at best val", "test top-1, last weights", "params",
                             "GFLOPs/img", "train img/s"], rows, "lrrrrrrr")
    lines += ["", "Paired differences over the seeds where both runs finished (same seed: same split and same "
              "batches), in points:", ""]
    rows = [[f"towers - {m}", str(d[BEST]["n"]), *_diff_cells(d[BEST]), *_diff_cells(d[LAST])]
            for m, d in s["diffs"].items()]
    lines += markdown_table(["difference", "seeds", "at best val [95% CI]", "p (paired t)", "p (signed-rank)",
                             "last weights [95% CI]", "p (paired t)", "p (signed-rank)"], rows, "lrrrrrrr")
    lines += ["", f"Protocol: {_protocol(s)}. Test top-1 in %, mean [95% t interval]; at best val: the weights "
              "of the epoch with the best validation top-1 (chosen on the validation split only); last: the "
              f"final weights. Full table: [{rel}/table.md]({rel}/table.md); regenerate both: "
              f"`alexnet-split report results/{rel}`.", ""]
    return lines


def paired_figure(s):
    """Each seed's test top-1 for the modes, joined by a line, with the means and 95% CIs."""
    from matplotlib.figure import Figure

    modes = [m for m in MODES if m in s["modes"]]
    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, (BEST, LAST), ("at best validation", "last weights"), strict=True):
        per_seed = {m: s["modes"][m][key] for m in modes}
        for seed in sorted(set().union(*per_seed.values())):
            xs = [i for i, m in enumerate(modes) if seed in per_seed[m]]
            ax.plot(xs, [100 * per_seed[modes[i]][seed] for i in xs], "o-", color="grey", alpha=0.45, markersize=4)
        for i, m in enumerate(modes):
            st = s["modes"][m][key + "_stats"]
            if st:
                mean, _, ci = st
                ax.errorbar(i + 0.12, 100 * mean, yerr=0 if math.isnan(ci) else 100 * ci, fmt="s", color="black",
                            capsize=5, markersize=6)
        ax.set(xticks=range(len(modes)), xticklabels=modes, title=f"test top-1, {title}", xlim=(-0.4, len(modes) - 0.5))
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("test top-1 (%)")
    n = len(set().union(*(s["modes"][m][BEST] for m in modes)))
    fig.suptitle(f"{s['folder'].name}: {n} seeds (grey: one seed's three modes; black: mean and 95% CI)")
    fig.tight_layout()
    return fig


def write_figure_for(folder) -> Path | None:
    """``paired.png`` of a comparison whose runs recorded the best-validation figure (None otherwise)."""
    s = summarise(folder)
    if not any(m[BEST] for m in s["modes"].values()):
        return None
    path = Path(folder) / FIGURE
    write_figure(paired_figure(s), path, dpi=100)
    return path


def write_headline(results_root) -> str:
    """``results/headline.md``: the answer, from each headline comparison that exists."""
    results_root = Path(results_root)
    lines = ["# The answer: towers vs merged vs half", ""]
    found = [summarise(f) for f in headline_folders(results_root)]
    found = [s for s in found if any(m["finished"] for m in s["modes"].values())]
    if not found:
        lines += ["No headline comparison has a finished run yet (`python experiments/seed_cpu10.py`).", ""]
    for s in found:
        lines += section(s, results_root)
    lines += ["Every other experiment, with its protocol: [all_comparisons.md](all_comparisons.md) "
              "(docs/results.md).", ""]
    text = "\n".join(lines)
    atomic_write(results_root / "headline.md", text)
    return text
