"""The training runner: one run folder per (layout, mode, recipe, seed), resumable.

A run trains in validation intervals: ``eval_every`` steps, or one epoch for recipes measured
in epochs. A run folder holds ``config.json`` (what ran, where, with which versions and which
initialisation), ``history.csv`` (one row per interval, with its step; deterministic: the same
run twice writes the same bytes), ``timing.csv`` (each interval's wall-clock seconds), ``state.json`` (the
commit point: last complete interval, its checkpoint, the learning-rate schedule) and
``final.json`` (test top-1/top-5 of the recipe's crops and of the centre crop, steps run, the step
validation left chance, the lr-drop steps, why it stopped, best validation accuracy and its step,
the test top-1/top-5 of that step's weights, wall time, images/s). Checkpoints live in ``ckpt/``,
are never committed, and go when the run finishes.

Two test figures: of the last weights, and of the weights of the best validation accuracy
(``test_top1_best_val``), which the run keeps in memory as it trains. Model selection reads the
validation split only; the test split is read once per figure, at the end.

Both engines train fc8's logits with the cross-entropy from a stable log-softmax, on the batches
of :class:`alexnet_split.pipeline.BatchPlan`: the same seed is the same experiment on either.

Crash safety: an interval counts once ``state.json`` names its checkpoint. Both are written to a
temporary file and renamed, so a run killed at any point (even SIGKILL) resumes from its last
complete interval with none lost or repeated; every random draw of the input pipeline is a
function of (seed, step), and Dropout's seed state is part of the checkpoint.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import time
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from . import config, data, pipeline, spec
from .models import build_model, init_summary, tower_blocks, with_softmax
from .optimizers import PaperSGD
from .runlog import (
    atomic_write,
    check_folder,
    git_commit,
    machine,
    read_json,
    remove_partial_files,
    replacing,
    versions,
    write_json,
)
from .schedule import Plateau
from .tables import csv_text

METRIC_FIELDS = ["loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5"]
# history.csv holds only what the run computes, so that two identical runs write identical files;
# the wall clock goes to timing.csv (run folders written before that keep a seconds column here,
# which readers ignore)
HISTORY_FIELDS = ["step", "epoch", *METRIC_FIELDS, "lr"]
TIMING_FIELDS = ["step", "seconds"]


class TrainingDiverged(RuntimeError):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message names the step a rerun of the same command resumes from."""


def history_csv(rows: list[dict]) -> str:
    return csv_text(HISTORY_FIELDS, [{k: _fmt(r[k]) for k in HISTORY_FIELDS} for r in rows])


def timing_csv(rows: list[dict]) -> str:
    return csv_text(TIMING_FIELDS, [{k: _fmt(r[k]) for k in TIMING_FIELDS} for r in rows])


def _fmt(v):
    return repr(round(float(v), 6)) if isinstance(v, float) else v


def _make_optimizer(recipe: config.Recipe):
    if recipe.optimizer == "sgd":  # Section 5's update: the decay goes through the momentum
        return PaperSGD(recipe.learning_rate, momentum=recipe.momentum, l2=recipe.weight_decay or 0.0)
    return keras.optimizers.Adam(recipe.learning_rate, weight_decay=recipe.weight_decay)


class IntervalEnd(NamedTuple):
    """What :meth:`Run.end_interval` tells an engine to do before the next interval."""

    lr: float  # the learning rate the next interval trains with (Section 5: /10 on a plateau)
    stop: bool  # the schedule ended the run (its last plateau, or dead at chance)
    commit: bool  # checkpoint now (:meth:`Run.commit`)


