"""The training runner: one run folder per (layout, mode, recipe, seed), resumable.

A run trains in validation intervals: ``eval_every`` steps, or one epoch for recipes measured
in epochs. A run folder holds ``config.json`` (what ran, where, with which versions and which
initialisation), ``history.csv`` (one row per interval, with its step), ``state.json`` (the
commit point: last complete interval, its checkpoint, the learning-rate schedule) and
``final.json`` (test top-1/top-5, steps run, the step validation left chance, the lr-drop steps,
best validation accuracy and its step, wall time, images/s). Checkpoints live in ``ckpt/`` and
are never committed.

Crash safety: an interval counts once ``state.json`` names its checkpoint. Both are written to a
temporary file and renamed, so a run killed at any point (even SIGKILL) resumes from its last
complete interval with none lost or repeated; every random draw of the input pipeline is a
function of (seed, data epoch, batch), and Dropout's seed state is part of the checkpoint.
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
from .models import build_model, init_summary
from .optimizers import PaperSGD
from .schedule import Plateau

HISTORY_FIELDS = ["step", "epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "lr", "seconds"]


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
    if recipe.optimizer == "sgd":  # Section 5's update: the decay goes through the momentum
        return PaperSGD(recipe.learning_rate, momentum=recipe.momentum, l2=recipe.weight_decay or 0.0)
    return keras.optimizers.Adam(recipe.learning_rate, weight_decay=recipe.weight_decay)


class _RunState(keras.callbacks.Callback):
    """Per validation interval (a Keras "epoch"): keeps the pipeline at the training interval,
    applies the plateau schedule, checkpoints and commits state.json; per batch: stops on a NaN
    loss."""

    def __init__(self, out: Path, state: dict, recipe: config.Recipe, batches, n_intervals: int,
                 checkpoint_seconds: float = 0.0):
        super().__init__()
        self.out, self.state, self.recipe, self.batches = out, state, recipe, batches
        self.n_intervals, self.checkpoint_seconds = n_intervals, checkpoint_seconds
        self.schedule = Plateau.from_dict(state["schedule"])
        self.diverged = None
        self._t0 = None
        self._last_commit = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        if self.batches.interval != epoch:
            raise RuntimeError(f"input pipeline at interval {self.batches.interval}, training at interval {epoch}")
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (self.state["step"] + batch + 1, float(loss))
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        # Move the pipeline on now, before Keras can open the next interval's iterator; a resumed
        # run constructs it at its first interval. Either way step s sees the same batch.
        self.batches.set_interval(epoch + 1)
        if self.diverged:
            return
        seconds = time.perf_counter() - self._t0
        s = self.state
        step = (epoch + 1) * self.batches.interval_steps
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"step": step, "epoch": round(step / self.batches.batches_per_epoch, 3), "loss": logs["loss"],
               "accuracy": logs["accuracy"], "top5": logs["top5"], "val_loss": logs["val_loss"],
               "val_accuracy": logs["val_accuracy"], "val_top5": logs["val_top5"], "lr": lr, "seconds": seconds}
        row = {k: (float(v) if k != "step" else v) for k, v in row.items()}
        s["history"].append(row)
        s["train_seconds"] += seconds
        s["interval"], s["step"] = epoch + 1, step
        action = self.schedule.update(step, row["val_accuracy"])
        if action == "drop":
            self.model.optimizer.learning_rate.assign(lr / 10.0)  # Section 5: divide by 10 on a plateau
        elif action == "stop":
            s["stopped"] = f"plateau after {len(self.schedule.drop_steps)} lr drops"
            self.model.stop_training = True
        s["schedule"] = self.schedule.to_dict()
        # On an accelerator an interval is a fraction of a second and saving the model takes
        # longer: commit at most every checkpoint_seconds (and after the last interval). A kill
        # loses the uncommitted intervals, which the deterministic pipeline replays exactly.
        last = epoch + 1 == self.n_intervals or s["stopped"]
        if not last and time.monotonic() - self._last_commit < self.checkpoint_seconds:
            return
        self._last_commit = time.monotonic()
        ckpt_dir = self.out / "ckpt"
        ckpt_dir.mkdir(exist_ok=True)
        name = f"step_{step:06d}.keras"
        tmp = ckpt_dir / f".{name}.tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, ckpt_dir / name)
        previous = s.get("checkpoint")
        s["checkpoint"] = f"ckpt/{name}"
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

    The run commits (checkpoint + state.json) after a validation interval once
    `checkpoint_seconds` have passed since its last commit, and after the last one; 0 commits
    after every interval.
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
                                    interval_steps=recipe.eval_every, interval=state["interval"] if state else 0)
    n_intervals = recipe.steps // recipe.eval_every if recipe.steps else recipe.epochs
    (val_x,) = pipeline.crops(ds.images[split["val"]], crop)
    val = (val_x.astype(np.float32), pipeline.one_hot(ds.labels[split["val"]], data.NUM_CLASSES))

    if state is None:
        model = _new_model(layout, mode, crop, devices, recipe)
        schedule = Plateau(recipe.lr_drop_patience, recipe.max_lr_drops, data.NUM_CLASSES)
        state = {"interval": 0, "step": 0, "checkpoint": None, "history": [], "train_seconds": 0.0,
                 "schedule": schedule.to_dict(), "stopped": None}
        write_json(out / "config.json", {
            **identity, "devices": list(devices or []), "backend": keras.backend.backend(), "versions": _versions(),
            "git_commit": git_commit(), "machine": machine(), "data_source": ds.source,
            "split": "official " + str(splits_mat) if splits_mat else f"stratified 40/20/20 per class, seed {seed}",
            "split_sizes": {k: int(len(v)) for k, v in split.items()}, "input_size": crop,
            "steps_per_epoch": batches.batches_per_epoch, "init": init_summary(layout, recipe.bias_fill),
            "parameters": int(model.count_params()),
            "flops_per_image": int(sum(spec.layer_flops(arch, mode, 2, (crop, crop, 3), data.NUM_CLASSES).values())),
        })
    else:
        model = keras.models.load_model(out / state["checkpoint"])
        restore_seed_states(model, state["seed_states"])
        print(f"resuming {out} after step {state['step']} (interval {state['interval']} of {n_intervals})",
              file=sys.stderr)

    callback = _RunState(out, state, recipe, batches, n_intervals, checkpoint_seconds)
    if verbose is None:  # a live bar on a terminal, one line per interval in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    if state["interval"] < n_intervals and not state["stopped"]:
        # shuffle=False: TrainBatches shuffles by (seed, epoch); Keras's own batch shuffle draws
        # from the process-global RNG, which a resumed process does not share.
        model.fit(batches, epochs=n_intervals, initial_epoch=state["interval"], validation_data=val, shuffle=False,
                  validation_batch_size=max(recipe.batch_size, 64), callbacks=[callback], verbose=verbose)
    if callback.diverged:
        step, loss = callback.diverged
        raise TrainingDiverged(
            f"{out}: the training loss became {loss} at step {step}; stopped. The last complete interval "
            f"(step {state['step']}) is checkpointed in {out / (state['checkpoint'] or 'ckpt')}. Lower the learning "
            f"rate (recipe {recipe.name!r} uses {recipe.learning_rate}) or use float32.")

    test_probs = pipeline.predict_crops(model, ds.images[split["test"]], crop, ten=recipe.ten_crop)
    test_labels = ds.labels[split["test"]]
    schedule = callback.schedule
    per_epoch = batches.batches_per_epoch
    final = {
        "test_top1": pipeline.topk_accuracy(test_probs, test_labels, 1),
        "test_top5": pipeline.topk_accuracy(test_probs, test_labels, 5),
        "test_crops": 10 if recipe.ten_crop else 1,
        "best_val_accuracy": schedule.best, "best_step": schedule.best_step,
        "best_epoch": round(schedule.best_step / per_epoch, 3),
        "steps": state["step"], "epochs": round(state["step"] / per_epoch, 3),
        "steps_to_leave_chance": schedule.left_chance_step, "lr_drop_steps": list(schedule.drop_steps),
        "stopped_by": state["stopped"] or ("step cap" if recipe.steps else "epochs"),
        "train_seconds": round(state["train_seconds"], 3),
        "train_images_per_second": round(_images_seen(state["step"], per_epoch, len(split["train"]),
                                                      recipe.batch_size) / max(state["train_seconds"], 1e-9), 3),
    }
    write_json(out / "final.json", final)
    return final


def _images_seen(steps, per_epoch, n_train, batch_size) -> int:
    epochs, rest = divmod(steps, per_epoch)
    return epochs * n_train + min(rest * batch_size, n_train)


def _new_model(layout, mode, crop, devices, recipe):
    model = build_model(layout, mode, data.NUM_CLASSES, input_shape=(crop, crop, 3), devices=devices,
                        bias_fill=recipe.bias_fill)
    model.compile(_make_optimizer(recipe), "categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5")])
    return model
