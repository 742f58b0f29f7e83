"""Towers vs merged vs half: rebuild a comparison's table and plot from its run logs
(:mod:`alexnet_split.sweep` runs it).

``results/<name>/compare.json`` says what the comparison is (recipe, layout, modes, seeds,
reference rows); ``results/<name>/runs/<layout>_<mode>_s<seed>/`` hold the run logs. The
report reads only those files, so ``alexnet-split report results/<name>`` regenerates
``table.md``, ``table.csv`` and ``curves.png`` byte for byte: no number is typed by hand. Given a
``train`` run folder instead, ``report`` summarises that run and writes nothing.

Every declared run is a result: finished, unfinished or not started, each is in the table, and
a run that never left chance counts in the all-seeds figures beside the figures over the runs
that did. What the table says about the loss and the test crops is read from each run's
config.json and final.json.
"""

from __future__ import annotations

import csv
import math
import os
import shlex
from pathlib import Path

import numpy as np

from . import docsync, stats
from .config import ADDED_SINCE
from .data import NUM_CLASSES, RESIZES
from .run_folders import (
    CHANCE,
    CLIP,
    CLIPPED,
    FINISHED,
    NOT_STARTED,
    TF_LOGITS,
    UNFINISHED,
    declared_runs,
    length_unit,
    loss_kind,
    measured_in_steps,
    read_run,
    row_names,
)
from .runlog import atomic_write, read_json, write_figure
from .schedule import CHANCE_FACTOR
from .sweep import MANIFEST
from .tables import csv_text, markdown_table

_CLIP = f"1e{round(math.log10(CLIP))}"


# --------------------------------------------------------------------------- README blocks

def pipeline_against_runs(speed: float, results_dir) -> list[str]:
    """The input pipeline's images/s against each row's training images/s in a comparison's
    table.csv: the pipeline should be 5x faster to stay out of the way."""

    with open(Path(results_dir) / "table.csv") as f:
        rows = list(csv.DictReader(f))
    lines = []
    for row in rows:
        if not row["train_images_per_second"]:  # no finished run in this row
            continue
        trained = float(row["train_images_per_second"])
        lines.append(f"  vs {row['mode']:<16} training at {trained:7.1f} images/s: {speed / trained:6.1f}x "
                     f"{'(the pipeline is not the bottleneck)' if speed >= 5 * trained else 'WARNING: under 5x'}")
    return lines


def sync_readme_for(written) -> Path | None:
    """After writing `written` under a project's ``results/``: refresh ``results/headline.md``,
    ``results/all_comparisons.md`` and
    the generated blocks of its README and docs/; returns the first document that changed."""
    root = docsync.project_root(written)
    if root is None:
        return None
    changed = refresh_docs(root)
    return changed[0] if changed else None


def refresh_docs(root) -> list[Path]:
    """``results/headline.md`` (the answer) and ``results/all_comparisons.md``, then every generated
    block of the project's README and docs/; returns the documents that changed."""
    from . import headline

    headline.write_headline(Path(root) / "results")
    write_all_comparisons(Path(root) / "results")
    return docsync.sync(root)


# --------------------------------------------------------------------------- the report

ACCURACIES = ("test_top1", "test_top5")
# final.json of newer runs: the test figures of the best-validation weights, and of the centre crop
BEST_VAL = ("test_top1_best_val", "test_top5_best_val")
CENTRE = ("test_top1_centre", "test_top5_centre")
LAST_VAL = {"test_top1": "val_accuracy", "test_top5": "val_top5", "test_top1_centre": "val_accuracy",
            "test_top5_centre": "val_top5", "test_top1_best_val": "val_accuracy",
            "test_top5_best_val": "val_top5"}  # what an unfinished dead run counts at (validation is centre crop)


def report(results_dir) -> str:
    """Write table.md, table.csv and curves.png of a comparison from its run logs; returns table.md
    (:func:`for_terminal` gives its "Regenerate" line for the working directory)."""
    results_dir = Path(results_dir)
    if not (results_dir / MANIFEST).is_file():
        raise ValueError(f"{results_dir}: {_not_a_comparison(results_dir)}")
    manifest = read_json(results_dir / MANIFEST)
    runs = declared_runs(results_dir)
    if not any(r["state"] != NOT_STARTED and r["reference"] is None for r in runs):
        raise ValueError(f"{results_dir}: no run started yet")
    keys = _accuracy_keys(runs)
    rows = [_row(name, [r for r in runs if r["row"] == name], keys) for name in row_names(runs)]
    atomic_write(results_dir / "table.csv", _csv(rows, keys))
    md = _markdown(manifest, runs, rows, keys) + _regenerate(_rel(results_dir))
    atomic_write(results_dir / "table.md", md)
    write_figure(curves_figure(runs, manifest), results_dir / "curves.png", dpi=100)
    if set(BEST_VAL) & set(keys):  # each seed's modes side by side: the headline's figure
        from . import headline

        headline.write_figure_for(results_dir)
    return md


