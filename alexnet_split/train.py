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
import importlib.util
import io
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np

from . import config, data, pipeline, spec
from .models import build_model, init_summary
from .optimizers import PaperSGD
from .runlog import atomic_write, git_commit, machine, read_json, remove_partial_files, replacing, versions, write_json
from .schedule import Plateau

HISTORY_FIELDS = ["step", "epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "lr", "seconds"]


class TrainingDiverged(RuntimeError):
    pass


def history_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r[k]) for k in HISTORY_FIELDS})
    return buf.getvalue()


def _fmt(v):
    return repr(round(float(v), 6)) if isinstance(v, float) else v


def _make_optimizer(recipe: config.Recipe):
    if recipe.optimizer == "sgd":  # Section 5's update: the decay goes through the momentum
        return PaperSGD(recipe.learning_rate, momentum=recipe.momentum, l2=recipe.weight_decay or 0.0)
    return keras.optimizers.Adam(recipe.learning_rate, weight_decay=recipe.weight_decay)


class _Run:
    """A run's bookkeeping, shared by both engines: one history row and one schedule decision
    per validation interval, and the commits (checkpoint, then state.json, then history.csv)."""

    def __init__(self, out: Path, state: dict, n_intervals: int, interval_steps: int, steps_per_epoch: int,
                 checkpoint_seconds: float = 0.0):
        self.out, self.state, self.n_intervals = out, state, n_intervals
        self.interval_steps, self.steps_per_epoch = interval_steps, steps_per_epoch
        self.checkpoint_seconds = checkpoint_seconds
        self.schedule = Plateau.from_dict(state["schedule"])
        self._last_commit = time.monotonic()
        self.tensorboard = None  # a _TensorBoard, set by train()

    @property
    def done(self) -> bool:
        return self.state["interval"] >= self.n_intervals or bool(self.state["stopped"])

    def record(self, metrics: dict, lr: float, seconds: float) -> str | None:
        """Log the interval that just ended; returns the schedule's ``"drop"``/``"stop"``/None."""
        s = self.state
        interval = s["interval"] + 1
        step = interval * self.interval_steps
        row = {"step": step, "epoch": round(step / self.steps_per_epoch, 3),
               **{k: float(metrics[k]) for k in HISTORY_FIELDS[2:-2]}, "lr": float(lr), "seconds": seconds}
        s["history"].append(row)
        s["train_seconds"] += seconds
        s["interval"], s["step"] = interval, step
        if self.tensorboard is not None:  # x axis: the interval, as Keras fit's epochs
            self.tensorboard.on_epoch_end(interval - 1, {**{k: row[k] for k in HISTORY_FIELDS[2:-2]},
                                                         "learning_rate": row["lr"]})
        action = self.schedule.update(step, row["val_accuracy"])
        if action == "stop":
            s["stopped"] = f"plateau after {len(self.schedule.drop_steps)} lr drops"
        s["schedule"] = self.schedule.to_dict()
        return action

    def commit_due(self) -> bool:
        # On an accelerator an interval is a fraction of a second and saving the model takes
        # longer: commit at most every checkpoint_seconds (and after the last interval). A kill
        # loses the uncommitted intervals, which the deterministic pipelines replay exactly.
        return self.done or time.monotonic() - self._last_commit >= self.checkpoint_seconds

    def commit(self, model, checkpoint=True):
        """Checkpoint, then state.json (the commit point), then history.csv. `checkpoint=False`
        (a run about to write its final.json) commits the logs only; such a state.json, having no
        checkpoint to resume from, restarts the run if final.json never came."""
        self._last_commit = time.monotonic()
        s = self.state
        previous = s.get("checkpoint")
        if checkpoint:
            ckpt_dir = self.out / "ckpt"
            ckpt_dir.mkdir(exist_ok=True)
            name = f"step_{s['step']:06d}.keras"
            with replacing(ckpt_dir / name) as tmp:
                model.save(tmp)
            s["checkpoint"], s["seed_states"] = f"ckpt/{name}", seed_states(model)
        else:
            s["checkpoint"], s["seed_states"] = None, []
        write_json(self.out / "state.json", s)  # the commit point
        atomic_write(self.out / "history.csv", history_csv(s["history"]))
        if previous and previous != s["checkpoint"]:
            with contextlib.suppress(FileNotFoundError):
                (self.out / previous).unlink()


