"""How to fill a CPU machine with a sweep: one run on every core, or one run per core side by side.

Both arms train the same network and recipe for the same number of epochs in the
:class:`alexnet_split.workers.Pool` the sweep itself uses (TensorFlow workers, the fit engine,
towers on two logical CPU devices):

* ``one``: one worker with every core, training one run;
* ``side_by_side``: one worker per core (worker k bound to core k), each training its own run
  at the same time.

Each run's steady rate is its training images per second of epoch wall time (validation
included) over the epochs after the first (the first also traces and builds the graph); the
machine's rate is the sum over the runs that trained at once. The sweep runs the faster way.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

from .runlog import atomic_write, machine, read_json
from .tables import csv_text, markdown_table

FIELDS = ["arm", "workers", "cores_per_worker", "runs", "epochs", "steady_img_s", "end_to_end_img_s",
          "wall_seconds"]


def steady_rate(run_folder) -> float:
    """Training images per second of run `run_folder` over its epochs after the first."""
    run_folder = Path(run_folder)
    cfg = read_json(run_folder / "config.json")
    with open(run_folder / "timing.csv") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)][1:]
    if not seconds:
        raise ValueError(f"{run_folder}: the steady rate needs at least 2 epochs in timing.csv")
    images = cfg["steps_per_epoch"] * cfg["recipe"]["batch_size"] * len(seconds)
    return images / sum(seconds)


def _arm(name, workers, pin, recipe, layout, mode, epochs, data, folder, log) -> dict:
    from .workers import Pool, RunSpec

    results = folder / name
    specs = [RunSpec(str(results), layout, mode, recipe, seed, {"epochs": epochs}, data, group=0)
             for seed in range(workers)]
    t0 = time.monotonic()
    with Pool(workers, backend="tensorflow", pin=pin, deterministic=False, log=log) as pool:
        outcome = pool.run(specs)
    wall = time.monotonic() - t0
    failed = [r for r in outcome if r["status"] != "done"]
    if failed:
        raise RuntimeError(f"benchmark arm {name!r}: {failed[0]['name']} {failed[0]['status']}: "
                           f"{failed[0].get('error')}")
    cfg = read_json(specs[0].out / "config.json")
    images = len(specs) * epochs * cfg["steps_per_epoch"] * cfg["recipe"]["batch_size"]
    cores = len(os.sched_getaffinity(0))
    return {"arm": name, "workers": workers, "cores_per_worker": 1 if pin else cores, "runs": len(specs),
            "epochs": epochs, "steady_img_s": round(sum(steady_rate(s.out) for s in specs), 1),
            "end_to_end_img_s": round(images / wall, 1), "wall_seconds": round(wall, 1)}


def side_by_side(recipe="seed_cpu10", layout="seed", mode="towers", epochs=4, data=None, log=None) -> list[dict]:
    """Measure both arms (one run on every core; one run per core side by side), in this order,
    in a temporary folder that is removed afterwards; returns their rows."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        raise ValueError(f"side by side needs at least 2 cores; this process may use {cores}")
    folder = Path(tempfile.mkdtemp(prefix="alexnet_split_bench_pool_"))
    try:
        return [_arm("one run on all cores", 1, False, recipe, layout, mode, epochs, data, folder, log),
                _arm("one run per core side by side", cores, True, recipe, layout, mode, epochs, data, folder,
                     log)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write(rows: list[dict], path_stem, command: str, recipe: str, layout: str, mode: str) -> str:
    """Write ``<path_stem>.md`` and ``.csv``; returns the markdown."""
    one, many = rows
    ratio = many["steady_img_s"] / one["steady_img_s"]
    faster = many if ratio > 1 else one
    lines = [f"# Filling the CPU: one run on every core vs one run per core ({layout} {mode}, `{recipe}`)", "",
             f"Machine: {machine()}. Each arm trains {one['epochs']} epochs per run in the sweep's worker pool "
             "(TensorFlow, fit engine, towers on two logical CPU devices). steady img/s: training images per "
             "second of epoch wall time over the epochs after the first, summed over the runs training at once; "
             "end to end: all training images over the arm's wall time (process start, data, graph building "
             "included).", "",
             *markdown_table(["arm", "workers", "cores per worker", "runs", "epochs", "steady img/s",
                              "end-to-end img/s", "wall s"],
                             [[r["arm"], *(str(r[k]) for k in ("workers", "cores_per_worker", "runs", "epochs")),
                               f"{r['steady_img_s']:.1f}", f"{r['end_to_end_img_s']:.1f}", f"{r['wall_seconds']:.0f}"]
                              for r in rows], "lrrrrrrr"), "",
             f"Side by side / one run: **{ratio:.2f}x** (steady), "
             f"{many['end_to_end_img_s'] / one['end_to_end_img_s']:.2f}x (end to end). "
             f"The sweep runs {faster['arm']!r}.", "",
             f"Regenerate: `{command}`", ""]
    text = "\n".join(lines)
    path_stem = Path(path_stem)
    atomic_write(path_stem.with_suffix(".md"), text)
    atomic_write(path_stem.with_suffix(".csv"), csv_text(FIELDS, rows))
    return text