def for_terminal(md: str, results_dir) -> str:
    """A comparison's table.md as printed: the command under "Regenerate" typed from here, and where
    the files are."""
    file_line = _regenerate(_rel(Path(results_dir)))
    if md.endswith(file_line):
        md = md[:-len(file_line)] + _regenerate(shell_path(results_dir))
    return md + written(results_dir)


def is_run_folder(folder) -> bool:
    """A ``train`` run folder (config.json), not a comparison (compare.json)."""
    return (Path(folder) / "config.json").is_file() and not (Path(folder) / MANIFEST).is_file()


def run_summary(run_dir) -> str:
    """What a ``train`` run folder holds, read from its config.json, history.csv and final.json."""
    run_dir = Path(run_dir)
    run = read_run(run_dir, None, None)
    cfg, f, h = run["config"], run["final"] or {}, run["history"]
    recipe = cfg["recipe"]
    unit = length_unit(run)
    left = f.get("steps_to_leave_chance") if "steps_to_leave_chance" in f else \
        next((r[unit] for r in h if r["val_accuracy"] > CHANCE), None)
    files = ", ".join(sorted(p.name for p in run_dir.iterdir()))
    return "\n".join([
        f"{shell_path(run_dir)}: {cfg['layout']} layout, {cfg['mode']} mode, seed {cfg['seed']}, recipe "
        f"{recipe['name']} ({_length(recipe)}; {recipe['optimizer']} lr {recipe['learning_rate']}, batch "
        f"{recipe['batch_size']}, {recipe['precision']}, {cfg['input_size']}px input)",
        f"ran on: backend {cfg['backend']}, engine {cfg.get('engine', 'fit')}, "
        f"{', '.join(cfg['devices']) or 'one device'}; {cfg['machine']}",
        _run_state(f, h, unit, recipe),
        f"left chance: {'never' if f else 'not yet'}" if left is None else f"left chance: at {unit} {left:,.0f}",
        f"files: {files}"])


def _run_state(f, h, unit, recipe) -> str:
    if f:
        stopped = f" ({f['stopped_by']})" if "stopped_by" in f else ""
        return (f"finished{stopped}: test top-1 {f['test_top1']:.4f}, top-5 {f['test_top5']:.4f} "
                f"({f.get('test_crops', 10 if recipe['ten_crop'] else 1)}-crop), best val top-1 "
                f"{f['best_val_accuracy']:.4f} at {unit} {_num(f.get('best_' + unit))} of {_num(f.get(unit + 's'))}, "
                f"{f['train_images_per_second']:.1f} train images/s, {f['train_seconds'] / 60:.1f} min")
    if not h:
        return "no validation yet; rerun its train command to resume"
    best = max(h, key=lambda x: x["val_accuracy"])
    return (f"unfinished: {len(h)} validation{'s' * (len(h) > 1)} to {unit} {_num(h[-1][unit])}, last val top-1 "
            f"{h[-1]['val_accuracy']:.4f}, best {best['val_accuracy']:.4f} at {unit} {_num(best[unit])}; rerun its "
            "train command to resume")


def _not_a_comparison(folder: Path) -> str:
    if not folder.exists():
        return "no such folder"
    if not folder.is_dir():
        return "a file, not a folder"
    return (f"neither a comparison folder (no {MANIFEST}) nor a train run folder (no config.json); "
            "give the folder that `alexnet-split compare` or `alexnet-split train --out` wrote")


def _regenerate(path: str) -> str:
    return f"\nRegenerate: `alexnet-split report {path}`; curves: `curves.png`.\n"


def written(results_dir) -> str:
    """Where a comparison's report went, as the working directory reaches it."""
    shown = shell_path(results_dir)
    return f"wrote {shown}/table.md, {shown}/table.csv and {shown}/curves.png"


def shell_path(path) -> str:
    """`path` as a shell argument from the working directory: relative below it, else absolute."""
    path = Path(path).resolve()
    rel = os.path.relpath(path)
    return shlex.quote(path.as_posix() if rel.startswith("..") else Path(rel).as_posix())


def _accuracy_keys(runs) -> tuple[str, ...]:
    """The test figures to show: the recipe's protocol, of the last weights and (when any run
    recorded it) of the best-validation weights, and, under a 10-crop protocol, the centre crop
    when any run recorded it (then older runs show "-" there: a 10-crop figure never stands in a
    centre-crop column)."""
    def recorded(keys):
        return any(k in (r["final"] or {}) for r in runs for k in keys)

    centre = recorded(CENTRE) and _test_crops(runs) == 10  # a centre-crop protocol: the same figures twice
    return ACCURACIES + (BEST_VAL if recorded(BEST_VAL) else ()) + (CENTRE if centre else ())


def _stats(values):
    if not values:
        return None
    mean, std, ci = stats.mean_std_ci(values)
    return {"mean": mean, "std": std, "ci95": ci, "n": len(values)}


