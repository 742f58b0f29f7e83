"""Input pipeline in NumPy, outside the model, so it runs the same on every Keras backend.

REFERENCE.md §4 records two traps with in-graph Keras crop layers (``RandomCrop`` passes the
uncropped image through at inference; an in-graph crop/flip model stalled on JAX/GPU), so crops
and flips happen here, on uint8 arrays, before the batch reaches the model.

Every random draw is a function of (seed, epoch, batch index): a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math

import keras
import numpy as np


def pca_basis(images: np.ndarray, max_pixels: int = 200_000, seed: int = 0):
    """Eigenvalues and eigenvectors of the RGB covariance of the training pixels (Section 4.1)."""
    px = images.reshape(-1, 3)
    if len(px) > max_pixels:
        px = px[np.random.default_rng(seed).choice(len(px), max_pixels, replace=False)]
    eigval, eigvec = np.linalg.eigh(np.cov(px.astype(np.float64), rowvar=False))
    return eigval.astype(np.float32), eigvec.astype(np.float32)


class TrainBatches(keras.utils.PyDataset):
    """Shuffled batches of random `crop` x `crop` crops, flipped half the time, one-hot labels."""

    def __init__(self, images, labels, batch_size, crop, num_classes, seed, augment=True, pca_sigma=0.0,
                 epoch=0, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels = images, np.asarray(labels)
        self.batch_size, self.crop, self.num_classes = batch_size, crop, num_classes
        self.seed, self.augment, self.pca_sigma = seed, augment, pca_sigma
        self.epoch = epoch  # the epoch the next batches belong to; a resumed run starts later
        self.pca = pca_basis(images, seed=seed) if pca_sigma > 0 else None
        if images.shape[1] < crop:
            raise ValueError(f"crop={crop} is larger than the images ({images.shape[1]} px)")

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def set_epoch(self, epoch: int):
        self.epoch = epoch


    def _order(self):
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.labels))

    def __getitem__(self, i):
        idx = self._order()[i * self.batch_size:(i + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        size, c = self.images.shape[1], self.crop
        if self.augment:
            ys = rng.integers(0, size - c + 1, len(idx))
            xs = rng.integers(0, size - c + 1, len(idx))
            flips = rng.random(len(idx)) < 0.5
        else:
            ys = xs = np.full(len(idx), (size - c) // 2)
            flips = np.zeros(len(idx), bool)
        shifts = None
        if self.pca is not None:
            eigval, eigvec = self.pca
            alpha = rng.normal(0.0, self.pca_sigma, (len(idx), 3)).astype(np.float32)
            shifts = (alpha * eigval) @ eigvec.T  # one RGB shift per image
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
    import time

    n = min(len(batches), max_batches)
    t0 = time.perf_counter()
    images = sum(len(batches[i][1]) for i in range(n))
    return images / (time.perf_counter() - t0)