class Run:
    """A run's bookkeeping, shared by both engines: one history row, one schedule decision and the
    best-validation weights per validation interval (:meth:`end_interval`, the engines' one call
    after each validation), and the commits (checkpoint, then state.json, then history.csv)."""

    def __init__(self, out: Path, state: dict, n_intervals: int, interval_steps: int, steps_per_epoch: int,
                 checkpoint_seconds: float = 0.0):
        self.out, self.state, self.n_intervals = out, state, n_intervals
        self.interval_steps, self.steps_per_epoch = interval_steps, steps_per_epoch
        self.checkpoint_seconds = checkpoint_seconds
        self.schedule = Plateau.from_dict(state["schedule"])
        self._last_commit = time.monotonic()
        self.tensorboard = None  # a _TensorBoard, set by train()
        self.keep_checkpoints = False  # set by train(): keep every checkpoint after the run ends
        # The best-validation weights (trainable then non-trainable values), held in memory; they
        # reach the disk only inside a resumable checkpoint (ckpt/, deleted when the run ends).
        self.best_weights, self.best_weights_step = None, None
        if state.get("best_weights"):
            with np.load(out / state["best_weights"]) as z:
                self.best_weights = [z[f"arr_{i}"] for i in range(len(z.files))]
            self.best_weights_step = state["best_weights_step"]

    @property
    def done(self) -> bool:
        return self.state["interval"] >= self.n_intervals or bool(self.state["stopped"])

    def end_interval(self, metrics: dict, lr: float, seconds: float, weights) -> IntervalEnd:
        """The contract between an engine and the run, called once after each validation interval:
        `metrics` (training means and validation figures), the learning rate it trained with, its
        wall-clock seconds, and ``weights()`` (the validated trainable then non-trainable values).
        Records the history row, applies the schedule (the only place the learning rate changes)
        and keeps the weights when their validation is the best so far."""
        action = self.record(metrics, lr, seconds)
        self.keep_if_best(weights)
        return IntervalEnd(lr=lr / 10.0 if action == "drop" else lr, stop=action == "stop", commit=self.commit_due())

    def record(self, metrics: dict, lr: float, seconds: float) -> str | None:
        """Log the interval that just ended; returns the schedule's ``"drop"``/``"stop"``/None."""
        s = self.state
        interval = s["interval"] + 1
        step = interval * self.interval_steps
        row = {"step": step, "epoch": round(step / self.steps_per_epoch, 3),
               **{k: float(metrics[k]) for k in METRIC_FIELDS}, "lr": float(lr), "seconds": seconds}
        s["history"].append(row)
        s["train_seconds"] += seconds
        s["interval"], s["step"] = interval, step
        if self.tensorboard is not None:  # x axis: the interval, as Keras fit's epochs
            self.tensorboard.on_epoch_end(interval - 1, {**{k: row[k] for k in METRIC_FIELDS},
                                                         "learning_rate": row["lr"]})
        action = self.schedule.update(step, row["val_accuracy"])
        if action == "stop":
            s["stopped"] = self.schedule.stop_reason()
        s["schedule"] = self.schedule.to_dict()
        return action

    def keep_if_best(self, weights):
        """Call after :meth:`record`: when the interval just recorded has the best validation
        accuracy so far (the schedule's rule: strictly better, validation split only), keep
        ``weights()`` (the model's trainable then non-trainable values, arrays that later training
        does not change) as the run's best-validation weights."""
        if self.schedule.best_step == self.state["step"]:
            self.best_weights, self.best_weights_step = list(weights()), self.state["step"]

    def commit_due(self) -> bool:
        # On an accelerator an interval is a fraction of a second and saving the model takes
        # longer: commit at most every checkpoint_seconds (and after the last interval). A kill
        # loses the uncommitted intervals, which the deterministic pipelines replay exactly.
        return self.done or time.monotonic() - self._last_commit >= self.checkpoint_seconds

    def commit(self, model, checkpoint=True):
        """Checkpoint, then state.json (the commit point), then history.csv and timing.csv (both
        rewritten from state.json, so a kill between them heals at the next commit). `checkpoint=False`
        (a run about to write its final.json) commits the logs only; such a state.json, having no
        checkpoint to resume from, restarts the run if final.json never came."""
        self._last_commit = time.monotonic()
        s = self.state
        previous = [s.get("checkpoint"), s.get("best_weights")]
        ckpt_dir = self.out / "ckpt"
        if checkpoint:
            name = f"step_{s['step']:06d}.keras"
            with replacing(ckpt_dir / name) as tmp:
                model.save(tmp)
            s["checkpoint"], s["seed_states"] = f"ckpt/{name}", seed_states(model)
            s["best_weights"], s["best_weights_step"] = self._save_best_weights(ckpt_dir, s.get("best_weights"))
        else:
            s["checkpoint"], s["seed_states"], s["best_weights"] = None, [], None
        write_json(self.out / "state.json", s)  # the commit point
        atomic_write(self.out / "history.csv", history_csv(s["history"]))
        atomic_write(self.out / "timing.csv", timing_csv(s["history"]))
        if not self.keep_checkpoints:
            for old in previous:
                if old and old not in (s["checkpoint"], s["best_weights"]):
                    with contextlib.suppress(FileNotFoundError):
                        (self.out / old).unlink()
            if not checkpoint:  # the run is over: its checkpoints have gone, so has their folder
                with contextlib.suppress(FileNotFoundError, OSError):
                    ckpt_dir.rmdir()

    def _save_best_weights(self, ckpt_dir: Path, saved: str | None):
        """(file, step) of the best-validation weights beside a checkpoint, written only when
        they changed since the last checkpoint, so that a resumed run tests the same weights."""
        if self.best_weights is None:
            return None, None
        name = f"ckpt/best_step_{self.best_weights_step:06d}.npz"
        if saved != name:
            with replacing(self.out / name) as tmp, open(tmp, "wb") as f:
                np.savez(f, *[np.asarray(w) for w in self.best_weights])
        return name, self.best_weights_step