def _all_seeds(group, key) -> dict:
    """One accuracy over every run of a row that has a figure for it: a finished run's measured test
    figure (dead runs included); an unfinished run that never left chance at its last validation
    figure (`last_val` counts them); `na` says why there is no honest all-seeds figure."""
    out = {"stats": None, "last_val": 0, "of": len(group), "na": _no_all_seeds_figure(group, key)}
    if not out["na"]:
        finished = [r for r in group if r["state"] == FINISHED]
        dead = [r for r in group if r["state"] == UNFINISHED]
        out["last_val"] = len(dead)
        out["stats"] = _stats([r["final"][key] for r in finished] + [r["history"][-1][LAST_VAL[key]] for r in dead])
    return out


def _no_all_seeds_figure(group, key) -> str:
    """Why a row has no all-seeds figure for `key` ("" when it has one)."""
    pending = [r for r in group if r["state"] == UNFINISHED and (r["alive"] or not r["history"])]
    if pending:  # a live run's test figure is still to come
        return f"n/a ({len(pending)} unfinished)"
    finished = [r for r in group if r["state"] == FINISHED]
    lacking = [r for r in finished if key not in r["final"]]
    if lacking:
        return "-" if len(lacking) == len(finished) else f"n/a ({len(lacking)} did not record it)"
    return ""


def _row(name, group, keys) -> dict:
    started = [r for r in group if r["state"] != NOT_STARTED]
    finished = [r for r in started if r["state"] == FINISHED]
    alive = [r for r in finished if r["alive"]]
    row = {"mode": name, "reference": group[0]["reference"], "runs": group, **_counts(group, started, finished),
           **_config_cells(started)}
    for key in keys:
        row[key + "_all"] = _all_seeds(group, key)
        row[key + "_alive"] = _stats([r["final"][key] for r in alive if key in r["final"]])
    row["best_val_accuracy_alive"] = _stats([r["final"]["best_val_accuracy"] for r in alive])
    for key in keys:
        row["per_seed_" + key] = {r["seed"]: r["final"][key] for r in finished if r["final"].get(key) is not None}
    row.update(_means(finished))
    return row


def _counts(group, started, finished) -> dict:
    """A row's run counts: declared, finished, unfinished, not started, alive, and when they left chance."""
    left = [r["left_at"] for r in group if r["alive"]]
    return {"n_seeds": len(group), "seeds": " ".join(str(r["seed"]) for r in group), "finished": len(finished),
            "unfinished": len(started) - len(finished), "not_started": len(group) - len(started),
            "alive": sum(r["alive"] for r in group), "runs_left_chance": len(left),
            "left_chance_median": float(np.median(left)) if left else float("nan")}


def _config_cells(started) -> dict:
    """What a row's first started run's config.json says: layout, recipe, size, and every run's loss."""
    if not started:
        return {}
    cfg = started[0]["config"]
    return {"layout": cfg["layout"], "recipe": cfg["recipe"]["name"], "parameters": cfg["parameters"],
            "gflops_per_image": cfg["flops_per_image"] / 1e9,
            "loss": " ".join(sorted({loss_kind(r["config"]) for r in started}))}


def _means(finished) -> dict:
    """Length and speed columns: means over the finished runs."""
    if not finished:
        return {}
    f = [r["final"] for r in finished]
    out = {"best_epoch_mean": float(np.mean([x["best_epoch"] for x in f])),
           "train_images_per_second": float(np.mean([x["train_images_per_second"] for x in f])),
           "train_minutes_per_run": float(np.mean([x["train_seconds"] for x in f])) / 60}
    if all("steps" in x for x in f):  # runs measured in steps (the fixed paper recipe)
        out.update(steps_mean=float(np.mean([x["steps"] for x in f])),
                   best_step_mean=float(np.mean([x["best_step"] for x in f])),
                   lr_drops_mean=float(np.mean([len(x["lr_drop_steps"]) for x in f])))
    return out


def _csv_fields(keys) -> list[str]:
    fields = ["mode", "reference", "layout", "recipe", "loss", "n_seeds", "seeds", "finished", "unfinished",
              "not_started", "alive", "parameters", "gflops_per_image"]
    for key in keys:
        fields += [f"{key}_all_{s}" for s in ("mean", "std", "ci95", "n", "last_val", "note")]
        fields += [f"{key}_alive_{s}" for s in ("mean", "std", "ci95", "n")]
    return fields + ["best_val_accuracy_alive_mean", "best_val_accuracy_alive_std", "best_val_accuracy_alive_ci95",
                     "runs_left_chance", "left_chance_median", "steps_mean", "best_step_mean", "lr_drops_mean",
                     "best_epoch_mean", "train_images_per_second", "train_minutes_per_run"]


