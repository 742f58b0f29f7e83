"""A comparison's ``table.md`` text: for each protocol its protocol, loss, hardware and versions
lines, a legend, the table by mode and every run one by one; the paired differences towers -
another mode; and each reference row under its own protocol, paired with this comparison's rows
only when both are the same layout.
"""

from __future__ import annotations

import math

from . import stats
from .config import ADDED_SINCE
from .data import NUM_CLASSES, RESIZES
from .mode_rows import BEST_VAL, CENTRE, paired_differences, tested_crops
from .run_folders import (
    CHANCE,
    CLIP,
    CLIPPED,
    NOT_STARTED,
    TF_LOGITS,
    UNFINISHED,
    length_unit,
    loss_kind,
    measured_in_steps,
    row_names,
)
from .schedule import CHANCE_FACTOR
from .tables import markdown_table

_CLIP = f"1e{round(math.log10(CLIP))}"


def markdown(manifest, runs, rows, keys) -> str:
    """``table.md`` but its closing "Regenerate" line: the comparison's protocol and tables, then each reference's."""
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


def _protocol(cfg, runs, keys) -> str:
    recipe, split = cfg["recipe"], cfg["split_sizes"]
    crop = "10-crop" if tested_crops(runs) == 10 else "centre crop"
    if any(k in BEST_VAL for k in keys):
        crop += (", of the last weights and (at best val) of the weights of the best validation top-1, chosen on "
                 "the validation split only")
    test = f"test top-1/top-5: {crop}" + ("; centre top-1/top-5: centre crop" if set(CENTRE) & set(keys) else
                                          "; no centre-crop test figure recorded" if crop == "10-crop" else "")
    return (f"Protocol: {recipe_length(recipe)}, {recipe['optimizer']} lr {recipe['learning_rate']}, batch "
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
    cells = [run["row"], str(run["seed"]), run["state"], count_cell(length),
             "never" if run["left_at"] is None else f"{run['left_at']:,}",
             "-" if best is None else f"{100 * best:.1f} ({count_cell(at)})"]
    if by_steps:
        cells.append(str(len(f["lr_drop_steps"])) if "lr_drop_steps" in f else "-")
    cells += [f"{100 * f[k]:.1f}" if k in f else "-" for k in keys]
    dagger = " †" if run["state"] == UNFINISHED and not run["alive"] else ""
    return cells + ([f"{100 * h[-1]['val_accuracy']:.1f}{dagger}", f"{h[-1]['val_loss']:.3f}"] if h else ["-", "-"])


def count_cell(x) -> str:
    """A count or length as a cell: thousands separated, "-" for none."""
    return "-" if x is None else f"{x:,.0f}"


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


def recipe_length(recipe) -> str:
    """How long a recipe trains: its epochs, or its steps and plateau rule."""
    if not recipe.get("steps"):
        return f"{recipe['epochs']} epochs"
    text = f"up to {recipe['steps']:,} steps, validation every {recipe['eval_every']}"
    if recipe.get("lr_drop_patience"):
        text += (f", lr /10 after {recipe['lr_drop_patience']:,} steps without a better validation accuracy once "
                 f"it is above {CHANCE_FACTOR:g}x chance ({recipe['max_lr_drops']} times, then stop at the next "
                 "such plateau)")
    return text


def _diff(d):
    s = f"{100 * d['mean']:+.1f}"
    return s + (f" ± {100 * d['ci95']:.1f}" if not math.isnan(d["ci95"]) else "")


def _p(p):
    return "n/a" if math.isnan(p) else f"{p:.3f}"
