"""Reading a comparison's run folders: which runs ``compare.json`` declares (its own and its
reference rows'), and what each run's config.json, history.csv and final.json say: finished,
unfinished or not started, whether and when it left chance, how its loss was computed.

The report's table and curves, the headline and ``results/all_comparisons.md`` all read runs
through here, so a run means the same thing in each of them.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .data import NUM_CLASSES
from .runlog import read_json
from .schedule import CHANCE_FACTOR
from .sweep import MANIFEST, run_name

FINISHED, UNFINISHED, NOT_STARTED = "finished", "unfinished", "not started"
CHANCE = CHANCE_FACTOR / NUM_CLASSES  # a validation top-1 above this has left chance (schedule.Plateau's rule)

# How a run's loss was computed (table.csv's `loss`): config.json's "loss" when it names one (new
# runs: "logits"). Older runs name none and used Keras's categorical_crossentropy on the softmax
# probabilities: the TensorFlow backend computes it from the logits behind the softmax
# ("keras-tf-logits"); JAX clips p to [CLIP, 1 - CLIP] ("clipped-probabilities"), so the loss is
# at most -ln CLIP and a saturated output gets no gradient.
CLIPPED, TF_LOGITS = "clipped-probabilities", "keras-tf-logits"
CLIP = 1e-7  # Keras's epsilon


def loss_kind(config) -> str:
    if "loss" in config:
        return config["loss"]
    return CLIPPED if config["backend"] == "jax" else TF_LOGITS


def declared_runs(results_dir) -> list[dict]:
    """Every run the comparison declares and every run of its reference rows, in manifest order:
    finished (final.json), unfinished (logs but no final.json) or not started (no folder)."""
    results_dir = Path(results_dir)
    manifest = read_json(results_dir / MANIFEST)
    runs = [read_run(results_dir / "runs" / run_name(manifest["layout"], mode, seed), mode, seed)
            for mode in manifest["modes"] for seed in manifest["seeds"]]
    for ref in manifest["references"]:
        ref_dir = (results_dir / ref["results"]).resolve()
        runs += [read_run(ref_dir / "runs" / run_name(ref["layout"], ref["mode"], seed), ref["label"], seed, ref)
                 for seed in read_json(ref_dir / MANIFEST)["seeds"]]
    return runs


def load_runs(results_dir) -> list[dict]:
    """The finished runs of the comparison and of its reference rows."""
    return [r for r in declared_runs(results_dir) if r["state"] == FINISHED]


def read_run(run_dir: Path, row: str, seed: int, reference=None) -> dict:
    """One run folder as the report reads it: its state, config, history, final figures and when it left chance."""
    run = {"row": row, "seed": seed, "dir": run_dir, "reference": reference, "state": NOT_STARTED,
           "config": None, "final": None, "history": [], "left_at": None, "alive": False}
    if not (run_dir / "config.json").is_file():
        return run
    run["config"] = read_json(run_dir / "config.json")
    if (run_dir / "history.csv").is_file():
        with open(run_dir / "history.csv") as f:
            run["history"] = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    finished = (run_dir / "final.json").is_file()
    run["state"], run["final"] = (FINISHED, read_json(run_dir / "final.json")) if finished else (UNFINISHED, None)
    run["left_at"] = _left_at(run)
    run["alive"] = run["left_at"] is not None
    return run


def _left_at(run):
    """The step (the epoch, for runs measured in epochs) of the run's first validation above
    CHANCE_FACTOR x chance; None if it never left chance."""
    unit = length_unit(run)
    if unit == "step" and "steps_to_leave_chance" in (run["final"] or {}):  # the schedule's own record
        return run["final"]["steps_to_leave_chance"]
    return next((int(h[unit]) for h in run["history"] if h["val_accuracy"] > CHANCE), None)


def length_unit(run) -> str:
    """A run's length unit: its recipe's (epochs or steps); for logs without a recipe, what they hold."""
    recipe = (run["config"] or {}).get("recipe", {})
    if recipe.get("epochs") or recipe.get("steps"):
        return "epoch" if recipe.get("epochs") else "step"
    return "step" if run["history"] and "step" in run["history"][0] or "steps" in (run["final"] or {}) else "epoch"


def row_names(runs) -> list[str]:
    """The rows of a table (modes, then reference labels), in the order of the runs."""
    return list(dict.fromkeys(r["row"] for r in runs))


def measured_in_steps(runs) -> bool:
    """Whether any started run is measured in steps (then lengths and curves are in steps)."""
    return any(length_unit(r) == "step" for r in runs if r["state"] != NOT_STARTED)