def _flat(row, keys) -> dict:
    """A row as table.csv's fields: statistics spread into _mean/_std/_ci95/_n columns."""
    flat = {k: v for k, v in row.items() if not isinstance(v, (dict, list))}
    flat["reference"] = row["reference"]["label"] if row["reference"] else ""
    for name in [f"{k}_alive" for k in keys] + ["best_val_accuracy_alive"]:
        flat.update({f"{name}_{s}": v for s, v in (row[name] or {}).items()})
    for key in keys:
        a = row[key + "_all"]
        flat.update({f"{key}_all_{s}": v for s, v in (a["stats"] or {}).items()})
        flat.update({f"{key}_all_last_val": a["last_val"], f"{key}_all_note": a["na"]})
    return flat


def _csv(rows, keys) -> str:
    return csv_text(_csv_fields(keys), [{k: ("" if math.isnan(v) else f"{v:.6f}") if isinstance(v, float) else v
                                         for k, v in _flat(row, keys).items()} for row in rows])


# --------------------------------------------------------------------------- table.md


def _pct(s) -> str:
    if s is None:
        return "-"
    text = f"{100 * s['mean']:.1f}"
    if not math.isnan(s["std"]):
        text += f" ± {100 * s['std']:.1f} [±{100 * s['ci95']:.1f}]"
    return text


def _all_cell(a) -> str:
    if a["na"] or a["stats"] is None:
        return a["na"] or "-"
    text = _pct(a["stats"]) + (" †" if a["last_val"] else "")
    return text + (f" ({a['stats']['n']} of {a['of']} seeds)" if a["stats"]["n"] < a["of"] else "")


def _label(key) -> str:
    text = ("centre " if key.endswith("_centre") else "test ") + ("top-1" if "top1" in key else "top-5")
    return text + (" at best val" if key.endswith("_best_val") else "")


def _markdown(manifest, runs, rows, keys) -> str:
    main = [r for r in runs if r["reference"] is None]
    main_rows = [r for r in rows if r["reference"] is None]
    lines = [f"# {manifest['layout']} layout, recipe `{manifest['recipe']}`: {' vs '.join(manifest['modes'])}", ""]
    lines += _section(main, main_rows, keys, _legend(runs, measured_in_steps(main))) + _paired_table(main_rows)
    for label in dict.fromkeys(r["row"] for r in runs if r["reference"]):
        ref_rows = [r for r in rows if r["mode"] == label]
        ref = ref_rows[0]["reference"]
        lines += ["", f"**Reference: {label}**, from `{ref['results']}` ({ref['layout']} layout, {ref['mode']} mode): "
                  "its own protocol, below.", ""]
        lines += _section([r for r in runs if r["row"] == label], ref_rows, keys, "Columns as in the first table.")
        lines += _reference_pairing(main_rows, ref_rows[0])
    return "\n".join(lines) + "\n"


def _section(runs, rows, keys, legend) -> list[str]:
    """One protocol's lines: protocol, loss, hardware, legend, the table by mode, the runs one by one."""
    started = [r for r in runs if r["state"] != NOT_STARTED]
    cfg = started[0]["config"]
    by_steps = measured_in_steps(runs)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(cfg["versions"].items()))
    devices = ", ".join(cfg["devices"]) or "one device"
    lines = [_protocol(cfg, runs, keys), _loss_line(started),
             f"Hardware: {cfg['machine']}; backend {cfg['backend']}; towers on {devices}.",
             f"Versions: {versions}.", "", legend, ""]
    unit = "step" if by_steps else "epoch"
    cols = ["mode", "seeds", "alive"] + [f"{_label(k)}, {w}" for k in keys for w in ("all seeds", "alive")]
    cols += ["best val top-1, alive", f"left chance ({unit})", "params", "GFLOPs/img"]
    cols += ["steps", "best step", "lr drops"] if by_steps else ["best epoch"]
    lines += _table(cols + ["train img/s", "min/run"], [_mode_cells(r, keys, by_steps) for r in rows])
    cols = ["mode", "seed", "state", unit + "s", f"left chance ({unit})", f"best val top-1 ({unit})"]
    cols += ["lr drops"] if by_steps else []
    cols += [_label(k) for k in keys] + ["last val top-1", "last val loss"]
    lines += ["", "Every run:", ""] + _table(cols, _run_rows(runs, keys, by_steps))
    return lines


def _table(columns, rows) -> list[str]:
    align = ["l" if c in ("mode", "seeds", "state", "difference") or "top-" in c or "points" in c else "r"
             for c in columns]
    return markdown_table(columns, rows, align)


def _test_crops(runs) -> int:
    """The crops behind test_top1/test_top5 (final.json's test_crops, else the recipe's); one table
    never mixes a 10-crop and a centre-crop figure in one column."""
    crops = {r["final"].get("test_crops", 10 if r["config"]["recipe"]["ten_crop"] else 1)
             for r in runs if r["state"] == FINISHED}
    if len(crops) > 1:
        raise ValueError(f"runs of one table were tested with {sorted(crops)} crops")
    return crops.pop() if crops else 10 if next(r for r in runs if r["config"])["config"]["recipe"]["ten_crop"] else 1


