"""The Keras-fit engine: ``model.fit`` fed by the NumPy pipeline, every backend; on TensorFlow
the towers stay on the devices that :mod:`alexnet_split.placement` gave them.

A Keras "epoch" is one validation interval. One interval runs, in this order:
``train.train`` → :func:`run` → ``model.fit`` (via :func:`fit_intervals`) →
:meth:`_FitCallback.on_epoch_end` → ``train.Run.end_interval`` (history row, TensorBoard,
``schedule.Plateau.update``: the lr drop or stop of Section 5, the best-validation weights) →
the new learning rate assigned → ``train.Run.commit`` (checkpoint + state.json, once due).
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from . import data, pipeline
from .models import with_softmax


class _FitCallback(keras.callbacks.Callback):
    """The Keras-fit engine's hooks: a Keras "epoch" is one validation interval. Keeps the
    pipeline at the training interval, applies the schedule, commits; stops on a NaN loss."""

    def __init__(self, run, batches):
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
        end = self.run.end_interval(logs, lr, time.perf_counter() - self._t0, lambda: weight_values(self.model))
        self.model.optimizer.learning_rate.assign(end.lr)
        self.model.stop_training = end.stop
        if end.commit:
            self.run.commit(self.model, checkpoint=not self.run.done)


class _StepsProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress output, headed "Steps 51-100 of 4,000 (validation 2/80)" where it would
    say "Epoch 2/80": in a recipe that counts steps a Keras epoch is a validation interval."""

    def __init__(self, every: int, total: int):
        super().__init__()
        self.every, self.total = every, total

    def on_epoch_begin(self, epoch, logs=None):
        epochs, self.epochs = self.epochs, 1  # Keras prints its "Epoch k/N" header only when N > 1
        super().on_epoch_begin(epoch, logs)
        self.epochs = epochs
        if self.verbose:
            print(f"Steps {epoch * self.every + 1:,}-{min((epoch + 1) * self.every, self.total):,} of "
                  f"{self.total:,} (validation {epoch + 1}/{epochs})", flush=True)


def run(model, run, split, recipe, crop, seed, verbose):
    """The Keras-fit engine behind :func:`alexnet_split.train.train`: trains `run`'s remaining
    intervals (a ``train.Run``) on `split` (a ``train.Split``), committing through `run`.
    Returns ((step, loss) if the loss became NaN, else None; and `predict(images, ten,
    weights=None)`, the test-time class probabilities, of `weights` when given (which the model
    then keeps: see :func:`weight_values`))."""
    batches = pipeline.TrainBatches(split.train_x, split.train_y, recipe.batch_size, crop, data.NUM_CLASSES, seed,
                                    augment=recipe.augment, pca_sigma=recipe.pca_lighting,
                                    interval_steps=run.interval_steps, interval=run.state["interval"])
    fit_callback = _FitCallback(run, batches)
    callbacks = [fit_callback]
    if recipe.steps:
        callbacks.append(_StepsProgress(run.interval_steps, recipe.steps))
    if not run.done:
        val = (split.val_x.astype(np.float32), pipeline.one_hot(split.val_y, data.NUM_CLASSES))
        fit_intervals(model, batches, val, run.n_intervals, run.state["interval"], callbacks, verbose,
                      max(recipe.batch_size, 64))
    probs = with_softmax(model)

    def predict(images, ten, weights=None):
        if weights is not None:
            for v, value in zip(model.trainable_variables + model.non_trainable_variables, weights, strict=True):
                v.assign(value)
        return pipeline.predict_crops(probs, images, crop, ten=ten)

    return fit_callback.diverged, predict


def weight_values(model) -> list[np.ndarray]:
    """Copies of the model's trainable then non-trainable values (the device engine's state order)."""
    return [np.array(keras.ops.convert_to_numpy(v), copy=True)
            for v in model.trainable_variables + model.non_trainable_variables]


def fit_intervals(model, batches, val, intervals, initial, callbacks=(), verbose=0, val_batch=64):
    """The ``fit`` engine's call: Keras "epochs" are validation intervals of `batches`."""
    # shuffle=False: TrainBatches draws the order from (seed, step); Keras's own batch shuffle
    # draws from the process-global RNG, which a resumed process does not share.
    model.fit(batches, epochs=intervals, initial_epoch=initial, validation_data=val, shuffle=False,
              validation_batch_size=val_batch, callbacks=list(callbacks), verbose=verbose)
