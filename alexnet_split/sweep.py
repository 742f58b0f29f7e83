"""A comparison's sweep: declare its runs (``compare.json``), train them seed by seed, and pack
the run logs a lent machine sends back. :mod:`alexnet_split.report` turns the logs into tables.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

from .runlog import check_folder, read_json, replacing, write_json

MANIFEST = "compare.json"


def run_name(layout, mode, seed):
    """A run's folder name under a comparison's ``runs/``."""
    return f"{layout}_{mode}_s{seed}"


def compare(results_dir, recipe, layout="paper", modes=("towers", "merged", "half"), seeds=(0, 1, 2),
            references=(), data_root=None, devices=None, overrides=None, deterministic=False,
            checkpoint_seconds=0.0, engine="auto", tensorboard=None) -> Path:
    """Run (or resume) every run of the comparison; returns its folder, for
    :func:`alexnet_split.report.report`.

    Seed by seed, every mode of a seed before the next seed: a comparison cut short (a lent
    accelerator's time runs out) leaves complete seeds, which the report can pair. Finished runs
    are skipped, so calling it again fills the table. `tensorboard`: a folder with one subfolder
    of TensorBoard curves per run."""

    import keras

    from . import train

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes: one model per run
    results_dir = Path(results_dir)
    _check_before_writing(results_dir, recipe, layout, modes, seeds, data_root, overrides)
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
    return results_dir


def _check_before_writing(results_dir, recipe, layout, modes, seeds, data_root, overrides):
    """What can fail before a comparison writes anything: its folder, the recipe, and (when a run
    is left to train) the data and a batch larger than the training images."""
    from . import config, data, pipeline

    check_folder(results_dir, "results folder")
    recipe = config.get_recipe(recipe, **(overrides or {}))
    if all((results_dir / "runs" / run_name(layout, m, s) / "final.json").is_file() for s in seeds for m in modes):
        return
    labels = data.load(data_root, size=recipe.image_size, resize=recipe.resize).labels  # the runs' own cache
    pipeline.epoch_steps(len(data.stratified_split(labels, seeds[0])["train"]), recipe.batch_size)


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
