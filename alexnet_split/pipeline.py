"""Input pipeline in NumPy, outside the model, so it runs the same on every Keras backend.

In-graph Keras crop layers have two traps (``RandomCrop`` passes the uncropped image through at
inference; an in-graph crop/flip model stalled on JAX/GPU in an early measurement), so crops and
flips happen here, on uint8 arrays, before the batch reaches the model.

Every random draw is a function of (seed, step) (:class:`BatchPlan`): a resumed run sees exactly
the batches an uninterrupted run would have seen, on either engine.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np


def pca_basis(images: np.ndarray, max_pixels: int = 200_000, seed: int = 0):
    """The principal components of the training pixels' RGB values (Section 4.1).

    Returns ``(magnitudes, eigvec)``: ``eigvec[:, i]`` is the i-th principal direction and
    ``magnitudes[i]`` the standard deviation of the pixels along it in pixel values (0..255), the
    square root of the covariance eigenvalue (docs/training.md, "PCA lighting's unit").
    """
    px = images.reshape(-1, 3)
    if len(px) > max_pixels:
        px = px[np.random.default_rng(seed).choice(len(px), max_pixels, replace=False)]
    eigval, eigvec = np.linalg.eigh(np.cov(px.astype(np.float64), rowvar=False))
    return np.sqrt(np.maximum(eigval, 0.0)).astype(np.float32), eigvec.astype(np.float32)


def pca_shifts(rng: np.random.Generator, n: int, basis, sigma: float) -> np.ndarray:
    """``n`` per-image RGB shifts of the paper's PCA lighting (Section 4.1), in pixel values:
    ``(alpha * magnitudes) @ eigvec.T`` with ``alpha ~ N(0, sigma)`` per image and component, so
    the shift along a component has a standard deviation of `sigma` times the pixels' own spread
    along it. `basis`: :func:`pca_basis`'s ``(magnitudes, eigvec)``.
    """
    magnitudes, eigvec = basis
    alpha = rng.normal(0.0, sigma, (n, 3)).astype(np.float32)
    return (alpha * magnitudes) @ eigvec.T


@dataclasses.dataclass(frozen=True)
class Draws:
    """Every random choice behind one training batch: rows of the training set, crop corners,
    flips and the per-image RGB lighting shift (float32, pixel values). Leading axes: (batch,) for
    one step, (steps, batch) for an interval."""

    idx: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    flips: np.ndarray
    shifts: np.ndarray


def epoch_steps(n: int, batch_size: int) -> int:
    """Steps in a data epoch: the full batches of `n` images (see :class:`BatchPlan`)."""
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training images")
    return n // batch_size


class BatchPlan:
    """The batch contract both engines train on: step ``s`` is batch ``s % steps_per_epoch`` of
    data epoch ``s // steps_per_epoch``, and every draw is a NumPy function of (seed, step).

    An epoch is ``n // batch_size`` full batches of a fresh permutation (one shape for XLA; the
    ``n mod batch_size`` images left out change every epoch). The host draws, a few KB per step;
    the engines only gather, crop, flip and shift (:func:`assemble` here, the device engine on the
    accelerator), so the same seed trains on the same pixels under ``fit`` and ``device``.
    """

    def __init__(self, images, batch_size: int, crop: int, seed: int, augment: bool = True, pca_sigma: float = 0.0):
        n, size = len(images), images.shape[1]
        self.steps_per_epoch = epoch_steps(n, batch_size)
        if size < crop:
            raise ValueError(f"crop={crop} is larger than the images ({size} px)")
        self.n, self.size, self.batch_size, self.crop, self.seed = n, size, batch_size, crop, seed
        self.augment, self.pca_sigma = augment, float(pca_sigma)
        self.pca = pca_basis(images, seed=seed) if pca_sigma > 0 else None
        self._epoch_order = (None, None)

    def draws(self, step: int) -> Draws:
        epoch, i = divmod(int(step), self.steps_per_epoch)
        b, room = self.batch_size, self.size - self.crop + 1
        idx = self._order(epoch)[i * b:(i + 1) * b]
        rng = np.random.default_rng([self.seed, epoch, i])
        if self.augment:  # Section 4.1: random crops and their horizontal reflections
            ys, xs = rng.integers(0, room, b), rng.integers(0, room, b)
            flips = rng.random(b) < 0.5
        else:
            ys = xs = np.full(b, (self.size - self.crop) // 2)
            flips = np.zeros(b, bool)
        shifts = (pca_shifts(rng, b, self.pca, self.pca_sigma) if self.pca is not None
                  else np.zeros((b, 3), np.float32))
        return Draws(idx.astype(np.int32), ys.astype(np.int32), xs.astype(np.int32), flips, shifts)

    def _order(self, epoch: int) -> np.ndarray:
        """Data epoch `epoch`'s permutation, drawn once per epoch rather than once per step."""
        cached, order = self._epoch_order  # one read: a loader thread may replace it meanwhile
        if cached != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch_order = (epoch, order)
        return order

    def interval(self, start: int, steps: int) -> Draws:
        """The draws of steps ``start .. start + steps - 1``, stacked (what one device call needs)."""
        per_step = [self.draws(s) for s in range(start, start + steps)]
        return Draws(*(np.stack([getattr(d, f.name) for d in per_step]) for f in dataclasses.fields(Draws)))