class _TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard writer (train/ and validation/ scalars per validation interval) fed
    by the run's bookkeeping, so both engines write the same curves."""

    def _collect_learning_rate(self, logs):
        return logs  # the schedule's rate is in logs; the device engine's optimizer object lags


class _FitCallback(keras.callbacks.Callback):
    """The Keras-fit engine's hooks: a Keras "epoch" is one validation interval. Keeps the
    pipeline at the training interval, applies the schedule, commits; stops on a NaN loss."""

    def __init__(self, run: _Run, batches):
        super().__init__()
        self.run, self.batches = run, batches
        self.diverged = None
        self._t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.batches.interval != epoch:
            raise RuntimeError(f"input pipeline at interval {self.batches.interval}, training at interval {epoch}")
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (self.run.state["step"] + batch + 1, float(loss))
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        # Move the pipeline on now, before Keras can open the next interval's iterator; a resumed
        # run constructs it at its first interval. Either way step s sees the same batch.
        self.batches.set_interval(epoch + 1)
        if self.diverged:
            return
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        action = self.run.record(logs, lr, time.perf_counter() - self._t0)
        if action == "drop":
            self.model.optimizer.learning_rate.assign(lr / 10.0)  # Section 5: divide by 10 on a plateau
        elif action == "stop":
            self.model.stop_training = True
        if self.run.commit_due():
            self.run.commit(self.model)


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


def resolve_engine(engine: str) -> str:
    """``fit``: Keras ``fit`` fed by the NumPy pipeline (every backend; the TensorFlow path that
    places the towers on their devices). ``device``: :mod:`alexnet_split.fastpath`, the jitted
    JAX loop with the data on the accelerator. ``auto``: ``device`` under JAX, else ``fit``."""
    if engine not in config.ENGINES:
        raise ValueError(f"engine must be one of {config.ENGINES}, got {engine!r}")
    if engine == "auto":
        return "device" if keras.backend.backend() == "jax" else "fit"
    if engine == "device" and keras.backend.backend() != "jax":
        raise ValueError(f"engine 'device' needs KERAS_BACKEND=jax; the backend is {keras.backend.backend()!r}")
    return engine


