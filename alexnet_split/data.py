"""Oxford Flowers 17 (Nilsback & Zisserman 2006) as the rest of the package sees it: the classes and
their labels, the decoded dataset (:func:`load`), its splits, and a copy written back as a folder.

:func:`load` reads the best source in one data directory (``--data``, ``$FLOWERS17_DIR`` or
``~/.cache/alexnet_split/17flowers``), downloading only where :mod:`alexnet_split.data_sources` says;
decoded arrays are cached by :mod:`alexnet_split.data_cache`, never in the data folder. tflearn's
``load_data`` is :mod:`alexnet_split.tflearn_compat`.
Labels are ``(image number - 1) // 80``: the images come in 17 consecutive blocks of 80.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

CLASS_NAMES = (
    "Daffodil", "Snowdrop", "LilyValley", "Bluebell", "Crocus", "Iris", "Tigerlily", "Tulip", "Fritillary",
    "Sunflower", "Daisy", "ColtsFoot", "Dandelion", "Cowslip", "Buttercup", "Windflower", "Pansy",
)
NUM_CLASSES = 17
PER_CLASS = 80
NUM_IMAGES = NUM_CLASSES * PER_CLASS  # 1360
URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/"
ARCHIVE = "17flowers.tgz"
PICKLE = "17flowers.pkl"
SPLITS_MAT = "datasplits.mat"
# How an image becomes size x size (a recipe's `resize`): {size} is filled in.
RESIZES = {
    "crop": "short side resized to {size} px, bilinear, then the central square: the paper's resize",
    "squash": "whole image squashed to {size}x{size}, PIL LANCZOS: tflearn's oxflower17 resize",
}


class DatasetError(RuntimeError):
    """A problem with the data on disk or its download; the message names the file."""


def label_of(number: int) -> int:
    """The class of image_NNNN.jpg (1-based)."""
    if not 1 <= number <= NUM_IMAGES:
        raise ValueError(f"image number {number} outside 1..{NUM_IMAGES}")
    return (number - 1) // PER_CLASS


def numbers_to_labels(numbers) -> np.ndarray:
    return np.array([label_of(int(n)) for n in numbers], dtype=np.int64)


@dataclasses.dataclass
class Flowers17:
    """Decoded images (uint8, N x size x size x 3), true labels, and 1-based image numbers.

    ``numbers`` is all zeros when the source (tflearn's pickle) does not record them.
    """

    images: np.ndarray
    labels: np.ndarray
    numbers: np.ndarray
    source: str

    def __len__(self):
        return len(self.labels)


# --------------------------------------------------------------------------- loading


def load(root=None, size: int = 256, cache: bool = True, url: str = URL + ARCHIVE, resize: str = "crop",
         download: bool = False) -> Flowers17:
    """Load Flowers 17 decoded at size x size by `resize` (RESIZES), from the best source in `root`
    (see :mod:`alexnet_split.data_sources` and its :func:`~alexnet_split.data_sources.locate`, which
    says when `url` is downloaded).

    Reads the data folder and nothing else: decoded arrays are cached in
    :func:`alexnet_split.data_cache.cache_dir`, keyed by the source file, `size` and `resize`.
    """
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {sorted(RESIZES)}, got {resize!r}")
    from . import data_cache, data_sources

    kind, path = data_sources.locate(root, download, url)
    cache_file = data_cache.cache_path(kind, path, size, resize)
    ds = data_cache.read_cache(cache_file) if cache else None
    if ds is None:
        reader = {"folder": data_sources.read_folder, "archive": data_sources.read_archive,
                  "pickle": data_sources.read_tflearn_pickle}[kind]
        ds = reader(path, size, resize)
        if cache:
            data_cache.write_cache(cache_file, ds)
    return ds


def export_folder(ds: Flowers17, out, quality: int = 90) -> Path:
    """Write `ds` as an official-layout folder (``out/jpg/image_NNNN.jpg`` + ``files.txt``) of
    JPEGs at the size it was decoded at, with a PROVENANCE.txt saying how it was made.

    A compact copy to carry where the data cannot be downloaded (the 1360 images at 256x256 are
    about a third of the 60 MB archive). The folder appears whole or not at all.
    """
    from PIL import Image

    from .data_sources import progress

    out = Path(out)
    if ds.numbers.min() < 1:
        raise DatasetError(f"{ds.source}: the source records no image numbers; cannot name image_NNNN.jpg files")
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".part"))
    try:
        (tmp / "jpg").mkdir()
        names = []
        for image, number in progress(zip(ds.images, ds.numbers, strict=True), len(ds), f"writing {out}"):
            names.append(f"image_{int(number):04d}.jpg")
            Image.fromarray(image).save(tmp / "jpg" / names[-1], quality=quality)
        (tmp / "jpg" / "files.txt").write_text("\n".join(names) + "\n")
        (tmp / "PROVENANCE.txt").write_text(
            f"Made by alexnet_split.data.export_folder from {ds.source}: each image's short side resized to "
            f"{ds.images.shape[1]} px (bilinear), centre square, JPEG quality {quality}.\n")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# --------------------------------------------------------------------------- splits


def stratified_split(labels, seed: int, per_class=(40, 20, 20)) -> dict[str, np.ndarray]:
    """Deterministic per-class split into train/val/test indices (default 40/20/20 per class,
    the official split sizes)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        if len(idx) < sum(per_class):
            raise ValueError(f"class {c} ({CLASS_NAMES[c]}) has {len(idx)} images, split needs {sum(per_class)}")
        idx = rng.permutation(idx)
        a, b, t = per_class
        parts["train"].append(idx[:a])
        parts["val"].append(idx[a:a + b])
        parts["test"].append(idx[a + b:a + b + t])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def official_split(ds: Flowers17, mat_path, which: int = 1) -> dict[str, np.ndarray]:
    """Indices into `ds` for the official split ``trn{which}``/``val{which}``/``tst{which}``."""
    from scipy.io import loadmat

    if which not in (1, 2, 3):
        raise ValueError(f"official split must be 1, 2 or 3, got {which!r}")
    if not ds.numbers.any():
        raise DatasetError(f"{ds.source}: this source has no image numbers (tflearn's pickle); "
                           "official splits need the jpg folder or the archive")
    try:
        mat = loadmat(mat_path)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{mat_path}: cannot read the splits file ({e})") from None
    position = {int(n): i for i, n in enumerate(ds.numbers)}
    out = {}
    for key, part in (("trn", "train"), ("val", "val"), ("tst", "test")):
        name = f"{key}{which}"
        if name not in mat:
            has = sorted(k for k in mat if not k.startswith("__"))
            raise DatasetError(f"{mat_path}: no variable {name!r} (has {has})")
        nums = np.asarray(mat[name]).ravel().astype(int)
        bad = [n for n in nums if n not in position]
        if bad:
            raise DatasetError(f"{mat_path}: {name} lists image numbers outside 1..{NUM_IMAGES}: {bad[:5]}")
        out[part] = np.sort([position[n] for n in nums])
    return out