def assemble(images: np.ndarray, draws: Draws, crop: int) -> np.ndarray:
    """The float32 batch that `draws` describe: crop, flip, then add the lighting shift."""
    # One image at a time: a whole batch in float32 outgrows the caches (128 crops are 79 MB),
    # so separate passes over it would run from memory.
    batch = np.empty((len(draws.idx), crop, crop, 3), np.float32)
    for k, (j, y, x) in enumerate(zip(draws.idx, draws.ys, draws.xs, strict=True)):
        src = images[j, y:y + crop, x:x + crop]
        batch[k] = src[:, ::-1] if draws.flips[k] else src
        batch[k] += draws.shifts[k]
    return batch


class TrainBatches(keras.utils.PyDataset):
    """The ``fit`` engine's input: :class:`BatchPlan`'s batches with one-hot labels.

    Keras sees one "epoch" per validation interval of ``interval_steps`` steps (default: one data
    epoch), so a run can validate every N steps whatever the dataset's size.
    """

    def __init__(self, images, labels, batch_size, crop, num_classes, seed, augment=True, pca_sigma=0.0,
                 interval_steps=None, interval=0, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.num_classes = images, np.asarray(labels), num_classes
        self.plan = BatchPlan(images, batch_size, crop, seed, augment, pca_sigma)
        self.batches_per_epoch = self.plan.steps_per_epoch
        self.interval_steps = interval_steps or self.batches_per_epoch
        self.interval = interval  # the interval the next batches belong to; a resumed run starts later

    def __len__(self):
        return self.interval_steps

    def set_interval(self, interval: int):
        self.interval = interval

    def __getitem__(self, i):
        return self.step(self.interval * self.interval_steps + i)

    def step(self, step: int):
        """Training step `step`'s (images, one-hot labels): a function of (seed, step) only."""
        draws = self.plan.draws(step)
        return assemble(self.images, draws, self.plan.crop), one_hot(self.labels[draws.idx], self.num_classes)


def one_hot(labels, num_classes):
    """float32 one-hot rows of `labels` (``keras.utils.to_categorical``)."""
    return keras.utils.to_categorical(np.asarray(labels), num_classes).astype(np.float32)


def test_views(size: int, crop: int, ten: bool = False) -> list[tuple[int, int, bool]]:
    """(row, column, flipped) of the centre crop, or of the 10 test crops (Section 4.1: the four
    corners and the centre, and their horizontal reflections). Both engines read this list."""
    o, e = (size - crop) // 2, size - crop
    corners = [(o, o)] + ([(0, 0), (0, e), (e, 0), (e, e)] if ten else [])
    return [(y, x, False) for y, x in corners] + ([(y, x, True) for y, x in corners] if ten else [])


def crops(images: np.ndarray, crop: int, ten: bool = False) -> list[np.ndarray]:
    """The views of :func:`test_views` cut from `images`."""
    views = [images[:, y:y + crop, x:x + crop] for y, x, _ in test_views(images.shape[1], crop, ten)]
    flips = [flip for _, _, flip in test_views(images.shape[1], crop, ten)]
    return [v[:, :, ::-1] if flip else v for v, flip in zip(views, flips, strict=True)]


def predict_crops(model, images, crop, ten=False, batch_size=128) -> np.ndarray:
    """Class probabilities averaged over the centre crop or the 10 crops."""
    total = None
    views = crops(images, crop, ten)
    for v in views:
        p = np.asarray(model.predict(v.astype(np.float32), batch_size=batch_size, verbose=0), dtype=np.float64)
        total = p if total is None else total + p
    return total / len(views)


def topk_accuracy(probs: np.ndarray, labels, k: int) -> float:
    top = np.argsort(-probs, axis=1)[:, :k]
    return float(np.mean([label in row for label, row in zip(np.asarray(labels), top, strict=True)]))


def throughput(batches, max_batches: int = 20) -> float:
    """Images per second that `batches` produces in this process (crops, flips, lighting, casts)."""

    n = min(len(batches), max_batches)
    t0 = time.perf_counter()
    images = sum(len(batches[i][1]) for i in range(n))
    return images / (time.perf_counter() - t0)


def recipe_throughput(recipe, layout: str, data_root) -> tuple[int, float]:
    """(crop, images/s) of this pipeline for `recipe`'s batches of the real data's seed-0 training
    split: what ``alexnet-split pipeline-speed`` measures."""
    from . import data, spec

    crop = recipe.input_size or spec.get_layout(layout).input_shape[0]
    ds = data.load(data_root, size=recipe.image_size, resize=recipe.resize)
    split = data.stratified_split(ds.labels, 0)
    batches = TrainBatches(ds.images[split["train"]], ds.labels[split["train"]], recipe.batch_size, crop,
                           data.NUM_CLASSES, seed=0, augment=recipe.augment, pca_sigma=recipe.pca_lighting)
    return crop, throughput(batches)
