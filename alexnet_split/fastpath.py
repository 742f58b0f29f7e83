"""The accelerator engine: a jitted JAX training loop with the data on the device.

Why not ``model.fit``: on the H200 the runner fed by the NumPy pipeline trained at 1,500-1,800
img/s against 9,400-34,000 img/s of compute-only steps (results/bench/nvidia-h200.md), and even a
``keras.ops`` augmentation layer at the model's input under plain ``fit`` reached only 0.86x of
the compute-only rate, while a jitted loop over ``model.stateless_call`` reached 0.92-0.96x. So
under ``KERAS_BACKEND=jax`` the runner trains here (``engine="device"``); the TensorFlow engine
(``fit``) keeps the per-device placement of the towers, which JAX has no equivalent of.

What it does:

* The uint8 training images and the validation centre crops are put on the device once.
* One call runs a whole validation interval (``eval_every`` steps) as one ``lax.scan``: per step
  it draws the batch (a fresh permutation per data epoch), random crops, flips and the PCA
  lighting shift (Section 4.1, see :func:`alexnet_split.pipeline.pca_shifts` for the
  convention), then ``stateless_call`` + the optimizer's ``stateless_apply``. Every draw is a
  ``jax.random`` function of (seed, step), so a resumed run replays an interrupted one exactly.
* Validation runs on the device too; only the interval's metric means come back to the host.
  So does the final test (:meth:`DeviceLoop.predict`, the centre or 10 crops): Keras's
  ``predict`` would compile once more for every run's model object.
* Batches have one size (XLA compiles one shape): a data epoch is the ``N // B`` full batches of
  its permutation, and the ``N mod B`` images it leaves out change from epoch to epoch.
* The compiled interval is cached per model structure, so the runs of one mode (seeds, or a
  resumed run) compile once per process.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import keras
import numpy as np

from . import pipeline
from .data import NUM_CLASSES

# (model structure, loop settings) -> compiled (train_interval, evaluate); see DeviceLoop.
_COMPILED: dict = {}


class DeviceLoop:
    """Training and validation of `model` (compiled with its optimizer) on device-resident data."""

    def __init__(self, model, images, labels, val_images, val_labels, batch_size, crop, seed, augment=True,
                 pca_sigma=0.0, interval_steps=1, num_classes=NUM_CLASSES, eval_batch=128):
        self.model, self.optimizer = model, model.optimizer
        self.optimizer.build(model.trainable_variables)
        n, size = len(labels), images.shape[1]
        if n < batch_size:
            raise ValueError(f"batch_size={batch_size} is larger than the {n} training images")
        if size < crop:
            raise ValueError(f"crop={crop} is larger than the images ({size} px)")
        self.batch_size, self.crop, self.size, self.n = batch_size, crop, size, n
        self.steps_per_epoch = n // batch_size
        self.interval_steps, self.num_classes = interval_steps, num_classes
        self.augment, self.pca_sigma = augment, float(pca_sigma)
        basis = pipeline.pca_basis(images, seed=seed) if pca_sigma > 0 else (np.zeros(3), np.eye(3))
        self.pca = tuple(jnp.asarray(b, jnp.float32) for b in basis)
        self.images, self.labels = jnp.asarray(images), jnp.asarray(labels, jnp.int32)
        self.eval_batch = min(eval_batch, len(val_labels))
        pad = -len(val_labels) % self.eval_batch
        self.n_val = len(val_labels)
        self.val_images = jnp.asarray(np.concatenate([val_images, np.zeros((pad,) + val_images.shape[1:],
                                                                           val_images.dtype)]))
        self.val_labels = jnp.asarray(np.concatenate([val_labels, np.full(pad, -1)]), jnp.int32)
        self.data_key, self.aug_key = jax.random.split(jax.random.PRNGKey(seed))
        self.lr_index = next(i for i, v in enumerate(self.optimizer.variables) if v.name == "learning_rate")
        # every Python value the traced code reads from `self` (the compiled code keeps the first loop's)
        self.key = (_structure(model), batch_size, crop, size, n, augment, self.pca_sigma, interval_steps,
                    self.eval_batch, len(self.val_labels), num_classes)
        if self.key not in _COMPILED:
            _COMPILED[self.key] = (jax.jit(self._train_interval), jax.jit(self._evaluate),
                                   jax.jit(self._predict, static_argnums=(3,)))
        self._train_fn, self._eval_fn, self._predict_fn = _COMPILED[self.key]

    # ---------------------------------------------------------------- state <-> Keras objects

    def state(self):
        """(trainable, non-trainable, optimizer) variable values, read from the Keras objects."""
        return ([v.value for v in self.model.trainable_variables],
                [v.value for v in self.model.non_trainable_variables],
                [v.value for v in self.optimizer.variables])

    def write_back(self, state):
        """Assign `state` to the model and optimizer (before saving or predicting)."""
        for variables, values in zip((self.model.trainable_variables, self.model.non_trainable_variables,
                                      self.optimizer.variables), state):
            for v, value in zip(variables, values):
                v.assign(value)

    def learning_rate(self, state) -> float:
        return float(state[2][self.lr_index])

    def scale_learning_rate(self, state, factor):
        opt = list(state[2])
        opt[self.lr_index] = opt[self.lr_index] * factor
        return state[0], state[1], opt

    # ---------------------------------------------------------------- compiled code

    def batch(self, step, data_key, aug_key, images, labels, pca):
        """Step `step`'s augmented batch: float32 pixels in [0, 255] plus the lighting shift."""
        b, c, size = self.batch_size, self.crop, self.size
        epoch, i = step // self.steps_per_epoch, step % self.steps_per_epoch
        order = jax.random.permutation(jax.random.fold_in(data_key, epoch), self.n)
        idx = jax.lax.dynamic_slice(order, (i * b,), (b,))
        k_y, k_x, k_flip, k_pca = jax.random.split(jax.random.fold_in(aug_key, step), 4)
        if self.augment:
            ys = jax.random.randint(k_y, (b,), 0, size - c + 1)
            xs = jax.random.randint(k_x, (b,), 0, size - c + 1)
            flips = jax.random.bernoulli(k_flip, 0.5, (b,))
        else:
            ys = xs = jnp.full((b,), (size - c) // 2)
            flips = jnp.zeros((b,), bool)
        crops = jax.vmap(lambda im, y, x: jax.lax.dynamic_slice(im, (y, x, 0), (c, c, 3)))(images[idx], ys, xs)
        x = jnp.where(flips[:, None, None, None], crops[:, :, ::-1], crops).astype(jnp.float32)
        if self.pca_sigma > 0:
            magnitudes, eigvec = pca
            alpha = self.pca_sigma * jax.random.normal(k_pca, (b, 3))
            x = x + ((alpha * magnitudes) @ eigvec.T)[:, None, None, :]
        return x, labels[idx]

    def _metrics(self, probs, labels):
        probs = probs.astype(jnp.float32)
        onehot = jax.nn.one_hot(labels, self.num_classes)
        loss = keras.losses.categorical_crossentropy(onehot, probs)
        correct = (jnp.argmax(probs, -1) == labels).astype(jnp.float32)
        top5 = jnp.any(jax.lax.top_k(probs, 5)[1] == labels[:, None], axis=-1).astype(jnp.float32)
        return loss, correct, top5

    def _train_interval(self, state, start, data_key, aug_key, images, labels, pca):
        model, optimizer = self.model, self.optimizer

        def loss_fn(trainable, non_trainable, x, y):
            probs, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            loss, correct, top5 = self._metrics(probs, y)
            return jnp.mean(loss), (non_trainable, jnp.mean(correct), jnp.mean(top5))

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def step_fn(carry, step):
            trainable, non_trainable, opt_vars = carry
            x, y = self.batch(step, data_key, aug_key, images, labels, pca)
            (loss, (non_trainable, acc, top5)), grads = grad_fn(trainable, non_trainable, x, y)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            return (trainable, non_trainable, opt_vars), jnp.stack([loss, acc, top5])

        state, per_step = jax.lax.scan(step_fn, state, start + jnp.arange(self.interval_steps))
        return state, per_step.mean(0), per_step[:, 0]

    def _evaluate(self, trainable, non_trainable, val_images, val_labels):
        model, eb = self.model, self.eval_batch

        def body(_, i):
            x = jax.lax.dynamic_slice_in_dim(val_images, i * eb, eb).astype(jnp.float32)
            y = jax.lax.dynamic_slice_in_dim(val_labels, i * eb, eb)
            probs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            loss, correct, top5 = self._metrics(probs, jnp.maximum(y, 0))
            real = (y >= 0).astype(jnp.float32)  # padding rows carry label -1
            return None, jnp.stack([jnp.sum(loss * real), jnp.sum(correct * real), jnp.sum(top5 * real)])

        _, sums = jax.lax.scan(body, None, jnp.arange(len(val_labels) // eb))
        return sums.sum(0)

    def _predict(self, trainable, non_trainable, images, ten):
        """Class probabilities of `images` (uint8, full size, a multiple of eval_batch) averaged
        over the centre crop or the 10 test crops, as :func:`alexnet_split.pipeline.crops`."""
        model, eb, c, size = self.model, self.eval_batch, self.crop, self.size
        o, e = (size - c) // 2, size - c
        views = [(o, o)] + ([(0, 0), (0, e), (e, 0), (e, e)] if ten else [])

        def body(_, i):
            batch = jax.lax.dynamic_slice_in_dim(images, i * eb, eb)
            total = 0.0
            for flip in (False, True) if ten else (False,):
                for y, x in views:
                    v = batch[:, y:y + c, x:x + c]
                    v = v[:, :, ::-1] if flip else v
                    probs, _ = model.stateless_call(trainable, non_trainable, v.astype(jnp.float32), training=False)
                    total = total + probs.astype(jnp.float32)
            return None, total / (2 * len(views) if ten else 1)

        _, probs = jax.lax.scan(body, None, jnp.arange(len(images) // eb))
        return probs.reshape(-1, probs.shape[-1])

    # ---------------------------------------------------------------- host side

    def predict(self, state, images, ten=False) -> np.ndarray:
        """Test-time class probabilities of uint8 `images` on the device (float64 on the host)."""
        pad = -len(images) % self.eval_batch
        padded = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
        probs = self._predict_fn(state[0], state[1], jnp.asarray(padded), bool(ten))
        return np.asarray(probs, np.float64)[:len(images)]

    def train_interval(self, state, start: int):
        """Run steps start .. start + interval_steps - 1; returns the new state, the interval's
        mean (loss, accuracy, top5) and each step's loss."""
        return self._train_fn(state, jnp.int32(start), self.data_key, self.aug_key, self.images, self.labels,
                              self.pca)

    def evaluate(self, state) -> dict:
        sums = np.asarray(self._eval_fn(state[0], state[1], self.val_images, self.val_labels)) / self.n_val
        return {"val_loss": float(sums[0]), "val_accuracy": float(sums[1]), "val_top5": float(sums[2])}


def _structure(model) -> tuple:
    """What the compiled code depends on: the layers' configs and the variables' shapes."""
    # Not the variables' paths (Dropout's seed generators are numbered per process), nor the
    # initializers (the init study's three inits share one compiled loop per mode).
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.endswith("_initializer")}
        return [strip(v) for v in node] if isinstance(node, list) else node

    config = json.dumps(strip(json.loads(model.to_json())), sort_keys=True)
    return (config, tuple((tuple(v.shape), str(v.dtype)) for v in model.variables),
            keras.mixed_precision.global_policy().name, model.optimizer.__class__.__name__,
            repr(sorted(model.optimizer.get_config().items())))


def train(model, run, images, labels, val_images, val_labels, recipe, crop, seed, verbose=1):
    """The device engine behind :func:`alexnet_split.train.train`: trains `run`'s remaining
    intervals, committing through `run`. Returns ((step, loss) if the loss became NaN, else
    None; and `predict(images, ten)`, the test-time probabilities of the trained model computed
    on the device, or None if there was nothing to train)."""
    if run.done:
        return None, None
    loop = DeviceLoop(model, images, labels, val_images, val_labels, recipe.batch_size, crop, seed,
                      augment=recipe.augment, pca_sigma=recipe.pca_lighting, interval_steps=run.interval_steps)
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
        metrics = dict(zip(("loss", "accuracy", "top5"), np.asarray(means).tolist()), **val)
        action = run.record(metrics, lr, seconds)
        if action == "drop":
            state = loop.scale_learning_rate(state, 0.1)  # Section 5: divide by 10 on a plateau
        if verbose:
            print(f"step {run.state['step']}/{run.n_intervals * run.interval_steps} - {seconds:.1f}s - "
                  + " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items()) + f" - lr {lr:g}"
                  + (f" ({action})" if action else ""), flush=True, file=sys.stdout)
        if run.commit_due():
            loop.write_back(state)
            # The last commit writes the logs only: final.json follows at once, and a checkpoint
            # of the paper net with its optimizer (~0.5 GB) would be written only to be deleted.
            run.commit(model, checkpoint=not run.done)
    loop.write_back(state)
    return None, lambda images, ten: loop.predict(loop.state(), images, ten)


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

