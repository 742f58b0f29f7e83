"""Input pipeline in NumPy, outside the model, so it runs the same on every Keras backend.

In-graph Keras crop layers have two traps (``RandomCrop`` passes the uncropped image through at
inference; an in-graph crop/flip model stalled on JAX/GPU in an early measurement), so crops and
flips happen here, on uint8 arrays, before the batch reaches the model.

Every random draw is a function of (seed, epoch, batch index): a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np


def pca_basis(images: np.ndarray, max_pixels: int = 200_000, seed: int = 0):
    """The principal components of the training pixels' RGB values (Section 4.1).

    Returns ``(magnitudes, eigvec)``: ``eigvec[:, i]`` is the i-th principal direction and
    ``magnitudes[i]`` the standard deviation of the pixels along it, in pixel values (0..255),
    i.e. the square root of the covariance eigenvalue. Using the eigenvalue itself (variance,
    in pixel values squared: about 10,900 for the first component on Flowers 17) as a magnitude
    shifted whole images by hundreds to thousands of pixel values and kept every paper-recipe run
    at chance; see :func:`pca_shifts` for the convention.
    """
    px = images.reshape(-1, 3)
    if len(px) > max_pixels:
        px = px[np.random.default_rng(seed).choice(len(px), max_pixels, replace=False)]
    eigval, eigvec = np.linalg.eigh(np.cov(px.astype(np.float64), rowvar=False))
    return np.sqrt(np.maximum(eigval, 0.0)).astype(np.float32), eigvec.astype(np.float32)


def pca_shifts(rng: np.random.Generator, n: int, basis, sigma: float) -> np.ndarray:
    """``n`` per-image RGB shifts of the paper's PCA lighting (Section 4.1), in pixel values.

    The paper adds "multiples of the found principal components, with magnitudes proportional to
    the corresponding eigenvalues times a random variable drawn from a Gaussian with mean zero
    and standard deviation 0.1" to every pixel of an image. "Proportional" leaves the unit open.
    This project takes each component's magnitude to be its standard deviation in pixel values
    (cuda-convnet2 calls its magnitudes "stdevs"), so with sigma 0.1 the shift along a component
    has a standard deviation of a tenth of the pixels' own spread along it: on Flowers 17 about
    10 pixel values along the first component and under 30 at the 99th percentile of the shift's
    length. fb.resnet.torch's eigenvalues on 0..1 pixels (0.2175, 0.0188, 0.0045; MXNet and
    tensorpack use them x 255) give shifts of the same few-pixel size.
    """
    magnitudes, eigvec = basis
    alpha = rng.normal(0.0, sigma, (n, 3)).astype(np.float32)
    return (alpha * magnitudes) @ eigvec.T


class TrainBatches(keras.utils.PyDataset):
    """Random `crop` x `crop` crops, flipped half the time, PCA lighting, one-hot labels.

    Batches are numbered by training step: step s is batch ``s % batches_per_epoch`` of data
    epoch ``s // batches_per_epoch`` (a shuffled pass over the images; the last batch of an
    epoch is short). Keras sees one "epoch" per validation interval of ``interval_steps`` steps
    (default: one data epoch), so a run can validate every N steps whatever the dataset's size.
    """

    def __init__(self, images, labels, batch_size, crop, num_classes, seed, augment=True, pca_sigma=0.0,
                 interval_steps=None, interval=0, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels = images, np.asarray(labels)
        self.batch_size, self.crop, self.num_classes = batch_size, crop, num_classes
        self.seed, self.augment, self.pca_sigma = seed, augment, pca_sigma
        self.batches_per_epoch = math.ceil(len(self.labels) / batch_size)
        self.interval_steps = interval_steps or self.batches_per_epoch
        self.interval = interval  # the interval the next batches belong to; a resumed run starts later
        self.pca = pca_basis(images, seed=seed) if pca_sigma > 0 else None
        if images.shape[1] < crop:
            raise ValueError(f"crop={crop} is larger than the images ({images.shape[1]} px)")

    def __len__(self):
        return self.interval_steps

    def set_interval(self, interval: int):
        self.interval = interval

    def __getitem__(self, i):
        epoch, b = divmod(self.interval * self.interval_steps + i, self.batches_per_epoch)
        return self.batch(epoch, b)

    def batch(self, epoch: int, i: int):
        """Batch `i` of data epoch `epoch`: a function of (seed, epoch, i) only."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
        idx = order[i * self.batch_size:(i + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, epoch, i])
        size, c = self.images.shape[1], self.crop
        if self.augment:
            ys = rng.integers(0, size - c + 1, len(idx))
            xs = rng.integers(0, size - c + 1, len(idx))
            flips = rng.random(len(idx)) < 0.5
        else:
            ys = xs = np.full(len(idx), (size - c) // 2)
            flips = np.zeros(len(idx), bool)
        shifts = pca_shifts(rng, len(idx), self.pca, self.pca_sigma) if self.pca is not None else None
        # One image at a time, crop -> flip -> float32 + shift into the batch: a whole batch in
        # float32 outgrows the caches (128 crops are 79 MB), so separate passes over it ran from
        # memory and the pipeline fell below 5x the fastest training step (results/bench/).
        batch = np.empty((len(idx), c, c, 3), np.float32)
        for k, (j, y, x) in enumerate(zip(idx, ys, xs)):
            src = self.images[j, y:y + c, x:x + c]
            batch[k] = src[:, ::-1] if flips[k] else src
            if shifts is not None:
                batch[k] += shifts[k]
        return batch, one_hot(self.labels[idx], self.num_classes)


def one_hot(labels, num_classes):
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


def crops(images: np.ndarray, crop: int, ten: bool = False) -> list[np.ndarray]:
    """The centre crop, or the 10 test crops (4 corners + centre, and their mirror images)."""
    size = images.shape[1]
    o, e = (size - crop) // 2, size - crop
    offsets = [(o, o)] if not ten else [(o, o), (0, 0), (0, e), (e, 0), (e, e)]
    views = [images[:, y:y + crop, x:x + crop] for y, x in offsets]
    if ten:
        views += [v[:, :, ::-1] for v in views]
    return views


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
    return float(np.mean([label in row for label, row in zip(np.asarray(labels), top)]))


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
    ds = data.load(data_root, size=recipe.image_size)
    split = data.stratified_split(ds.labels, 0)
    batches = TrainBatches(ds.images[split["train"]], ds.labels[split["train"]], recipe.batch_size, crop,
                           data.NUM_CLASSES, seed=0, augment=recipe.augment, pca_sigma=recipe.pca_lighting)
    return crop, throughput(batches)