def _protocol(cfg, runs, keys) -> str:
    recipe, split = cfg["recipe"], cfg["split_sizes"]
    crop = "10-crop" if _test_crops(runs) == 10 else "centre crop"
    if any(k in BEST_VAL for k in keys):
        crop += (", of the last weights and (at best val) of the weights of the best validation top-1, chosen on "
                 "the validation split only")
    test = f"test top-1/top-5: {crop}" + ("; centre top-1/top-5: centre crop" if set(CENTRE) & set(keys) else
                                          "; no centre-crop test figure recorded" if crop == "10-crop" else "")
    return (f"Protocol: {_length(recipe)}, {recipe['optimizer']} lr {recipe['learning_rate']}, batch "
            f"{recipe['batch_size']}, {recipe['precision']}{_kernels(recipe)}, {cfg['input_size']}x{cfg['input_size']} "
            "input from "
            f"{recipe['image_size']}x{recipe['image_size']} images ({_resize(recipe)}), augmentation "
            f"{'on' if recipe['augment'] else 'off'}"
            f"{', PCA lighting ' + str(recipe['pca_lighting']) if recipe['pca_lighting'] else ''}; {test}; split "
            f"{split['train']}/{split['val']}/{split['test']} (train/val/test, stratified by seed).")


def _kernels(recipe) -> str:
    """The optional kernels a run used (config.Recipe.kernels), if any; absent or "": today's ops."""
    return f" (kernels {recipe['kernels']})" if recipe.get("kernels") else ""


def _resize(recipe) -> str:
    """How the run decoded its images (data.RESIZES). A recipe recorded before the `resize` field
    existed decoded with "crop", the only method then; where its preset now says otherwise, so does the line."""
    from .config import PRESETS

    text = RESIZES[recipe.get("resize", "crop")].format(size=recipe["image_size"])
    now = PRESETS[recipe["name"]]().resize if recipe["name"] in PRESETS else "crop"
    if "resize" not in recipe and now != "crop":
        text += f"; today's `{recipe['name']}` preset uses resize {now!r} instead"
    return text


def _loss_line(started) -> str:
    """What each run's loss was, from its config.json (see loss_kind); for the clipped loss, which
    runs sit saturated at the clip: validation loss (K-1)/K x -ln CLIP, one class predicted for all."""
    kinds = {k: [r for r in started if loss_kind(r["config"]) == k] for k in {loss_kind(r["config"]) for r in started}}
    texts = {CLIPPED: "were trained with the clipped probability loss (config.json names no loss and the backend "
                      f"is jax: Keras's categorical_crossentropy on softmax probabilities clipped to [{_CLIP}, "
                      f"1 - {_CLIP}], so at most -ln {_CLIP} = {-math.log(CLIP):.3f} and no gradient once the "
                      "output saturates); a saturated run could not recover; to be replaced by a rerun with the "
                      "loss from logits",
             TF_LOGITS: "used Keras's categorical_crossentropy on the softmax, which the TensorFlow backend computes "
                        "from the logits behind it (no clipping)",
             "logits": "used the cross-entropy from the logits (stable log-softmax)"}
    parts = []
    for kind, group in sorted(kinds.items()):
        who = "these runs" if len(group) == len(started) else f"{len(group)} of {len(started)} runs"
        parts.append(f"{who} {texts.get(kind, f'used the loss {kind!r}')}")
    cap = (NUM_CLASSES - 1) / NUM_CLASSES * -math.log(CLIP)  # every class but the one predicted at the cap
    saturated = [r for r in kinds.get(CLIPPED, []) if r["history"] and abs(r["history"][-1]["val_loss"] - cap) < 1e-4]
    if saturated:
        parts.append(", ".join(f"{r['row']} s{r['seed']}" for r in saturated) + f" end at validation loss {cap:.6f} "
                     f"= ({NUM_CLASSES - 1}/{NUM_CLASSES}) x {-math.log(CLIP):.3f}: saturated at the clip")
    return "Loss: " + "; ".join(parts) + "."


def _legend(runs, by_steps) -> str:
    text = ("Accuracies in %, mean ± std over runs [± half-width of the 95% t interval]. all seeds: every run of "
            "the row that has the figure, the runs that never left chance included; alive: the finished runs that "
            f"left chance (a validation top-1 above {CHANCE_FACTOR:g}x chance, {100 * CHANCE:.1f}%). alive and left "
            "chance k/n: k of the row's n declared seeds left chance; left chance: the median of their first such "
            f"{'step' if by_steps else 'epoch'}. n/a (k unfinished): an unfinished run has left chance or has no "
            "validation yet, so its test figure is still to come.")
    if any(r["state"] == UNFINISHED and not r["alive"] and r["history"] for r in runs):
        text += (" † counts an unfinished run that never left chance at its last validation top-1 (top-5), a "
                 "centre-crop figure, as every run at chance scores near 1/17.")
    return text + (" The columns after left chance are the finished runs' (means; train img/s: training images "
                   "per second of epoch wall time, validation included; min/run: the epochs' wall time).")


