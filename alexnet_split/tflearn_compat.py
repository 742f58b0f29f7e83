"""tflearn 0.5.0's ``oxflower17`` API for code written against it (tflearn itself cannot import under
TF 2.x): its ``load_data``, and its labels, which are folder ids rather than the true classes."""

from __future__ import annotations

import numpy as np

from .data import NUM_CLASSES, load

# tflearn 0.5.0 moves the images into folders 0..16 (class c in folder str(c)) and labels each folder
# by its position in sorted() order of the names, so its label j is the class whose folder name
# sorts j-th: 0, 1, 10, 11, ..., 16, 2, 3, ..., 9.
TFLEARN_LABEL_TO_CLASS = np.array(sorted(range(NUM_CLASSES), key=str))
TFLEARN_LABELS = np.argsort(TFLEARN_LABEL_TO_CLASS)  # class c -> tflearn's label of c


def tflearn_labels(classes) -> np.ndarray:
    """True classes -> the labels tflearn's ``oxflower17.load_data`` gives the same images."""
    return TFLEARN_LABELS[np.asarray(classes, dtype=np.int64)]


def load_data(dirname=None, resize_pics=(224, 224), shuffle=True, one_hot=False, true_labels=False, seed=0,
              resize="squash", download=False):
    """tflearn 0.5.0's ``oxflower17.load_data`` without tflearn (which cannot import under TF 2.x).

    Returns tflearn's ``(X, Y)``: X float32 (1360, h, w, 3) in [0, 1], each whole image squashed to
    `resize_pics` with LANCZOS; Y tflearn's folder-id labels (int64, or one-hot float64), which are
    not the true classes (:data:`TFLEARN_LABELS`). ``true_labels=True`` gives the true classes;
    ``resize="crop"`` the paper's short side and central square. Unshuffled, the images come by
    label, then image number (tflearn: by label, then directory order); a pickle keeps its order.
    The shuffle is seeded by `seed` (tflearn's is not). `dirname`: a folder, archive or pickle
    as :func:`alexnet_split.data.load` reads; None is the default folder (tflearn's is ``./17flowers``),
    which is downloaded into as :func:`alexnet_split.data_sources.locate` says.
    """
    w, h = resize_pics
    if h != w:
        raise ValueError(f"resize_pics must be square, got {resize_pics!r}")
    ds = load(dirname, size=int(h), resize=resize, download=download)
    y = ds.labels if true_labels else tflearn_labels(ds.labels)
    order = np.argsort(y, kind="stable") if ds.numbers.any() else np.arange(len(y))
    if shuffle:
        order = order[np.random.default_rng(seed).permutation(len(y))]
    x = ds.images[order].astype(np.float32)
    x /= 255.0  # in place, as tflearn does: float32 throughout
    y = y[order]
    if one_hot:
        import keras

        y = keras.utils.to_categorical(y, NUM_CLASSES)  # float64, as tflearn's to_categorical
    return x, y