def train(out, layout="paper", mode="towers", recipe="paper", seed=0, data_root=None, devices=None,
          overrides=None, deterministic=False, splits_mat=None, verbose=None, checkpoint_seconds=0.0,
          engine="auto", tensorboard=None) -> dict:
    """Run (or resume, or return the result of) one training run in folder `out`.

    The run commits (checkpoint + state.json) after a validation interval once
    `checkpoint_seconds` have passed since its last commit, and after the last one; 0 commits
    after every interval. `engine`: see :func:`resolve_engine`. `tensorboard`: a folder for
    TensorBoard's training and validation curves of this run.
    """
    out = Path(out)
    recipe = config.get_recipe(recipe, **(overrides or {})) if isinstance(recipe, str) else recipe
    engine = resolve_engine(engine)
    arch = spec.get_layout(layout)
    crop = recipe.input_size or arch.input_shape[0]
    identity = {"layout": layout, "mode": mode, "seed": seed, "recipe": recipe.to_dict(), "engine": engine}
    out.mkdir(parents=True, exist_ok=True)
    state = read_json(out / "state.json") if (out / "state.json").is_file() else None
    if state is not None and not state.get("checkpoint"):  # logs without a checkpoint: start again
        state = None
    old = read_json(out / "config.json") if (out / "config.json").is_file() else {}
    # A finished run of the same layout, mode, seed and recipe name is its result, whatever code
    # version wrote it (committed runs predate fields added since); an unfinished one resumes
    # only with everything equal.
    same_run = {k: old.get(k) for k in ("layout", "mode", "seed")} == {"layout": layout, "mode": mode, "seed": seed} \
        and old.get("recipe", {}).get("name") == recipe.name
    if same_run and (out / "final.json").is_file():
        return read_json(out / "final.json")
    if old and {k: old.get(k) for k in identity} != identity:
        raise ValueError(f"{out} holds a different run ({ {k: old.get(k) for k in ('layout', 'mode', 'seed')} }, "
                         f"recipe {old.get('recipe', {}).get('name')!r}, engine {old.get('engine')!r}); "
                         "choose another --out")
    if state is not None and list(old.get("devices") or []) != list(devices or []):
        raise ValueError(f"{out} was placed on {old.get('devices') or 'one device'}; this process has "
                         f"{list(devices or []) or 'one device'}. Resume it with the same devices (the same "
                         "--cluster), or start a new --out")
    remove_partial_files(out, out / "ckpt")  # writes cut short by a kill

    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(recipe.precision)

    ds = data.load(data_root, size=recipe.image_size)
    split = data.official_split(ds, splits_mat) if splits_mat else data.stratified_split(ds.labels, seed)
    train_x, train_y = ds.images[split["train"]], ds.labels[split["train"]]
    (val_x,) = pipeline.crops(ds.images[split["val"]], crop)
    val_y = ds.labels[split["val"]]
    if engine == "fit":
        batches = pipeline.TrainBatches(train_x, train_y, recipe.batch_size, crop, data.NUM_CLASSES, seed,
                                        augment=recipe.augment, pca_sigma=recipe.pca_lighting,
                                        interval_steps=recipe.eval_every, interval=state["interval"] if state else 0)
        steps_per_epoch, interval_steps = batches.batches_per_epoch, batches.interval_steps
    else:  # fixed-size batches: an epoch is the full batches of a fresh permutation
        steps_per_epoch = len(train_y) // recipe.batch_size
        if steps_per_epoch < 1:
            raise ValueError(f"batch_size={recipe.batch_size} is larger than the {len(train_y)} training images")
        interval_steps = recipe.eval_every or steps_per_epoch
    n_intervals = recipe.steps // recipe.eval_every if recipe.steps else recipe.epochs

    if state is None:
        model = _new_model(layout, mode, crop, devices, recipe)
        schedule = Plateau(recipe.lr_drop_patience, recipe.max_lr_drops, data.NUM_CLASSES)
        state = {"interval": 0, "step": 0, "checkpoint": None, "history": [], "train_seconds": 0.0,
                 "schedule": schedule.to_dict(), "stopped": None}
        write_json(out / "config.json", {
            **identity, "devices": list(devices or []), "backend": keras.backend.backend(), "versions": versions(),
            "git_commit": git_commit(), "machine": machine(), "data_source": ds.source,
            "split": "official " + str(splits_mat) if splits_mat else f"stratified 40/20/20 per class, seed {seed}",
            "split_sizes": {k: int(len(v)) for k, v in split.items()}, "input_size": crop,
            "steps_per_epoch": steps_per_epoch, "init": init_summary(layout, recipe.bias_fill, recipe.init),
            "parameters": int(model.count_params()),
            "flops_per_image": int(sum(spec.layer_flops(arch, mode, 2, (crop, crop, 3), data.NUM_CLASSES).values())),
        })
    else:
        model = keras.models.load_model(out / state["checkpoint"])
        restore_seed_states(model, state["seed_states"])
        print(f"resuming {out} after step {state['step']} (interval {state['interval']} of {n_intervals})",
              file=sys.stderr)

    run = _Run(out, state, n_intervals, interval_steps, steps_per_epoch, checkpoint_seconds)
    if tensorboard:

        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError(f"--tensorboard {tensorboard}: the tensorboard package is not installed "
                             "(pip install tensorboard)")
        run.tensorboard = _TensorBoard(str(tensorboard))
        run.tensorboard.set_model(model)
    if verbose is None:  # a live bar on a terminal, one line per interval in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    predict = None
    if engine == "fit":
        diverged = _fit(model, run, batches, (val_x, val_y), recipe, verbose)
    else:
        from . import fastpath

        diverged, predict = fastpath.train(model, run, train_x, train_y, val_x, val_y, recipe, crop, seed, verbose)
    if run.tensorboard is not None:
        run.tensorboard.on_train_end()
    if diverged:
        step, loss = diverged
        raise TrainingDiverged(
            f"{out}: the training loss became {loss} at step {step}; stopped. The last complete interval "
            f"(step {state['step']}) is checkpointed in {out / (state['checkpoint'] or 'ckpt')}. Lower the learning "
            f"rate (recipe {recipe.name!r} uses {recipe.learning_rate}) or use float32.")

    save_conv1(model, out / "conv1.npz")
    # The device engine predicts with its compiled code: Keras's predict compiles once per model object
    test_images = ds.images[split["test"]]
    test_probs = (predict(test_images, recipe.ten_crop) if predict else
                  pipeline.predict_crops(model, test_images, crop, ten=recipe.ten_crop))
    test_labels = ds.labels[split["test"]]
    schedule = run.schedule
    final = {
        "test_top1": pipeline.topk_accuracy(test_probs, test_labels, 1),
        "test_top5": pipeline.topk_accuracy(test_probs, test_labels, 5),
        "test_crops": 10 if recipe.ten_crop else 1,
        "best_val_accuracy": schedule.best, "best_step": schedule.best_step,
        "best_epoch": round(schedule.best_step / steps_per_epoch, 3),
        "steps": state["step"], "epochs": round(state["step"] / steps_per_epoch, 3),
        "steps_to_leave_chance": schedule.left_chance_step, "lr_drop_steps": list(schedule.drop_steps),
        "stopped_by": state["stopped"] or ("step cap" if recipe.steps else "epochs"),
        "train_seconds": round(state["train_seconds"], 3),
        "train_images_per_second": round(_images_seen(engine, state["step"], steps_per_epoch, len(split["train"]),
                                                      recipe.batch_size) / max(state["train_seconds"], 1e-9), 3),
    }
    write_json(out / "final.json", final)
    return final