def _mode_cells(row, keys, by_steps) -> list[str]:
    n = row["n_seeds"]
    seeds = (f"not started 0/{n}" if row["finished"] + row["unfinished"] == 0 else str(n) if row["finished"] == n
             else f"{n}: " + ", ".join(f"{row[k]} {k.replace('_', ' ')}" for k in
                                       ("finished", "unfinished", "not_started") if row[k]))
    cells = [row["mode"], seeds, f"{row['alive']}/{n}"]
    for key in keys:
        cells += [_all_cell(row[key + "_all"]), _pct(row[key + "_alive"])]
    left = (f"{row['left_chance_median']:,.0f}" if row["runs_left_chance"] else
            "never" if row["finished"] + row["unfinished"] else "-")
    cells += [_pct(row["best_val_accuracy_alive"]), f"{left} ({row['runs_left_chance']}/{n})"]
    cells += [f"{row['parameters']:,}", f"{row['gflops_per_image']:.2f}"] if "parameters" in row else ["-", "-"]
    if not row["finished"]:
        return cells + ["-"] * (5 if by_steps else 3)
    if by_steps:
        length = ([f"{row['steps_mean']:,.0f}", f"{row['best_step_mean']:,.0f}", f"{row['lr_drops_mean']:.1f}"]
                  if "steps_mean" in row else ["-"] * 3)  # a reference row measured in epochs
    else:
        length = [f"{row['best_epoch_mean']:.1f}"]
    return cells + length + [f"{row['train_images_per_second']:.1f}", f"{row['train_minutes_per_run']:.1f}"]


def _run_rows(runs, keys, by_steps) -> list[list[str]]:
    """One row per started run; the not-started seeds of a mode share one."""
    out = []
    width = 5 + by_steps + len(keys)
    for name in row_names(runs):
        group = [r for r in runs if r["row"] == name]
        out += [_run_cells(r, keys, by_steps) for r in group if r["state"] != NOT_STARTED]
        idle = [str(r["seed"]) for r in group if r["state"] == NOT_STARTED]
        if idle:
            out.append([name, ", ".join(idle), NOT_STARTED] + ["-"] * width)
    return out


def _run_cells(run, keys, by_steps) -> list[str]:
    f, h = run["final"] or {}, run["history"]
    unit = length_unit(run)
    if f:
        length, best, at = f.get(unit + "s"), f["best_val_accuracy"], f.get(f"best_{unit}")
    else:  # unfinished: how far it got, and its best validation so far
        top = max(h, key=lambda x: x["val_accuracy"]) if h else {}
        length, best, at = h[-1][unit] if h else None, top.get("val_accuracy"), top.get(unit)
    cells = [run["row"], str(run["seed"]), run["state"], _num(length),
             "never" if run["left_at"] is None else f"{run['left_at']:,}",
             "-" if best is None else f"{100 * best:.1f} ({_num(at)})"]
    if by_steps:
        cells.append(str(len(f["lr_drop_steps"])) if "lr_drop_steps" in f else "-")
    cells += [f"{100 * f[k]:.1f}" if k in f else "-" for k in keys]
    dagger = " †" if run["state"] == UNFINISHED and not run["alive"] else ""
    return cells + ([f"{100 * h[-1]['val_accuracy']:.1f}{dagger}", f"{h[-1]['val_loss']:.3f}"] if h else ["-", "-"])