class _TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard writer (train/ and validation/ scalars per validation interval) fed
    by the run's bookkeeping, so both engines write the same curves."""

    def _collect_learning_rate(self, logs):
        return logs  # the schedule's rate is in logs; the device engine's optimizer object lags


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
    for v, value in zip(variables, states, strict=True):
        v.assign(np.asarray(value, dtype=v.dtype))


def resolve_engine(engine: str) -> str:
    """``fit``: :mod:`alexnet_split.engine_fit`, Keras ``fit`` fed by the NumPy pipeline (every
    backend; the TensorFlow path that places the towers on their devices). ``device``:
    :mod:`alexnet_split.engine_device`, the jitted JAX loop with the data on the accelerator.
    ``auto``: ``device`` under JAX, else ``fit``."""
    if engine not in config.ENGINES:
        raise ValueError(f"engine must be one of {config.ENGINES}, got {engine!r}")
    if engine == "auto":
        return "device" if keras.backend.backend() == "jax" else "fit"
    if engine == "device" and keras.backend.backend() != "jax":
        raise ValueError(f"engine 'device' needs KERAS_BACKEND=jax; the backend is {keras.backend.backend()!r}")
    return engine


def train(out, layout="paper", mode="towers", recipe="paper", seed=0, data_root=None, devices=None,
          overrides=None, deterministic=False, splits_mat=None, verbose=None, checkpoint_seconds=0.0,
          engine="auto", tensorboard=None, save_model=False, keep_checkpoints=False) -> dict:
    """Run (or resume, or return the result of) one training run in folder `out`.

    The run commits (checkpoint + state.json) after a validation interval once
    `checkpoint_seconds` have passed since its last commit; the last interval commits the logs
    only. `engine`: see :func:`resolve_engine`. `tensorboard`: a folder for TensorBoard's
    training and validation curves of this run. `save_model`: also write ``model.keras``, the
    trained network with its softmax output. `keep_checkpoints`: keep every interval's checkpoint
    in ``ckpt/`` (by default a finished run keeps none). Ctrl-C raises :class:`Interrupted`;
    nothing is written before the recipe, the data and the model have been checked.
    """
    out = Path(out)
    recipe = config.get_recipe(recipe, **(overrides or {})) if isinstance(recipe, str) else recipe
    engine = resolve_engine(engine)
    crop = recipe.input_size or spec.get_layout(layout).input_shape[0]
    identity = {"layout": layout, "mode": mode, "seed": seed, "recipe": recipe.to_dict(), "engine": engine}
    state, final = _inspect_run_folder(out, identity, devices)
    if final is not None:
        return final

    # Every check that can fail (data, batch size, model, TensorBoard) before the folder is made.
    _seed_everything(seed, recipe.precision, deterministic)
    split = _load_split(data_root, recipe, crop, seed, splits_mat)
    steps_per_epoch = pipeline.epoch_steps(len(split.train_y), recipe.batch_size)
    n_intervals = recipe.steps // recipe.eval_every if recipe.steps else recipe.epochs
    _check_tensorboard(tensorboard)
    model = new_model(layout, mode, crop, devices, recipe) if state is None else None
    _open_run_folder(out)
    if state is None:
        state = _new_state(recipe)
        _write_config(out, identity, devices, recipe, split, crop, steps_per_epoch, model)
    else:
        model = _resume_model(out, state, n_intervals)
    run = Run(out, state, n_intervals, recipe.eval_every or steps_per_epoch, steps_per_epoch, checkpoint_seconds)
    run.tensorboard = _tensorboard(tensorboard, model)
    run.keep_checkpoints = keep_checkpoints
    if verbose is None:  # a live bar on a terminal, one line per interval in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    try:
        return _train_and_test(run, model, engine, split, recipe, crop, seed, verbose, save_model)
    except KeyboardInterrupt:
        raise Interrupted(f"{out}: interrupted at step {resume_step(out)}; run the same command to resume") from None


