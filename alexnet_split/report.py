"""Towers vs merged vs half: run a comparison, and rebuild its table and plot from run logs.

``results/<name>/compare.json`` says what the comparison is (recipe, layout, modes, seeds,
reference rows); ``results/<name>/runs/<layout>_<mode>_s<seed>/`` hold the run logs. The
report reads only those files, so ``alexnet-split report results/<name>`` regenerates
``table.md``, ``table.csv`` and ``curves.png`` byte for byte: no number is typed by hand.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import tarfile
from pathlib import Path

import numpy as np

from .data import NUM_CLASSES
from .runlog import atomic_write, read_json, replacing, write_figure, write_json
from .schedule import CHANCE_FACTOR

MANIFEST = "compare.json"


def run_name(layout, mode, seed):
    return f"{layout}_{mode}_s{seed}"


def compare(results_dir, recipe, layout="paper", modes=("towers", "merged", "half"), seeds=(0, 1, 2),
            references=(), data_root=None, devices=None, overrides=None, deterministic=False,
            checkpoint_seconds=0.0, engine="auto", tensorboard=None) -> str:
    """Run (or resume) every run of the comparison, then write and return the report.

    Seed by seed, every mode of a seed before the next seed: a comparison cut short (a lent
    accelerator's time runs out) leaves complete seeds, which the report can pair. Finished runs
    are skipped, so calling it again fills the table. `tensorboard`: a folder with one subfolder
    of TensorBoard curves per run."""

    import keras

    from . import train

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes: one model per run
    results_dir = Path(results_dir)
    write_manifest(results_dir, recipe, layout, modes, seeds, references, overrides)
    todo = [(m, s) for s in seeds for m in modes]
    for i, (mode, seed) in enumerate(todo, 1):
        out = results_dir / "runs" / run_name(layout, mode, seed)
        state = "done" if (out / "final.json").is_file() else "resume" if (out / "state.json").is_file() else "new"
        print(f"[{i}/{len(todo)}] {layout}/{mode} seed {seed}: {state} -> {out}", flush=True)
        keras.backend.clear_session()
        mode_devices = devices if mode == "towers" else (devices[:1] if devices else None)
        train.train(out, layout, mode, recipe, seed=seed, data_root=data_root, devices=mode_devices,
                    overrides=overrides, deterministic=deterministic, checkpoint_seconds=checkpoint_seconds,
                    engine=engine, tensorboard=Path(tensorboard) / out.name if tensorboard else None)
    return report(results_dir)


def write_manifest(results_dir, recipe, layout, modes, seeds, references=(), overrides=None):
    """Declare a comparison's runs (``compare.json``); refuses a folder that holds another one."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"recipe": recipe, "layout": layout, "modes": list(modes), "seeds": [int(s) for s in seeds],
                "references": [dict(r) for r in references], "overrides": dict(overrides or {})}
    if (results_dir / MANIFEST).is_file() and read_json(results_dir / MANIFEST) != manifest:
        raise ValueError(f"{results_dir / MANIFEST} describes another comparison; use another results folder")
    write_json(results_dir / MANIFEST, manifest)
    return manifest


def pack_logs(src, dest):
    """Tar the results folder `src` into `dest` without checkpoints (what a lent machine sends
    back: the run logs, conv1.npz, tables), atomically."""

    with replacing(dest) as tmp, tarfile.open(tmp, "w") as tar:
        tar.add(src, arcname=".", filter=lambda ti: None if "/ckpt" in ti.name else ti)


# --------------------------------------------------------------------------- statistics


def mean_std_ci(values) -> tuple[float, float, float]:
    """Mean, sample std, and the half-width of the 95% t confidence interval."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan"), float("nan")
    std = float(v.std(ddof=1))
    return float(v.mean()), std, float(stats.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v)))


def paired(a: dict, b: dict) -> dict:
    """a - b over the seeds both have: mean difference, 95% CI half-width, paired t-test p."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds])
    mean, std, ci = mean_std_ci(d)
    if len(d) < 2:
        p = float("nan")
    elif std == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    return {"n": len(seeds), "mean": mean, "std": std, "ci95": ci, "p": p, "seeds": seeds}


