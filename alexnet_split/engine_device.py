"""The accelerator engine: a jitted JAX training loop with the data on the device.

Under ``KERAS_BACKEND=jax`` a run trains here (``engine="device"``): ``model.fit`` fed from the
host leaves most of an accelerator idle (results/bench/). The TensorFlow engine (``fit``) keeps
the per-device placement of the towers, which JAX has no equivalent of.

* The uint8 training images and the validation centre crops are put on the device once.
* One call runs a validation interval as one ``lax.scan``. The host draws the interval's batches
  (:class:`alexnet_split.pipeline.BatchPlan`, the contract the ``fit`` engine trains on too);
  the device gathers, crops, flips and shifts them, then ``stateless_call`` + the optimizer's
  ``stateless_apply``.
* The loss is the cross-entropy of fc8's logits (a stable log-softmax), as on ``fit``.
* Validation and the final test (centre or 10 crops, :func:`alexnet_split.pipeline.test_views`)
  run on the device; only sums come back.
* The programs are compiled ahead of time (:meth:`DeviceLoop.compile`, or at their first call)
  and kept per (model structure, argument shapes), so the runs of one mode compile once per
  process; :mod:`alexnet_split.jax_setup`'s persistent cache makes that once ever.
* No scatter in the step (deterministic on GPU): the loss picks the label's log-probability with a
  one-hot product, whose gradient is a product too (take_along_axis's is a scatter-add).

The state is a :class:`TrainState` (trainable, non-trainable and optimizer values: the learning
rate is one of the optimizer's). :func:`train_step` is the one training step, a pure function the
benchmark's compute-only scan (:mod:`alexnet_split.bench_device`) runs too. No buffer is donated:
a run keeps its best-validation weights as the arrays of an earlier state, and ``DeviceLoop.state``
returns the Keras variables' own arrays, so donating a state would delete what they hold.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import keras
import numpy as np

from . import pipeline
from .data import NUM_CLASSES


class TrainState(NamedTuple):
    """What a training step reads and returns: the model's trainable and non-trainable values and
    the optimizer's variables (its learning rate and iteration count among them), in Keras's order."""

    trainable: list
    non_trainable: list
    optimizer: list


class Programs(NamedTuple):
    """The jitted programs of one model structure and loop settings; every loop with the same
    :attr:`DeviceLoop.key` shares one (the runs of one mode compile once per process)."""

    train_interval: Callable
    evaluate: Callable
    predict: Callable


# DeviceLoop.key -> Programs, and (key, program, argument shapes) -> (executable, notes): the
# process's compiled code, read through DeviceLoop.programs, compile_executable and executables().
_PROGRAMS: dict = {}
_EXECUTABLES: dict = {}


def executables() -> dict:
    """A copy of what this process compiled: {(loop key, program, argument shapes): notes}."""
    return {k: dict(notes) for k, (_, notes) in _EXECUTABLES.items()}


def gather(images, draws, crop):
    """The float32 batch `draws` describe, cut from the device-resident uint8 `images`: the same
    arithmetic as :func:`alexnet_split.pipeline.assemble` (crop, flip, + shift)."""
    idx, ys, xs, flips, shifts = draws

    def cut(j, y, x):
        return jax.lax.dynamic_slice(images, (j, y, x, 0), (1, crop, crop, 3))[0]

    crops = jax.vmap(cut)(idx, ys, xs)
    crops = jnp.where(flips[:, None, None, None], crops[:, :, ::-1], crops)
    return crops.astype(jnp.float32) + shifts[:, None, None, :]


def per_example_metrics(logits, labels):
    """Per-example (cross-entropy, top-1 correct, top-5 correct) of `logits`, in float32."""
    logits = logits.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    top5 = jnp.any(jax.lax.top_k(logits, 5)[1] == labels[:, None], axis=-1).astype(jnp.float32)
    return cross_entropy(logits, labels), correct, top5


def train_step(model, optimizer):
    """The training step, pure: ``step(state, x, y) -> (new state, [loss, accuracy, top5])`` for
    a TrainState, float32 images `x` and integer labels `y` (batch means). The device engine scans
    it over an interval's gathered batches; the benchmark over ready ones."""

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        loss, correct, top5 = per_example_metrics(logits, y)
        return jnp.mean(loss), (non_trainable, jnp.mean(correct), jnp.mean(top5))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, x, y):
        (loss, (non_trainable, acc, top5)), grads = grad_fn(state.trainable, state.non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(state.optimizer, grads, state.trainable)
        return TrainState(trainable, non_trainable, opt_vars), jnp.stack([loss, acc, top5])

    return step


def cross_entropy(logits, labels):
    """Per-example cross-entropy from logits (stable log-softmax, float32): unlike the clipped
    loss on probabilities, it grows without bound and keeps a gradient when the softmax saturates."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    # a one-hot product, not take_along_axis: its gradient would be a scatter-add, which XLA's
    # deterministic GPU mode has to rewrite (or refuse); the values are the same
    return -jnp.sum(logp * jax.nn.one_hot(labels, logp.shape[-1], dtype=logp.dtype), axis=-1)


class DeviceLoop:
    """Training and validation of `model` (fc8's logits as output, compiled with its optimizer)
    on device-resident data."""

    def __init__(self, model, images, labels, val_images, val_labels, batch_size, crop, seed, augment=True,
                 pca_sigma=0.0, interval_steps=1, num_classes=NUM_CLASSES, eval_batch=128):
        self.model, self.optimizer = model, model.optimizer
        self.optimizer.build(model.trainable_variables)
        self.plan = pipeline.BatchPlan(images, batch_size, crop, seed, augment, pca_sigma)
        self.batch_size, self.crop, self.size = batch_size, crop, images.shape[1]
        self.steps_per_epoch = self.plan.steps_per_epoch
        self.interval_steps, self.num_classes = interval_steps, num_classes
        self.images, self.labels = jnp.asarray(images), jnp.asarray(labels, jnp.int32)
        self.eval_batch = min(eval_batch, len(val_labels))
        pad = -len(val_labels) % self.eval_batch
        self.n_val = len(val_labels)
        self.val_images = jnp.asarray(np.concatenate([val_images, np.zeros((pad,) + val_images.shape[1:],
                                                                           val_images.dtype)]))
        self.val_labels = jnp.asarray(np.concatenate([val_labels, np.full(pad, -1)]), jnp.int32)
        self.lr_index = next(i for i, v in enumerate(self.optimizer.variables) if v.name == "learning_rate")
        # every Python value the traced code reads from `self` (the compiled code keeps the first loop's)
        self.key = (_structure(model), crop, interval_steps, self.eval_batch, num_classes)
        if self.key not in _PROGRAMS:
            _PROGRAMS[self.key] = Programs(jax.jit(self._train_interval), jax.jit(self._evaluate),
                                           jax.jit(self._predict))
        self.programs = _PROGRAMS[self.key]

    # ---------------------------------------------------------------- state <-> Keras objects

    def state(self) -> TrainState:
        """The variable values, read from the Keras objects (their own arrays, not copies)."""
        return TrainState([v.value for v in self.model.trainable_variables],
                          [v.value for v in self.model.non_trainable_variables],
                          [v.value for v in self.optimizer.variables])

    def write_back(self, state):
        """Assign `state` to the model and optimizer (before saving or predicting)."""
        for variables, values in zip((self.model.trainable_variables, self.model.non_trainable_variables,
                                      self.optimizer.variables), state, strict=True):
            for v, value in zip(variables, values, strict=True):
                v.assign(value)

    def learning_rate(self, state: TrainState) -> float:
        return float(state.optimizer[self.lr_index])

    def with_learning_rate(self, state: TrainState, lr: float) -> TrainState:
        """`state` with the optimizer's learning rate set to `lr` (the run's schedule decides it)."""
        opt = list(state.optimizer)
        opt[self.lr_index] = jnp.asarray(lr, opt[self.lr_index].dtype)
        return state._replace(optimizer=opt)

    # ---------------------------------------------------------------- compiled code

    def batch(self, step: int):
        """Training step `step`'s (float32 images, labels), as the device assembles them."""
        d = self.plan.draws(step)
        draws = (d.idx, d.ys, d.xs, d.flips, d.shifts)
        return gather(self.images, draws, self.crop), self.labels[d.idx]

    def _train_interval(self, state, draws, images, labels):
        step = train_step(self.model, self.optimizer)

        def body(state, step_draws):
            return step(state, gather(images, step_draws, self.crop), labels[step_draws[0]])

        state, per_step = jax.lax.scan(body, state, draws)
        return state, per_step.mean(0), per_step[:, 0]

    def _evaluate(self, trainable, non_trainable, val_images, val_labels):
        model, eb = self.model, self.eval_batch

        def body(_, i):
            x = jax.lax.dynamic_slice_in_dim(val_images, i * eb, eb).astype(jnp.float32)
            y = jax.lax.dynamic_slice_in_dim(val_labels, i * eb, eb)
            logits, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            loss, correct, top5 = per_example_metrics(logits, jnp.maximum(y, 0))
            real = (y >= 0).astype(jnp.float32)  # padding rows carry label -1
            return None, jnp.stack([jnp.sum(loss * real), jnp.sum(correct * real), jnp.sum(top5 * real)])

        _, sums = jax.lax.scan(body, None, jnp.arange(len(val_labels) // eb))
        return sums.sum(0)

    def _predict(self, trainable, non_trainable, images, views):
        """Class probabilities of `images` (uint8, full size, a multiple of eval_batch) averaged
        over `views` (rows, columns, flips of :func:`alexnet_split.pipeline.test_views`), one view
        at a time in a loop."""
        model, eb, c = self.model, self.eval_batch, self.crop
        ys, xs, flips = views

        def body(_, i):
            batch = jax.lax.dynamic_slice_in_dim(images, i * eb, eb)

            def view(total, v):
                crop = jax.lax.dynamic_slice(batch, (0, ys[v], xs[v], 0), (eb, c, c, 3))
                crop = jnp.where(flips[v], crop[:, :, ::-1], crop)
                logits, _ = model.stateless_call(trainable, non_trainable, crop.astype(jnp.float32), training=False)
                return total + jax.nn.softmax(logits.astype(jnp.float32), axis=-1), None

            total, _ = jax.lax.scan(view, jnp.zeros((eb, self.num_classes), jnp.float32), jnp.arange(len(ys)))
            return None, total / len(ys)

        _, probs = jax.lax.scan(body, None, jnp.arange(len(images) // eb))
        return probs.reshape(-1, probs.shape[-1])

    # ---------------------------------------------------------------- host side

    def _call(self, program, *args):
        """Run `program` ("train_interval", "evaluate", "predict") on `args` through its compiled
        executable, compiling it first if no loop of this structure has (jit would compile at
        the call; this way the seconds are known and the executable is the one compile() made)."""
        return compile_executable(getattr(self.programs, program), (self.key, program), args)[0](*args)

    def compile(self, test_count=None, ten_crop=False) -> dict:
        """Compile, before the first run, the programs the loop's run calls with its real shapes:
        train_interval, evaluate and (for `test_count` test images) predict with the centre crop,
        and the 10 crops when `ten_crop`. Returns {program: seconds} (about 0 when compiled
        already in this process; a persistent-cache hit is a load, not a compile)."""
        state = self.state()
        programs = {"train_interval": self._train_args(state, 0),
                    "evaluate": (state.trainable, state.non_trainable, self.val_images, self.val_labels)}
        if test_count:
            programs["predict"] = self._predict_args(state, test_count, False)
            if ten_crop:
                programs["predict_10crop"] = self._predict_args(state, test_count, True)
        out = {}
        for name, args in programs.items():
            t0 = time.perf_counter()
            program = name.removesuffix("_10crop")
            compile_executable(getattr(self.programs, program), (self.key, program), args)
            out[name] = round(time.perf_counter() - t0, 3)
        return out

    def refused(self) -> list[str]:
        """This loop's programs compiled without the deterministic options XLA refused."""
        return refused_programs(self.key)

    def predict(self, state, images, ten=False) -> np.ndarray:
        """Test-time class probabilities of uint8 `images` on the device (float64 on the host)."""
        pad = -len(images) % self.eval_batch
        padded = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
        probs = self._call("predict", state.trainable, state.non_trainable, jnp.asarray(padded), self._views(ten))
        return np.asarray(probs, np.float64)[:len(images)]

    def train_interval(self, state, start: int):
        """Run steps start .. start + interval_steps - 1; returns the new state, the interval's
        mean (loss, accuracy, top5) and each step's loss."""
        return self._call("train_interval", *self._train_args(state, start))

    def _train_args(self, state, start):
        d = self.plan.interval(start, self.interval_steps)
        return state, (d.idx, d.ys, d.xs, d.flips, d.shifts), self.images, self.labels

    def _views(self, ten):
        """The test views as (rows, columns, flips) arrays, the form `_predict` scans over."""
        return tuple(np.asarray(v) for v in zip(*pipeline.test_views(self.size, self.crop, ten), strict=True))

    def _predict_args(self, state, count, ten):
        padded = count + (-count % self.eval_batch)
        images = jax.ShapeDtypeStruct((padded,) + self.images.shape[1:], self.images.dtype)
        return state.trainable, state.non_trainable, images, self._views(ten)

    def evaluate(self, state) -> dict:
        sums = np.asarray(self._call("evaluate", state.trainable, state.non_trainable, self.val_images,
                                     self.val_labels)) / self.n_val
        return {"val_loss": float(sums[0]), "val_accuracy": float(sums[1]), "val_top5": float(sums[2])}


def refused_programs(key) -> list[str]:
    """The programs compiled under loop key `key` without the deterministic options XLA refused."""
    return sorted({k[1] for k, (_, notes) in _EXECUTABLES.items() if k[0] == key and "refused" in notes})


def _signature(tree) -> tuple:
    return tuple((tuple(np.shape(a)), str(a.dtype)) for a in jax.tree_util.tree_leaves(tree))


def compile_executable(fn, name: tuple, args) -> tuple:
    """(executable, notes) of the jitted `fn` for arguments shaped like `args` (arrays or
    ``jax.ShapeDtypeStruct``), compiled ahead of time once per process under `name` (loop key,
    program) with :func:`alexnet_split.jax_setup.compiler_options`. If XLA refuses those options
    (its deterministic GPU mode has no select-and-scatter, the built-in max-pool gradient), the
    program is compiled without them and the notes say so."""
    key = (*name, _signature(args))
    if key not in _EXECUTABLES:
        from . import jax_setup

        lowered = fn.lower(*args)
        options = jax_setup.compiler_options(jax.default_backend())
        notes = {"options": options}
        try:
            executable = lowered.compile(options or None)
        except Exception as e:  # noqa: BLE001 (XLA raises its own error types)
            if not options:
                raise
            print(f"{name[-1]}: XLA refused {options} ({str(e).splitlines()[0][:200]}); compiled without them: "
                  "this program is not guaranteed deterministic", file=sys.stderr, flush=True)
            executable, notes = lowered.compile(), {"options": {}, "refused": options}
        _EXECUTABLES[key] = executable, notes
    return _EXECUTABLES[key]


def _structure(model) -> tuple:
    """What the compiled code depends on: the layers' configs, the variables' shapes, the policy
    and the optimizer's settings."""
    # Not the variables' paths (Dropout's seed generators are numbered per process), nor the
    # initializers (the init study's three inits share one compiled loop per mode), nor the
    # optimizer's auto-numbered name ("adam_1" for the second in a process).
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.endswith("_initializer") and k != "compile_config"}
        return [strip(v) for v in node] if isinstance(node, list) else node

    config = json.dumps(strip(json.loads(model.to_json())), sort_keys=True)
    optimizer = {k: v for k, v in model.optimizer.get_config().items() if k != "name"}
    return (config, tuple((tuple(v.shape), str(v.dtype)) for v in model.variables),
            keras.mixed_precision.global_policy().name, model.optimizer.__class__.__name__,
            repr(sorted(optimizer.items())))


def run_loop(model, split, recipe, crop, seed, interval_steps) -> DeviceLoop:
    """The loop a run of `recipe` trains in (also what :func:`alexnet_split.train.compile_programs`
    compiles: the same arguments, the same programs)."""
    return DeviceLoop(model, split.train_x, split.train_y, split.val_x, split.val_y, recipe.batch_size, crop, seed,
                      augment=recipe.augment, pca_sigma=recipe.pca_lighting, interval_steps=interval_steps)


def run(model, run, split, recipe, crop, seed, verbose=1):
    """The device engine behind :func:`alexnet_split.train.train`: trains `run`'s remaining
    intervals, committing through `run`. Returns ((step, loss) if the loss became NaN, else
    None; and `predict(images, ten, weights=None)`, the test-time probabilities computed on the
    device, of the model's trainable then non-trainable values `weights` when given)."""
    loop = run_loop(model, split, recipe, crop, seed, run.interval_steps)
    seconds = loop.compile(len(split.test_y), recipe.ten_crop)  # every program, before the first step
    if verbose:
        refused = loop.refused()
        print("compiled " + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
              + (f"; deterministic kernels refused for {', '.join(refused)}" if refused else ""), flush=True)
    state = loop.state()
    while not run.done:
        t0 = time.perf_counter()
        start = run.state["step"]
        new_state, means, losses = loop.train_interval(state, start)
        val = loop.evaluate(new_state)
        losses = np.asarray(losses)
        seconds = time.perf_counter() - t0
        if not np.all(np.isfinite(losses)):
            bad = int(np.flatnonzero(~np.isfinite(losses))[0])
            return (start + bad + 1, float(losses[bad])), None
        state = new_state
        lr = loop.learning_rate(state)
        metrics = dict(zip(("loss", "accuracy", "top5"), np.asarray(means).tolist(), strict=True), **val)
        # JAX arrays are immutable: the kept weights need no copy
        end = run.end_interval(metrics, lr, seconds, lambda kept=state: [*kept.trainable, *kept.non_trainable])
        state = loop.with_learning_rate(state, end.lr)
        if verbose:
            said = " (lr /10)" if end.lr != lr else " (stop)" if end.stop else ""
            print(f"step {run.state['step']}/{run.n_intervals * run.interval_steps} - {seconds:.1f}s - "
                  + " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items()) + f" - lr {lr:g}{said}",
                  flush=True, file=sys.stdout)
        if end.commit:
            loop.write_back(state)
            # The last commit writes the logs only: final.json follows at once, and a checkpoint
            # of the paper net with its optimizer (~0.5 GB) would be written only to be deleted.
            run.commit(model, checkpoint=not run.done)
    loop.write_back(state)
    n_trainable = len(model.trainable_variables)

    def predict(images, ten, weights=None):
        values = loop.state() if weights is None else TrainState(weights[:n_trainable], weights[n_trainable:], [])
        return loop.predict(values, images, ten)

    return None, predict


def images_per_second(loop: DeviceLoop, intervals: int = 3) -> float:
    """End-to-end training images/s of `loop` (augmentation, steps and validation included),
    after one warm-up interval that compiles; used by the benchmark's runner row."""
    state = loop.state()
    state, _, losses = loop.train_interval(state, 0)
    loop.evaluate(state)
    t0 = time.perf_counter()
    for k in range(1, intervals + 1):
        state, _, losses = loop.train_interval(state, k * loop.interval_steps)
        loop.evaluate(state)
    np.asarray(losses)
    return intervals * loop.interval_steps * loop.batch_size / (time.perf_counter() - t0)