def _train_and_test(run: Run, model, engine, split, recipe, crop, seed, verbose, save_model) -> dict:
    """Train the run's remaining intervals on `engine`, test, and write conv1.npz and final.json."""
    if engine == "fit":
        from . import engine_fit as engine_module
    else:
        from . import engine_device as engine_module
    diverged, predict = engine_module.run(model, run, split, recipe, crop, seed, verbose)
    if run.tensorboard is not None:
        run.tensorboard.on_train_end()
    if diverged:
        _raise_diverged(run.out, diverged, run.state, recipe)
    save_conv1(model, run.out / "conv1.npz")
    if save_model:
        with replacing(run.out / "model.keras") as tmp:
            with_softmax(model).save(tmp)
    final = {**_test(predict, split, recipe.ten_crop), **_summary(run, recipe, split, run.steps_per_epoch),
             **_test_best_val(predict, split, recipe.ten_crop, run)}  # last: it loads the best weights
    write_json(run.out / "final.json", final)
    return final


def compile_programs(layout="paper", mode="towers", recipe="paper", seed=0, data_root=None, overrides=None) -> dict:
    """Compile, without training, the device engine's programs for this run (the loop it would
    build, with its real shapes); returns {program: seconds}. With jax_setup's persistent cache,
    the runs of the same structure that follow, in any process, load them instead."""
    from . import engine_device

    recipe = config.get_recipe(recipe, **(overrides or {})) if isinstance(recipe, str) else recipe
    crop = recipe.input_size or spec.get_layout(layout).input_shape[0]
    _seed_everything(seed, recipe.precision, False)
    split = _load_split(data_root, recipe, crop, seed, None)
    model = new_model(layout, mode, crop, None, recipe)
    steps_per_epoch = pipeline.epoch_steps(len(split.train_y), recipe.batch_size)
    loop = engine_device.run_loop(model, split, recipe, crop, seed, recipe.eval_every or steps_per_epoch)
    return loop.compile(len(split.test_y), recipe.ten_crop)


def resume_step(out) -> int:
    """The step a rerun of run folder `out` resumes after: its last checkpoint's (0 without one)."""
    path = Path(out) / "state.json"
    state = read_json(path) if path.is_file() else {}
    return state["step"] if state.get("checkpoint") else 0


class Split(NamedTuple):
    """The run's data: uint8 training images, validation centre crops, full-size test images."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str
    description: str
    sizes: dict


def _inspect_run_folder(out: Path, identity: dict, devices):
    """(state to resume or None, final.json if the run is finished), reading only; refuses a path
    that is a file, another run's folder, and a finished run of another recipe."""
    check_folder(out, "run folder")
    state = read_json(out / "state.json") if (out / "state.json").is_file() else None
    state = state if state and state.get("checkpoint") else None  # logs without a checkpoint: start again
    old = read_json(out / "config.json") if (out / "config.json").is_file() else {}
    # A finished run of the same layout, mode, seed and recipe is its result, whatever code version
    # wrote it (config.recipe_differences: committed runs predate fields added since); an
    # unfinished one resumes only with everything equal.
    who = ("layout", "mode", "seed")
    same_run = ({k: old.get(k) for k in who} == {k: identity[k] for k in who}
                and old.get("recipe", {}).get("name") == identity["recipe"]["name"])
    if same_run and (out / "final.json").is_file():
        _refuse_another_recipe(out, old["recipe"], identity["recipe"])
        return None, read_json(out / "final.json")
    _refuse_another_run(out, old, identity, state, devices)
    return state, None


