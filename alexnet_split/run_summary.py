"""What ``alexnet-split report`` prints for one ``train`` run folder rather than a comparison: its
recipe, where it ran, how far it got and when it left chance. It writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from .run_folders import CHANCE, length_unit, read_run
from .runlog import shell_path
from .sweep import MANIFEST
from .table_md import count_cell, recipe_length


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
        f"{recipe['name']} ({recipe_length(recipe)}; {recipe['optimizer']} lr {recipe['learning_rate']}, batch "
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
                f"{f['best_val_accuracy']:.4f} at {unit} {count_cell(f.get('best_' + unit))} of "
                f"{count_cell(f.get(unit + 's'))}, "
                f"{f['train_images_per_second']:.1f} train images/s, {f['train_seconds'] / 60:.1f} min")
    if not h:
        return "no validation yet; rerun its train command to resume"
    best = max(h, key=lambda x: x["val_accuracy"])
    return (f"unfinished: {len(h)} validation{'s' * (len(h) > 1)} to {unit} {count_cell(h[-1][unit])}, last val "
            f"top-1 {h[-1]['val_accuracy']:.4f}, best {best['val_accuracy']:.4f} at {unit} {count_cell(best[unit])}; "
            "rerun its train command to resume")
