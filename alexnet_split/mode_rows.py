"""A comparison's rows, one per mode (and per reference row): run counts, each test figure over
all seeds and over the runs that left chance, length and speed means, each seed's figures for
the paired differences; and those rows as ``table.csv``.
"""

from __future__ import annotations

import math

import numpy as np

from . import stats
from .run_folders import FINISHED, NOT_STARTED, UNFINISHED, loss_kind, row_names
from .tables import csv_text

ACCURACIES = ("test_top1", "test_top5")

# final.json of newer runs: the test figures of the best-validation weights, and of the centre crop
BEST_VAL = ("test_top1_best_val", "test_top5_best_val")
CENTRE = ("test_top1_centre", "test_top5_centre")
LAST_VAL = {"test_top1": "val_accuracy", "test_top5": "val_top5", "test_top1_centre": "val_accuracy",
            "test_top5_centre": "val_top5", "test_top1_best_val": "val_accuracy",
            "test_top5_best_val": "val_top5"}  # what an unfinished dead run counts at (validation is centre crop)


def accuracy_keys(runs) -> tuple[str, ...]:
    """The test figures to show: the recipe's protocol, of the last weights and (when any run
    recorded it) of the best-validation weights, and, under a 10-crop protocol, the centre crop
    when any run recorded it (then older runs show "-" there: a 10-crop figure never stands in a
    centre-crop column)."""
    def recorded(keys):
        return any(k in (r["final"] or {}) for r in runs for k in keys)

    centre = recorded(CENTRE) and tested_crops(runs) == 10  # a centre-crop protocol: the same figures twice
    return ACCURACIES + (BEST_VAL if recorded(BEST_VAL) else ()) + (CENTRE if centre else ())


def tested_crops(runs) -> int:
    """The crops behind test_top1/test_top5 (final.json's test_crops, else the recipe's); one table
    never mixes a 10-crop and a centre-crop figure in one column."""
    crops = {r["final"].get("test_crops", 10 if r["config"]["recipe"]["ten_crop"] else 1)
             for r in runs if r["state"] == FINISHED}
    if len(crops) > 1:
        raise ValueError(f"runs of one table were tested with {sorted(crops)} crops")
    return crops.pop() if crops else 10 if next(r for r in runs if r["config"])["config"]["recipe"]["ten_crop"] else 1


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


def mode_rows(runs, keys) -> list[dict]:
    """One row per mode and per reference row, in manifest order."""
    return [mode_row(name, [r for r in runs if r["row"] == name], keys) for name in row_names(runs)]


def mode_row(name, group, keys) -> dict:
    """The row `name` from its declared runs `group`, with the statistics of each test figure in `keys`."""
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


def table_csv(rows, keys) -> str:
    """``table.csv``: one line per row, statistics as plain numbers (NaN as an empty cell)."""
    return csv_text(_csv_fields(keys), [{k: ("" if math.isnan(v) else f"{v:.6f}") if isinstance(v, float) else v
                                         for k, v in _flat(row, keys).items()} for row in rows])


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