def _refuse_another_run(out: Path, old: dict, identity: dict, state, devices):
    """Refuses to resume in `out` (its config.json `old`) a run of another identity, or on other devices."""
    who = ("layout", "mode", "seed")
    if old and {k: old.get(k) for k in identity} != identity:
        raise ValueError(f"{out} holds a different run ({ {k: old.get(k) for k in who} }, "
                         f"recipe {old.get('recipe', {}).get('name')!r}, engine {old.get('engine')!r}); "
                         "choose another --out")
    if state is not None and list(old.get("devices") or []) != list(devices or []):
        raise ValueError(f"{out} was placed on {old.get('devices') or 'one device'}; this process has "
                         f"{list(devices or []) or 'one device'}. Resume it with the same devices (the same "
                         "--cluster), or start a new --out")


def _refuse_another_recipe(out: Path, recorded: dict, wanted: dict):
    differ = config.recipe_differences(recorded, config.Recipe.from_dict(wanted))
    if differ:
        raise ValueError(f"{out} holds a finished run whose recipe differs from this one ({'; '.join(differ)}); "
                         "it is not trained again: choose another --out for this recipe")


def _open_run_folder(out: Path):
    """The run's first write: its folder, cleared of the temporary files a kill left."""
    out.mkdir(parents=True, exist_ok=True)
    remove_partial_files(out, out / "ckpt")


def _seed_everything(seed: int, precision: str, deterministic: bool):
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(precision)


def _load_split(data_root, recipe, crop, seed, splits_mat) -> Split:
    ds = data.load(data_root, size=recipe.image_size, resize=recipe.resize)
    split = data.official_split(ds, splits_mat) if splits_mat else data.stratified_split(ds.labels, seed)
    (val_x,) = pipeline.crops(ds.images[split["val"]], crop)
    return Split(ds.images[split["train"]], ds.labels[split["train"]], val_x, ds.labels[split["val"]],
                 ds.images[split["test"]], ds.labels[split["test"]], ds.source,
                 "official " + str(splits_mat) if splits_mat else f"stratified 40/20/20 per class, seed {seed}",
                 {k: int(len(v)) for k, v in split.items()})


def _new_state(recipe) -> dict:
    schedule = Plateau(recipe.lr_drop_patience, recipe.max_lr_drops, data.NUM_CLASSES, give_up=recipe.chance_patience)
    return {"interval": 0, "step": 0, "checkpoint": None, "history": [], "train_seconds": 0.0,
            "schedule": schedule.to_dict(), "stopped": None}


def _write_config(out, identity, devices, recipe, split: Split, crop, steps_per_epoch, model):
    layout, mode = identity["layout"], identity["mode"]
    flops = spec.layer_flops(spec.get_layout(layout), mode, 2, (crop, crop, 3), data.NUM_CLASSES)
    write_json(out / "config.json", {
        **identity, "devices": list(devices or []), "backend": keras.backend.backend(), "versions": versions(),
        "git_commit": git_commit(), "machine": machine(), "data_source": split.source, "split": split.description,
        "split_sizes": split.sizes, "input_size": crop, "steps_per_epoch": steps_per_epoch,
        "resize": data.RESIZES[recipe.resize].format(size=recipe.image_size),  # recipe["resize"], in words
        "loss": "logits",  # cross-entropy from fc8's logits on both engines
        "init": init_summary(layout, recipe.bias_fill, recipe.init), "parameters": int(model.count_params()),
        "flops_per_image": int(sum(flops.values())),
    })


def _resume_model(out: Path, state: dict, n_intervals: int):
    model = keras.models.load_model(out / state["checkpoint"])
    restore_seed_states(model, state["seed_states"])
    print(f"resuming {out} after step {state['step']} (interval {state['interval']} of {n_intervals})",
          file=sys.stderr)
    return model


def _check_tensorboard(folder):
    if folder and importlib.util.find_spec("tensorboard") is None:
        raise ValueError(f"--tensorboard {folder}: the tensorboard package is not installed (pip install tensorboard)")


def _tensorboard(folder, model):
    if not folder:
        return None
    writer = _TensorBoard(str(folder))
    writer.set_model(model)
    return writer


def _raise_diverged(out, diverged, state, recipe):
    step, loss = diverged
    raise TrainingDiverged(
        f"{out}: the training loss became {loss} at step {step}; stopped. The last complete interval "
        f"(step {state['step']}) is checkpointed in {out / (state['checkpoint'] or 'ckpt')}. Lower the learning "
        f"rate (recipe {recipe.name!r} uses {recipe.learning_rate}) or use float32.")