def format_final(out, final: dict) -> str:
    """One line from a run's final.json, as `alexnet-split train` prints it."""
    return (f"{out}: test top-1 {final['test_top1']:.4f}, top-5 {final['test_top5']:.4f}, best val "
            f"{final['best_val_accuracy']:.4f} at step {final['best_step']} of {final['steps']}, "
            f"{final['train_images_per_second']:.1f} train images/s")


def resume_hint(out, message: str) -> str:
    """`message` (what stopped the run) and what is kept in run folder `out` for a resume."""
    state = read_json(Path(out) / "state.json") if (Path(out) / "state.json").is_file() else None
    kept = (f"the last checkpoint ({state['checkpoint']}, step {state['step']}) is intact in {out}"
            if state else f"no validation interval had finished, so {out} holds no checkpoint yet")
    return f"{message}; {kept}. Restart the worker and rerun this command to resume."


def _fit(model, run: _Run, batches, val, recipe, verbose):
    """The Keras-fit engine; returns (step, loss) if the loss became NaN, else None."""
    callback = _FitCallback(run, batches)
    if not run.done:
        # shuffle=False: TrainBatches shuffles by (seed, epoch); Keras's own batch shuffle draws
        # from the process-global RNG, which a resumed process does not share.
        val = (val[0].astype(np.float32), pipeline.one_hot(val[1], data.NUM_CLASSES))
        model.fit(batches, epochs=run.n_intervals, initial_epoch=run.state["interval"], validation_data=val,
                  shuffle=False, validation_batch_size=max(recipe.batch_size, 64), callbacks=[callback],
                  verbose=verbose)
    return callback.diverged


def save_conv1(model, path: Path):
    """conv1's kernels of every tower, float16 (~70 KB): what a study of the paper's Figure 3
    needs from a run, without its checkpoint."""
    kernels = {layer.name: keras.ops.convert_to_numpy(layer.conv.kernel).astype(np.float16)
               for layer in model.layers if layer.name.endswith("_conv1")}
    buf = io.BytesIO()
    np.savez(buf, **kernels)
    atomic_write(path, buf.getvalue())


def _images_seen(engine, steps, per_epoch, n_train, batch_size) -> int:
    if engine == "device":  # fixed-size batches
        return steps * batch_size
    epochs, rest = divmod(steps, per_epoch)
    return epochs * n_train + min(rest * batch_size, n_train)


def _new_model(layout, mode, crop, devices, recipe):
    model = build_model(layout, mode, data.NUM_CLASSES, input_shape=(crop, crop, 3), devices=devices,
                        bias_fill=recipe.bias_fill, init=recipe.init)
    model.compile(_make_optimizer(recipe), "categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5")])
    return model