def _num(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def paired_differences(rows, top1="test_top1", top5="test_top5") -> list[tuple[str, dict, dict]]:
    """(name, top-1 difference, top-5 difference) of towers - each other mode of one comparison
    (:func:`alexnet_split.stats.paired` over the seeds where both runs have the figure)."""
    by_mode = {r["mode"]: r for r in rows}
    if "towers" not in by_mode or "per_seed_" + top1 not in by_mode["towers"]:
        return []
    diffs = [(f"towers - {m}", *(stats.paired(by_mode["towers"]["per_seed_" + k], by_mode[m]["per_seed_" + k])
                                 for k in (top1, top5)))
             for m in by_mode if m != "towers"]
    return [(m, d1, d5) for m, d1, d5 in diffs if d1["n"]]


def _paired_table(rows) -> list[str]:
    """towers - each other mode of the same comparison, over the seeds where both runs finished: of
    the last weights, and of the best-validation weights when the runs recorded them."""
    diffs = paired_differences(rows)
    best = paired_differences(rows, *BEST_VAL)
    if not diffs:
        return []
    lines = ["", "Paired differences, towers - another mode, over the seeds where both runs finished (runs that never "
             "left chance included); within this comparison the same seed means the same split and the same "
             "batches. Rank test: Wilcoxon signed-rank, exact (n/a under 2 pairs; it cannot go below 2/2^n).", ""]
    if best:
        diffs = [(f"{name}, last weights", d1, d5) for name, d1, d5 in diffs]
        diffs += [(f"{name}, best-val weights", d1, d5) for name, d1, d5 in best]
    return lines + _diff_table(diffs)


def _diff_table(diffs) -> list[str]:
    cols = ["difference", "seeds", "top-1 (points)", "p (paired t)", "p (signed-rank)", "top-5 (points)",
            "p (paired t)", "p (signed-rank)"]
    return _table(cols, [[name, str(d1["n"]), _diff(d1), _p(d1["p"]), _p(d1["p_rank"]), _diff(d5), _p(d5["p"]),
                          _p(d5["p_rank"])] for name, d1, d5 in diffs])


def _reference_pairing(main_rows, ref_row) -> list[str]:
    """A reference row is paired with the comparison's row of its mode only when both are the same
    layout; the caption names every protocol setting in which they differ."""
    ref = ref_row["reference"]
    cfg = _first_config(r for row in main_rows for r in row["runs"])
    ref_cfg = _first_config(ref_row["runs"])
    if ref_cfg is None:
        return []
    differ = _protocol_differences(cfg, ref_cfg)
    if cfg["layout"] != ref_cfg["layout"]:
        return ["", f"Not paired with this comparison's rows: another layout and protocol "
                f"({', '.join(name for name, _, _ in differ)} differ; see the two protocol lines)."]
    mine = next((r for r in main_rows if r["mode"] == ref["mode"]), None)
    d1 = stats.paired(mine["per_seed_test_top1"], ref_row["per_seed_test_top1"]) if mine else {"n": 0}
    if not d1["n"]:
        return []
    d5 = stats.paired(mine["per_seed_test_top5"], ref_row["per_seed_test_top5"])
    what = ", ".join(f"{name} ({here} here, {there} there)" for name, here, there in differ) or "nothing recorded"
    return ["", f"Paired with this comparison's {mine['mode']} runs of the same seed (the same split); the protocols "
            f"differ in: {what}. Rank test: Wilcoxon signed-rank, exact.", ""] + _diff_table(
        [(f"{mine['mode']} - {ref_row['mode']}", d1, d5)])


def _first_config(runs):
    return next((r["config"] for r in runs if r["config"]), None)


def _protocol_differences(a, b) -> list[tuple[str, str, str]]:
    """(setting, value in a, value in b) for each protocol setting of two runs' config.json that differs."""
    pairs = {"layout": (a["layout"], b["layout"]), "model input": (a["input_size"], b["input_size"]),
             "backend": (a["backend"], b["backend"]), "loss": (loss_kind(a), loss_kind(b))}
    ra, rb = (ADDED_SINCE | a["recipe"], ADDED_SINCE | b["recipe"])  # absent: the value before the key existed
    pairs |= {k: (ra.get(k), rb.get(k)) for k in sorted(set(ra) | set(rb)) if k != "name"}
    return [(k, str(x), str(y)) for k, (x, y) in pairs.items() if x != y]


def _length(recipe) -> str:
    if not recipe.get("steps"):
        return f"{recipe['epochs']} epochs"
    text = f"up to {recipe['steps']:,} steps, validation every {recipe['eval_every']}"
    if recipe.get("lr_drop_patience"):
        text += (f", lr /10 after {recipe['lr_drop_patience']:,} steps without a better validation accuracy once "
                 f"it is above {CHANCE_FACTOR:g}x chance ({recipe['max_lr_drops']} times, then stop at the next "
                 "such plateau)")
    return text


def _rel(path: Path) -> str:
    """table.md's path to its own folder: from the repository root for a folder under ``results/``
    (as the README shows the committed tables), else as the working directory reaches it."""
    parts = path.resolve().parts
    if "results" not in parts:
        return shell_path(path)
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("results"):])


def _diff(d):
    s = f"{100 * d['mean']:+.1f}"
    return s + (f" ± {100 * d['ci95']:.1f}" if not math.isnan(d["ci95"]) else "")


def _p(p):
    return "n/a" if math.isnan(p) else f"{p:.3f}"


# --------------------------------------------------------------------------- curves.png


def _x(run, n, by_steps) -> np.ndarray:
    """The step of each of the first n history rows (by_steps; a run measured in epochs logs none, so
    epoch x steps per epoch), else the epoch."""
    h = run["history"][:n]
    if not by_steps:
        return np.array([row["epoch"] for row in h])
    if "step" in h[0]:
        return np.array([row["step"] for row in h])
    cfg = run["config"]
    per_epoch = math.ceil(cfg["split_sizes"]["train"] / cfg["recipe"]["batch_size"])
    return np.array([row["epoch"] * per_epoch for row in h])