def _test(predict, split: Split, ten_crop: bool) -> dict:
    """Test top-1/top-5 of the centre crop, and of the recipe's protocol (10 crops or the centre)."""
    centre = predict(split.test_x, False)
    probs = predict(split.test_x, True) if ten_crop else centre
    return {"test_top1": pipeline.topk_accuracy(probs, split.test_y, 1),
            "test_top5": pipeline.topk_accuracy(probs, split.test_y, 5),
            "test_crops": 10 if ten_crop else 1,
            "test_top1_centre": pipeline.topk_accuracy(centre, split.test_y, 1),
            "test_top5_centre": pipeline.topk_accuracy(centre, split.test_y, 5)}


def _test_best_val(predict, split: Split, ten_crop: bool, run: Run) -> dict:
    """Test top-1/top-5 (the recipe's crops) of the weights of the best validation accuracy, and
    their step: model selection on the validation split, the test split read once."""
    if run.best_weights is None:  # a run resumed from a state.json written before they were kept
        return {"test_top1_best_val": None, "test_top5_best_val": None, "best_val_step": None}
    probs = predict(split.test_x, ten_crop, run.best_weights)
    return {"test_top1_best_val": pipeline.topk_accuracy(probs, split.test_y, 1),
            "test_top5_best_val": pipeline.topk_accuracy(probs, split.test_y, 5),
            "best_val_step": run.best_weights_step}


def _summary(run, recipe, split: Split, steps_per_epoch) -> dict:
    schedule, state = run.schedule, run.state
    return {
        "best_val_accuracy": schedule.best, "best_step": schedule.best_step,
        "best_epoch": round(schedule.best_step / steps_per_epoch, 3),
        "steps": state["step"], "epochs": round(state["step"] / steps_per_epoch, 3),
        "steps_to_leave_chance": schedule.left_chance_step, "lr_drop_steps": list(schedule.drop_steps),
        "stopped_by": state["stopped"] or ("step cap" if recipe.steps else "epochs"),
        "train_seconds": round(state["train_seconds"], 3),
        "train_images_per_second": round(state["step"] * recipe.batch_size / max(state["train_seconds"], 1e-9), 3),
    }


def format_final(out, final: dict) -> str:
    """One line from a run's final.json, as `alexnet-split train` prints it."""
    best = final.get("test_top1_best_val")
    at_best = f" (best-val weights: {best:.4f})" if best is not None else ""
    return (f"{out}: test top-1 {final['test_top1']:.4f}{at_best}, top-5 {final['test_top5']:.4f}, best val "
            f"{final['best_val_accuracy']:.4f} at step {final['best_step']} of {final['steps']}, "
            f"{final['train_images_per_second']:.1f} train images/s")


def resume_hint(out, message: str) -> str:
    """`message` (what stopped the run) and what is kept in run folder `out` for a resume."""
    state = read_json(Path(out) / "state.json") if (Path(out) / "state.json").is_file() else None
    kept = (f"the last checkpoint ({state['checkpoint']}, step {state['step']}) is intact in {out}"
            if state else f"no validation interval had finished, so {out} holds no checkpoint yet")
    return f"{message}; {kept}. Restart the worker and rerun this command to resume."


def save_conv1(model, path: Path):
    """conv1's kernels of every tower, float16 (~70 KB): what a study of the paper's Figure 3
    needs from a run, without its checkpoint."""
    kernels = {layer.name: keras.ops.convert_to_numpy(layer.conv.kernel).astype(np.float16)
               for layer in tower_blocks(model) if layer.name.endswith("_conv1")}
    buf = io.BytesIO()
    np.savez(buf, **kernels)
    atomic_write(path, buf.getvalue())


def new_model(layout, mode, crop, devices, recipe):
    """The network a run trains: fc8's logits out, the recipe's optimizer, and the cross-entropy
    computed from the logits (a stable log-softmax on every backend; on probabilities, Keras
    under JAX clips them and a saturated softmax gets no gradient)."""
    model = build_model(layout, mode, data.NUM_CLASSES, input_shape=(crop, crop, 3), devices=devices,
                        bias_fill=recipe.bias_fill, init=recipe.init, logits=True, kernels=recipe.kernels)
    model.compile(_make_optimizer(recipe), keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5")])
    return model
