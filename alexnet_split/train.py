"""The training runner: one run folder per (layout, mode, recipe, seed), resumable.

A run folder holds ``config.json`` (what ran, where, with which versions), ``history.csv`` (one
row per finished epoch), ``state.json`` (the commit point: last complete epoch, its checkpoint,
the learning-rate schedule) and ``final.json`` (test top-1/top-5, best validation accuracy and
its epoch, wall time, images/s). Checkpoints live in ``ckpt/`` and are never committed.

Crash safety: an epoch counts once ``state.json`` names its checkpoint. Both are written to a
temporary file and renamed, so a run killed at any point (even SIGKILL) resumes from its last
complete epoch with no epoch lost or repeated; every random draw of the input pipeline is a
function of (seed, epoch, batch), and Dropout's seed state is part of the checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

from . import config, data, pipeline, spec

HISTORY_FIELDS = ["epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "lr", "seconds"]


class TrainingDiverged(RuntimeError):
    pass


def atomic_write(path: Path, text: str):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def history_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r[k]) for k in HISTORY_FIELDS})
    return buf.getvalue()


def _fmt(v):
    return repr(round(float(v), 6)) if isinstance(v, float) else v


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    accel = ""
    if keras.backend.backend() == "jax":
        import jax

        d = jax.devices()[0]
        accel = "" if d.platform == "cpu" else f"; {d.device_kind} ({d.platform})"
    return f"{cpu}, {os.cpu_count()} cores{accel}"


def _versions() -> dict:
    v = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    for mod in ("tensorflow", "jax"):
        if mod in sys.modules:
            v[mod] = sys.modules[mod].__version__
    return v


def _make_optimizer(recipe: config.Recipe):
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(recipe.learning_rate, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return keras.optimizers.Adam(recipe.learning_rate, weight_decay=recipe.weight_decay)


class _RunState(keras.callbacks.Callback):
    """Per epoch: keeps the pipeline at the training epoch, drops the lr on plateaus, checkpoints,
    and commits state.json; per batch: stops on a NaN loss."""

    def __init__(self, out: Path, state: dict, recipe: config.Recipe, batches, checkpoint_seconds: float = 0.0):
        super().__init__()
        self.out, self.state, self.recipe, self.batches = out, state, recipe, batches
        self.checkpoint_seconds = checkpoint_seconds
        self.diverged = None
        self._t0 = None
        self._last_commit = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        if self.batches.epoch != epoch:
            raise RuntimeError(f"input pipeline at epoch {self.batches.epoch}, training at epoch {epoch}")
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (len(self.state["history"]) + 1, batch + 1, float(loss))
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        # Move the pipeline on now, before Keras can open the next epoch's iterator; a resumed
        # run constructs it at its first epoch. Either way batch i of epoch e is the same.
        self.batches.set_epoch(epoch + 1)
        if self.diverged:
            return
        seconds = time.perf_counter() - self._t0
        s = self.state
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, "loss": logs["loss"], "accuracy": logs["accuracy"], "top5": logs["top5"],
               "val_loss": logs["val_loss"], "val_accuracy": logs["val_accuracy"], "val_top5": logs["val_top5"],
               "lr": lr, "seconds": seconds}
        row = {k: (float(v) if k != "epoch" else v) for k, v in row.items()}
        s["history"].append(row)
        s["train_seconds"] += seconds
        if row["val_accuracy"] > s["best_val_accuracy"]:
            s["best_val_accuracy"], s["best_epoch"], s["since_best"] = row["val_accuracy"], epoch + 1, 0
        else:
            s["since_best"] += 1
        if s["since_best"] >= self.recipe.lr_drop_patience and s["lr_drops"] < self.recipe.max_lr_drops:
            self.model.optimizer.learning_rate.assign(lr / 10.0)  # Section 5: divide by 10 on a plateau
            s["lr_drops"] += 1
            s["since_best"] = 0
        # On an accelerator an epoch of Flowers 17 is a fraction of a second and saving the
        # model takes longer: commit at most every checkpoint_seconds (and after the last epoch).
        # A kill loses the uncommitted epochs, which the deterministic pipeline replays exactly.
        if epoch + 1 < self.recipe.epochs and time.monotonic() - self._last_commit < self.checkpoint_seconds:
            return
        self._last_commit = time.monotonic()
        ckpt_dir = self.out / "ckpt"
        ckpt_dir.mkdir(exist_ok=True)
        name = f"epoch_{epoch + 1:03d}.keras"
        tmp = ckpt_dir / f".{name}.tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, ckpt_dir / name)
        previous = s.get("checkpoint")
        s["epoch"], s["checkpoint"] = epoch + 1, f"ckpt/{name}"
        s["seed_states"] = seed_states(self.model)
        write_json(self.out / "state.json", s)  # the commit point
        atomic_write(self.out / "history.csv", history_csv(s["history"]))
        if previous and previous != s["checkpoint"]:
            with contextlib.suppress(FileNotFoundError):
                (self.out / previous).unlink()


def _seed_variables(model):
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def seed_states(model) -> list:
    """Dropout's RNG states. Keras does not save them with the weights, so a resumed run would
    draw other dropout masks; they go into state.json instead (same model, same order)."""
    return [keras.ops.convert_to_numpy(v).tolist() for v in _seed_variables(model)]


def restore_seed_states(model, states: list):
    variables = _seed_variables(model)
    if len(variables) != len(states):
        raise ValueError(f"checkpoint has {len(variables)} dropout seed states, state.json {len(states)}")
    for v, value in zip(variables, states):
        v.assign(np.asarray(value, dtype=v.dtype))


def train(out, layout="paper", mode="towers", recipe="paper", seed=0, data_root=None, devices=None,
          overrides=None, deterministic=False, splits_mat=None, verbose=None, checkpoint_seconds=0.0) -> dict:
    """Run (or resume, or return the result of) one training run in folder `out`.

    The run commits (checkpoint + state.json) after an epoch once `checkpoint_seconds` have passed
    since its last commit, and after the last epoch; 0 commits every epoch.
    """
    out = Path(out)
    recipe = config.get_recipe(recipe, **(overrides or {})) if isinstance(recipe, str) else recipe
    arch = spec.get_layout(layout)
    crop = recipe.input_size or arch.input_shape[0]
    identity = {"layout": layout, "mode": mode, "seed": seed, "recipe": recipe.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    state = read_json(out / "state.json") if (out / "state.json").is_file() else None
    old = read_json(out / "config.json") if (out / "config.json").is_file() else {}
    if old:
        if {k: old.get(k) for k in identity} != identity:
            raise ValueError(f"{out} holds a different run ({ {k: old.get(k) for k in ('layout', 'mode', 'seed')} }, "
                             f"recipe {old.get('recipe', {}).get('name')!r}); choose another --out")
    if (out / "final.json").is_file():
        return read_json(out / "final.json")
    if state is not None and list(old.get("devices") or []) != list(devices or []):
        raise ValueError(f"{out} was placed on {old.get('devices') or 'one device'}; this process has "
                         f"{list(devices or []) or 'one device'}. Resume it with the same devices (the same "
                         "--cluster), or start a new --out")
    for stale in (out / "ckpt").glob(".*.tmp.keras"):  # a save cut short by a kill
        stale.unlink()

    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(recipe.precision)

    ds = data.load(data_root, size=recipe.image_size)
    split = data.official_split(ds, splits_mat) if splits_mat else data.stratified_split(ds.labels, seed)
    batches = pipeline.TrainBatches(ds.images[split["train"]], ds.labels[split["train"]], recipe.batch_size, crop,
                                    data.NUM_CLASSES, seed, augment=recipe.augment, pca_sigma=recipe.pca_lighting,
                                    epoch=state["epoch"] if state else 0)
    (val_x,) = pipeline.crops(ds.images[split["val"]], crop)
    val = (val_x.astype(np.float32), pipeline.one_hot(ds.labels[split["val"]], data.NUM_CLASSES))

    if state is None:
        model = _new_model(layout, mode, crop, devices, recipe)
        state = {"epoch": 0, "checkpoint": None, "history": [], "train_seconds": 0.0, "best_val_accuracy": -1.0,
                 "best_epoch": 0, "since_best": 0, "lr_drops": 0}
        write_json(out / "config.json", {
            **identity, "devices": list(devices or []), "backend": keras.backend.backend(), "versions": _versions(),
            "git_commit": git_commit(), "machine": machine(), "data_source": ds.source,
            "split": "official " + str(splits_mat) if splits_mat else f"stratified 40/20/20 per class, seed {seed}",
            "split_sizes": {k: int(len(v)) for k, v in split.items()}, "input_size": crop,
            "parameters": int(model.count_params()),
            "flops_per_image": int(sum(spec.layer_flops(arch, mode, 2, (crop, crop, 3), data.NUM_CLASSES).values())),
        })
    else:
        model = keras.models.load_model(out / state["checkpoint"])
        restore_seed_states(model, state["seed_states"])
        print(f"resuming {out} after epoch {state['epoch']}", file=sys.stderr)

    callback = _RunState(out, state, recipe, batches, checkpoint_seconds)
    if verbose is None:  # a live bar on a terminal, one line per epoch in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    if state["epoch"] < recipe.epochs:
        # shuffle=False: TrainBatches shuffles by (seed, epoch); Keras's own batch shuffle draws
        # from the process-global RNG, which a resumed process does not share.
        model.fit(batches, epochs=recipe.epochs, initial_epoch=state["epoch"], validation_data=val, shuffle=False,
                  validation_batch_size=max(recipe.batch_size, 64), callbacks=[callback], verbose=verbose)
    if callback.diverged:
        epoch, batch, loss = callback.diverged
        raise TrainingDiverged(
            f"{out}: the training loss became {loss} at epoch {epoch}, batch {batch}; stopped. The last complete "
            f"epoch ({state['epoch']}) is checkpointed in {out / (state['checkpoint'] or 'ckpt')}. Lower the learning "
            f"rate (recipe {recipe.name!r} uses {recipe.learning_rate}) or use float32.")

    test_probs = pipeline.predict_crops(model, ds.images[split["test"]], crop, ten=recipe.ten_crop)
    test_labels = ds.labels[split["test"]]
    n_train = len(split["train"])
    final = {
        "test_top1": pipeline.topk_accuracy(test_probs, test_labels, 1),
        "test_top5": pipeline.topk_accuracy(test_probs, test_labels, 5),
        "test_crops": 10 if recipe.ten_crop else 1,
        "best_val_accuracy": state["best_val_accuracy"], "best_epoch": state["best_epoch"],
        "epochs": state["epoch"], "train_seconds": round(state["train_seconds"], 3),
        "train_images_per_second": round(n_train * state["epoch"] / max(state["train_seconds"], 1e-9), 3),
    }
    write_json(out / "final.json", final)
    return final


def _new_model(layout, mode, crop, devices, recipe):
    from .models import build_model

    model = build_model(layout, mode, data.NUM_CLASSES, input_shape=(crop, crop, 3), devices=devices,
                        bias_fill=recipe.bias_fill)
    model.compile(_make_optimizer(recipe), "categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5")])
    return model