def curve_groups(runs) -> list[tuple[str, list[dict]]]:
    """(label, runs) for each row's started runs; a row whose runs split into ones that left chance
    and ones that never did gets a group of each, since a mean over both describes neither."""
    groups = []
    for name in row_names(runs):
        started = [r for r in runs if r["row"] == name and r["history"]]
        alive, dead = [r for r in started if r["alive"]], [r for r in started if not r["alive"]]
        name += " (reference, own protocol)" if started and started[0].get("reference") else ""
        groups += [(f"{name}, left chance", alive), (f"{name}, never left chance", dead)] if alive and dead else \
            [(name, started)] if started else []
    return groups


def draw_group(ax, group, key, label, colour, bounds, by_steps):
    """Three or more runs: their mean and a ± std band, clipped to `bounds` (the quantity's range),
    over the steps all of them reached; one or two runs: each drawn as itself, no band."""
    if len(group) < 3:
        for r, style in zip(group, ("-", "--"), strict=False):
            ax.plot(_x(r, len(r["history"]), by_steps), [h[key] for h in r["history"]], color=colour,
                    linestyle=style, linewidth=1.2, label=f"{label}: seed {r['seed']}")
        return
    n = min(len(r["history"]) for r in group)
    x = _x(group[0], n, by_steps)
    values = np.array([[h[key] for h in r["history"][:n]] for r in group])
    mean, std = values.mean(0), values.std(0, ddof=1)
    reach = "" if all(len(r["history"]) == n for r in group) else f"; to {x[-1]:,.0f}, the shortest run's end"
    ax.plot(x, mean, color=colour, label=f"{label}: mean ± std ({len(group)} runs{reach})")
    ax.fill_between(x, np.clip(mean - std, *bounds), np.clip(mean + std, *bounds), color=colour, alpha=0.2,
                    linewidth=0)


def curves_figure(runs, manifest):
    """Validation top-1 and training loss against steps (or epochs) for every started run."""
    from matplotlib.figure import Figure

    by_steps = measured_in_steps([r for r in runs if r["reference"] is None])
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for i, (label, group) in enumerate(curve_groups(runs)):
        for ax, key, bounds in zip(axes, ("val_accuracy", "loss"), ((0.0, 1.0), (0.0, None)), strict=True):
            draw_group(ax, group, key, label, f"C{i}", bounds, by_steps)
    xlabel = "step" if by_steps else "epoch"
    axes[0].axhline(CHANCE, color="grey", linestyle=":", linewidth=1, label=f"{CHANCE_FACTOR:g}x chance")
    axes[0].set(xlabel=xlabel, ylabel="validation top-1 (centre crop)", title="validation accuracy", ylim=(0, 1))
    axes[1].set(xlabel=xlabel, ylabel="training loss", title="training loss")
    axes[1].set_ylim(bottom=0)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{manifest['layout']} layout, recipe {manifest['recipe']}")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the headline table


def write_all_comparisons(results_root) -> str:
    """``results/all_comparisons.md``: every comparison's mode rows in one table (alive k/n, test
    top-1 over all seeds and over the runs that left chance), each linking to its own table."""
    results_root = Path(results_root)
    lines = ["# Every comparison", "",
             "Test top-1 in %, mean over seeds, from each comparison's `table.csv` (its protocol, "
             "hardware and spread are in the linked table). alive: runs that left chance (k/n declared "
             "seeds); all seeds: every run that has a figure, dead ones included († an unfinished run "
             "at chance counted at its last validation); loss: how the runs computed it.", ""]
    header = ["comparison", "recipe", "mode", "alive", "test top-1, all seeds", "test top-1, alive", "loss", "backend",
              "table"]
    cells = []
    for manifest in sorted(results_root.rglob(MANIFEST)):
        folder = manifest.parent
        if not (folder / "table.csv").is_file():
            continue
        with open(folder / "table.csv") as f:
            rows = [r for r in csv.DictReader(f) if not r.get("reference")]
        backend = next((r["config"]["backend"] for r in declared_runs(folder) if r["config"]), "-")
        name = folder.relative_to(results_root).as_posix()
        recipe = read_json(manifest)["recipe"]
        for r in rows:
            dagger = " †" if _int(r.get("test_top1_all_last_val")) else ""
            cells.append([name, f"`{recipe}`", r["mode"], f"{r['alive']}/{r['n_seeds']}",
                          _headline_pct(r.get("test_top1_all_mean")) + dagger,
                          _headline_pct(r.get("test_top1_alive_mean")), r["loss"] or "-", backend,
                          f"[table]({name}/table.md)"])
    text = "\n".join(lines + markdown_table(header, cells, "lllrrrlll")) + "\n"
    atomic_write(results_root / "all_comparisons.md", text)
    return text


def _headline_pct(value) -> str:
    return f"{100 * float(value):.1f}" if value not in (None, "") else "-"


def _int(value) -> int:
    return int(float(value)) if value not in (None, "") else 0