def paired_power(n: int, std: float, delta: float, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test on n pairs whose differences have std `std`, to detect a
    true mean difference `delta` (noncentral t)."""
    from scipy import stats

    if n < 2 or std <= 0:
        return float("nan")
    df, nc = n - 1, delta / (std / math.sqrt(n))
    t = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(t, df, nc) + stats.nct.cdf(-t, df, nc))


def pairs_for_power(std: float, delta: float, power: float = 0.8, alpha: float = 0.05, most: int = 10_000) -> int:
    """The fewest pairs at which :func:`paired_power` reaches `power`."""
    for n in range(2, most + 1):
        if paired_power(n, std, delta, alpha) >= power:
            return n
    raise ValueError(f"more than {most} pairs for power {power} (std {std}, delta {delta})")


# --------------------------------------------------------------------------- reading runs


def load_runs(results_dir) -> list[dict]:
    """Every finished run of the comparison and of its reference rows."""
    results_dir = Path(results_dir)
    manifest = read_json(results_dir / MANIFEST)
    runs = []
    for mode in manifest["modes"]:
        for seed in manifest["seeds"]:
            runs.append(_read_run(results_dir / "runs" / run_name(manifest["layout"], mode, seed), mode))
    for ref in manifest["references"]:
        ref_dir = (results_dir / ref["results"]).resolve()
        ref_manifest = read_json(ref_dir / MANIFEST)
        for seed in ref_manifest["seeds"]:
            runs.append(_read_run(ref_dir / "runs" / run_name(ref["layout"], ref["mode"], seed), ref["label"]))
    return [r for r in runs if r is not None]


def _read_run(run_dir: Path, row: str):
    if not (run_dir / "final.json").is_file():
        return None
    with open(run_dir / "history.csv") as f:
        history = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    return {"row": row, "dir": run_dir, "config": read_json(run_dir / "config.json"),
            "final": read_json(run_dir / "final.json"), "history": history}


# --------------------------------------------------------------------------- README blocks

_BEGIN, _END = "<!-- begin {} -->", "<!-- end {} -->"


def sync_readme(readme, results_root=None) -> bool:
    """Replace each ``<!-- begin PATH -->`` ... ``<!-- end PATH -->`` block of the README with the
    current content of PATH (relative to the README; its ``# `` title becomes ``### ``). Used for
    the comparison tables and the benchmark. Returns whether anything changed."""

    readme = Path(readme)
    text = old = readme.read_text()
    for key in re.findall(r"<!-- begin (\S+) -->", text):
        source = readme.parent / key
        begin, end = _BEGIN.format(key), _END.format(key)
        if not source.is_file() or end not in text:
            continue
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        body = source.read_text()
        body = f"```\n{body.strip()}\n```" if source.suffix == ".txt" else readme_body(body)
        text = f"{head}{begin}\n{body}\n{end}{tail}"
    if text != old:
        atomic_write(readme, text)
    return text != old


def pipeline_against_runs(speed: float, results_dir) -> list[str]:
    """The input pipeline's images/s against each row's training images/s in a comparison's
    table.csv: the pipeline should be 5x faster to stay out of the way."""

    with open(Path(results_dir) / "table.csv") as f:
        rows = list(csv.DictReader(f))
    lines = []
    for row in rows:
        trained = float(row["train_images_per_second"])
        lines.append(f"  vs {row['mode']:<16} training at {trained:7.1f} images/s: {speed / trained:6.1f}x "
                     f"{'(the pipeline is not the bottleneck)' if speed >= 5 * trained else 'WARNING: under 5x'}")
    return lines


def sync_readme_for(written) -> Path | None:
    """Rewrite the README blocks that show `written` (a file or folder under a ``results/``
    folder whose parent holds README.md); returns that README if anything changed."""
    for folder in Path(written).resolve().parents:
        if folder.name == "results" and (folder.parent / "README.md").is_file():
            readme = folder.parent / "README.md"
            return readme if sync_readme(readme) else None
    return None


def readme_body(markdown: str) -> str:
    return "### " + markdown.replace("\n# ", "\n### ").lstrip("# ").rstrip("\n")


# --------------------------------------------------------------------------- the report


def report(results_dir) -> str:
    results_dir = Path(results_dir)
    manifest = read_json(results_dir / MANIFEST)
    runs = load_runs(results_dir)
    if not any(r["row"] in manifest["modes"] for r in runs):
        raise ValueError(f"{results_dir}: no finished runs yet")
    rows = _rows(runs)
    atomic_write(results_dir / "table.csv", _csv(rows))
    md = _markdown(manifest, runs, rows)
    atomic_write(results_dir / "table.md", md)
    _plot(runs, results_dir / "curves.png", manifest, by_steps=_by_steps(rows))
    return md


def _rows(runs):
    order = []
    for r in runs:
        if r["row"] not in order:
            order.append(r["row"])
    rows = []
    for name in order:
        group = [r for r in runs if r["row"] == name]
        f = [r["final"] for r in group]
        cfg = group[0]["config"]
        row = {"mode": name, "layout": cfg["layout"], "recipe": cfg["recipe"]["name"], "n_seeds": len(group),
               "seeds": " ".join(str(r["config"]["seed"]) for r in group),
               "parameters": cfg["parameters"], "gflops_per_image": cfg["flops_per_image"] / 1e9}
        for key in ("test_top1", "test_top5", "best_val_accuracy"):
            row[key + "_mean"], row[key + "_std"], row[key + "_ci95"] = mean_std_ci([x[key] for x in f])
        row["best_epoch_mean"] = float(np.mean([x["best_epoch"] for x in f]))
        if all("steps" in x for x in f):  # runs measured in steps (the fixed paper recipe)
            left = [x["steps_to_leave_chance"] for x in f if x["steps_to_leave_chance"] is not None]
            row["runs_left_chance"] = len(left)
            row["steps_to_leave_chance_median"] = float(np.median(left)) if left else float("nan")
            row["steps_mean"] = float(np.mean([x["steps"] for x in f]))
            row["best_step_mean"] = float(np.mean([x["best_step"] for x in f]))
            row["lr_drops_mean"] = float(np.mean([len(x["lr_drop_steps"]) for x in f]))
        row["train_images_per_second"] = float(np.mean([x["train_images_per_second"] for x in f]))
        row["train_minutes_per_run"] = float(np.mean([x["train_seconds"] for x in f])) / 60
        row["per_seed_test_top1"] = {r["config"]["seed"]: r["final"]["test_top1"] for r in group}
        row["per_seed_test_top5"] = {r["config"]["seed"]: r["final"]["test_top5"] for r in group}
        rows.append(row)
    return rows


_CSV_FIELDS = ["mode", "layout", "recipe", "n_seeds", "seeds", "parameters", "gflops_per_image",
               "test_top1_mean", "test_top1_std", "test_top1_ci95", "test_top5_mean", "test_top5_std",
               "test_top5_ci95", "best_val_accuracy_mean", "best_val_accuracy_std", "best_val_accuracy_ci95",
               "best_epoch_mean", "train_images_per_second", "train_minutes_per_run"]


_STEP_FIELDS = ["steps_mean", "best_step_mean", "runs_left_chance", "steps_to_leave_chance_median", "lr_drops_mean"]


def _csv(rows) -> str:
    fields = _CSV_FIELDS + (_STEP_FIELDS if _by_steps(rows) else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items() if k in fields})
    return buf.getvalue()


def _by_steps(rows) -> bool:
    """Whether the comparison's own rows ran in steps (then the table shows the step columns)."""
    return "steps_mean" in rows[0]


def _pct(mean, std, ci):
    s = f"{100 * mean:.1f}"
    if not math.isnan(std):
        s += f" ± {100 * std:.1f} [±{100 * ci:.1f}]"
    return s


def _markdown(manifest, runs, rows) -> str:
    cfg = next(r for r in runs if r["row"] in manifest["modes"])["config"]
    recipe = cfg["recipe"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(cfg["versions"].items()))
    lines = [
        f"# {manifest['layout']} layout, recipe `{manifest['recipe']}`: {' vs '.join(r['mode'] for r in rows)}",
        "",
        f"Protocol: {_length(recipe)}, {recipe['optimizer']} lr {recipe['learning_rate']}, batch "
        f"{recipe['batch_size']}, {recipe['precision']}, {cfg['input_size']}x{cfg['input_size']} input from "
        f"{recipe['image_size']}x{recipe['image_size']} images, augmentation {'on' if recipe['augment'] else 'off'}"
        f"{', PCA lighting ' + str(recipe['pca_lighting']) if recipe['pca_lighting'] else ''}, "
        f"{'10-crop' if recipe['ten_crop'] else 'centre-crop'} test; split {cfg['split_sizes']['train']}/"
        f"{cfg['split_sizes']['val']}/{cfg['split_sizes']['test']} (train/val/test, stratified by seed).",
        f"Hardware: {cfg['machine']}; backend {cfg['backend']}; towers on {', '.join(cfg['devices']) or 'one device'}.",
        f"Versions: {versions}.",
        "",
        "Accuracies in %, mean ± std over seeds [± half-width of the 95% t interval]. img/s: training images "
        "per second of epoch wall time (validation included); min/run: the epochs' wall time.",
        "",
    ]
    by_steps = _by_steps(rows)
    if by_steps:
        lines += [f"Left chance: the median step of the first validation above {CHANCE_FACTOR:g}x chance, over the "
                  "runs that left it (k/n when some did not); steps: steps run (mean); lr drops: mean number of "
                  "learning-rate drops.", "",
                  "| mode | seeds | params | GFLOPs/img | test top-1 | test top-5 | best val top-1 | left chance "
                  "(step) | best step | steps | lr drops | train img/s | min/run |",
                  "|---|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|"]
    else:
        lines += ["| mode | seeds | params | GFLOPs/img | test top-1 | test top-5 | best val top-1 | best epoch | "
                  "train img/s | min/run |",
                  "|---|---|---:|---:|---|---|---|---:|---:|---:|"]
    for r in rows:
        cells = [r["mode"], str(r["n_seeds"]), f"{r['parameters']:,}", f"{r['gflops_per_image']:.2f}",
                 _pct(r["test_top1_mean"], r["test_top1_std"], r["test_top1_ci95"]),
                 _pct(r["test_top5_mean"], r["test_top5_std"], r["test_top5_ci95"]),
                 _pct(r["best_val_accuracy_mean"], r["best_val_accuracy_std"], r["best_val_accuracy_ci95"])]
        if not by_steps:
            cells.append(f"{r['best_epoch_mean']:.1f}")
        elif "steps_mean" in r:
            cells += [_left(r), f"{r['best_step_mean']:,.0f}", f"{r['steps_mean']:,.0f}", f"{r['lr_drops_mean']:.1f}"]
        else:  # a reference row measured in epochs
            cells += ["-", "-", "-", "-"]
        cells += [f"{r['train_images_per_second']:.1f}", f"{r['train_minutes_per_run']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    by_mode = {r["mode"]: r for r in rows}
    pairs = [m for m in by_mode if m != "towers" and "towers" in by_mode
             and paired(by_mode["towers"]["per_seed_test_top1"], by_mode[m]["per_seed_test_top1"])["n"]]
    if pairs:
        lines += ["", "Paired differences over seeds (same seed = same split and same data order):", "",
                  "| difference | seeds | top-1 (points) | p (paired t) | top-5 (points) | p (paired t) |",
                  "|---|---:|---|---:|---|---:|"]
        for other in pairs:
            d1 = paired(by_mode["towers"]["per_seed_test_top1"], by_mode[other]["per_seed_test_top1"])
            d5 = paired(by_mode["towers"]["per_seed_test_top5"], by_mode[other]["per_seed_test_top5"])
            if d1["n"] == 0:
                continue
            lines.append(f"| towers - {other} | {d1['n']} | {_diff(d1)} | {_p(d1['p'])} | {_diff(d5)} | "
                         f"{_p(d5['p'])} |")
    lines += ["", f"Regenerate: `alexnet-split report {_rel(runs[0]['dir'].parents[1])}`; "
              f"curves: `curves.png`.", ""]
    return "\n".join(lines)


def _length(recipe) -> str:
    if not recipe.get("steps"):
        return f"{recipe['epochs']} epochs"
    text = f"up to {recipe['steps']:,} steps, validation every {recipe['eval_every']}"
    if recipe.get("lr_drop_patience"):
        text += (f", lr /10 after {recipe['lr_drop_patience']:,} steps without a better validation accuracy once "
                 f"it is above {CHANCE_FACTOR:g}x chance ({recipe['max_lr_drops']} times, then stop at the next "
                 "such plateau)")
    return text


def _left(row) -> str:
    if not row["runs_left_chance"]:
        return f"never (0/{row['n_seeds']})"
    text = f"{row['steps_to_leave_chance_median']:,.0f}"
    return text if row["runs_left_chance"] == row["n_seeds"] else f"{text} ({row['runs_left_chance']}/{row['n_seeds']})"


def _steps(run, n) -> np.ndarray:
    """The step of each of the first n history rows; runs measured in epochs log no step, so it
    is the epoch times the steps per epoch."""
    if "step" in run["history"][0]:
        return np.array([row["step"] for row in run["history"][:n]])
    cfg = run["config"]
    per_epoch = math.ceil(cfg["split_sizes"]["train"] / cfg["recipe"]["batch_size"])
    return np.array([row["epoch"] * per_epoch for row in run["history"][:n]])


def _rel(path: Path) -> str:
    parts = path.resolve().parts
    return "/".join(parts[parts.index("results"):]) if "results" in parts else path.name


def _diff(d):
    s = f"{100 * d['mean']:+.1f}"
    return s + (f" ± {100 * d['ci95']:.1f}" if not math.isnan(d["ci95"]) else "")


def _p(p):
    return "n/a" if math.isnan(p) else f"{p:.3f}"


def _plot(runs, path: Path, manifest, by_steps=False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = []
    for r in runs:
        if r["row"] not in names:
            names.append(r["row"])
    for name in names:
        group = [r for r in runs if r["row"] == name]
        n = min(len(r["history"]) for r in group)
        x = _steps(group[0], n) if by_steps else np.arange(1, n + 1)
        for ax, key in zip(axes, ("val_accuracy", "loss")):
            values = np.array([[row[key] for row in r["history"][:n]] for r in group])
            mean, std = values.mean(0), values.std(0, ddof=1) if len(group) > 1 else np.zeros(n)
            (line,) = ax.plot(x, mean, label=f"{name} (n={len(group)})")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    xlabel = "step" if by_steps else "epoch"
    if by_steps:
        axes[0].axhline(CHANCE_FACTOR / NUM_CLASSES, color="grey", linestyle=":", linewidth=1,
                        label=f"{CHANCE_FACTOR:g}x chance")
    axes[0].set(xlabel=xlabel, ylabel="validation top-1 (centre crop)", title="validation accuracy, mean ± std")
    axes[1].set(xlabel=xlabel, ylabel="training loss", title="training loss, mean ± std")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{manifest['layout']} layout, recipe {manifest['recipe']}")
    fig.tight_layout()
    write_figure(fig, path, dpi=100)
