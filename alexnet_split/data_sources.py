"""Where Flowers 17 comes from, read into decoded arrays: the extracted folder, the official archive
(read in place), tflearn's pickle, or a download of the archive; and the checks that name a bad file.

Sources, in order of preference, inside one data directory (``--data``, ``$FLOWERS17_DIR`` or
``~/.cache/alexnet_split/17flowers``); ``--data`` may also name the archive or the pickle itself:

1. an extracted ``jpg/`` folder (flat ``jpg/image_0001.jpg`` ... or tflearn's ``jpg/<k>/``);
2. the official archive ``17flowers.tgz`` (read in place, never extracted);
3. tflearn's cache ``17flowers.pkl`` (read with a numpy-only unpickler);
4. a download of ``17flowers.tgz`` from the official VGG page: only into the default folder
   ``~/.cache/alexnet_split/17flowers``, or into another one when asked (``download=True``,
   ``--download``). A path that does not exist is an error naming it.

Nothing here writes into the data folder but an allowed download (:func:`locate`);
:func:`alexnet_split.data.load` picks the source and caches what it decodes elsewhere.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import socket
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np

from .data import (
    ARCHIVE,
    NUM_CLASSES,
    NUM_IMAGES,
    PICKLE,
    RESIZES,
    URL,
    DatasetError,
    Flowers17,
    label_of,
    numbers_to_labels,
)
from .runlog import replacing
from .tflearn_compat import TFLEARN_LABEL_TO_CLASS

_IMAGE_RE = re.compile(r"(?:^|/)image_(\d{4})\.jpe?g$", re.IGNORECASE)


def default_dir() -> Path:
    """``$FLOWERS17_DIR``, else ``~/.cache/alexnet_split/17flowers`` (the only folder downloaded into
    unasked)."""
    env = os.environ.get("FLOWERS17_DIR")
    return Path(env) if env else Path.home() / ".cache" / "alexnet_split" / "17flowers"



# --------------------------------------------------------------------------- decoding


def resize_image(im, size: int, resize: str = "crop"):
    """A PIL image -> size x size, by `resize` (see RESIZES): "crop" is the paper's short side to
    `size` then the central square; "squash" is tflearn's whole image resized with LANCZOS."""
    from PIL import Image

    if resize == "squash":
        return im.resize((size, size), Image.LANCZOS)
    if resize != "crop":
        raise ValueError(f"resize must be one of {sorted(RESIZES)}, got {resize!r}")
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def decode_resize(data: bytes, size: int, name: str, resize: str = "crop") -> np.ndarray:
    """JPEG bytes -> uint8 size x size x 3, resized by `resize` (:func:`resize_image`)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decodes fully, so a truncated file fails here
            return np.asarray(resize_image(im.convert("RGB"), size, resize), dtype=np.uint8)
    except Exception as e:  # PIL raises several types for bad data
        raise DatasetError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None


def _check_numbers(numbers, where: str):
    found = sorted(numbers)
    if found != list(range(1, NUM_IMAGES + 1)):
        missing = sorted(set(range(1, NUM_IMAGES + 1)) - set(found))
        extra = len(found) - len(set(found))
        raise DatasetError(
            f"{where}: expected image_0001.jpg .. image_{NUM_IMAGES:04d}.jpg, found {len(found)} images"
            + (f"; missing {_fmt_numbers(missing)}" if missing else "")
            + (f"; {extra} duplicates" if extra else "")
        )


def _fmt_numbers(nums, limit=5):
    s = ", ".join(f"image_{n:04d}.jpg" for n in nums[:limit])
    return s + (f" and {len(nums) - limit} more" if len(nums) > limit else "")


def progress(iterable, total: int, what: str):
    """A plain progress bar on stderr (no dependency), refreshed at most 10 times a second."""
    last = 0.0
    for i, item in enumerate(iterable, 1):
        now = time.monotonic()
        if sys.stderr.isatty() and (now - last > 0.1 or i == total):
            filled = int(30 * i / max(total, 1))
            print(f"\r{what} [{'#' * filled}{'.' * (30 - filled)}] {i}/{total}", end="", file=sys.stderr)
            last = now
        yield item
    if sys.stderr.isatty():
        print(file=sys.stderr)


def read_folder(folder: Path, size: int, resize: str = "crop") -> Flowers17:
    files = {}
    for p in folder.rglob("*"):
        m = _IMAGE_RE.search(p.as_posix())
        if m and p.is_file():
            files[int(m.group(1))] = p
    _check_numbers(list(files), str(folder))
    numbers = np.arange(1, NUM_IMAGES + 1)
    images = np.stack([decode_resize(files[n].read_bytes(), size, str(files[n]), resize)
                       for n in progress(numbers, NUM_IMAGES, f"decoding {folder}")])
    return Flowers17(images, np.array([label_of(n) for n in numbers]), numbers, str(folder))


def read_archive(path: Path, size: int, resize: str = "crop") -> Flowers17:
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetError(f"{path}: not a readable tar archive ({e})") from None
    decoded = {}
    with tar:
        try:
            members = [m for m in tar.getmembers() if m.isfile() and _IMAGE_RE.search(m.name)]
            if not members:
                raise DatasetError(f"{path}: no jpg/image_NNNN.jpg files inside; is this the Flowers 17 archive?")
            _check_numbers([int(_IMAGE_RE.search(m.name).group(1)) for m in members], str(path))
            for m in progress(members, len(members), f"decoding {path.name}"):
                n = int(_IMAGE_RE.search(m.name).group(1))
                decoded[n] = decode_resize(tar.extractfile(m).read(), size, f"{path}:{m.name}", resize)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: archive is truncated or corrupt ({type(e).__name__}: {e})") from None
    numbers = np.arange(1, NUM_IMAGES + 1)
    return Flowers17(np.stack([decoded[n] for n in numbers]), numbers_to_labels(numbers), numbers, str(path))


# --------------------------------------------------------------------------- tflearn's pickle


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Allows numpy arrays and scalars and nothing else: a pickle cannot run code on load."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")


# tflearn 0.5.0 moves the images into folders 0..16 (class c in folder str(c)) and labels each folder
# by its position in sorted() order of the names, so its label j is the class whose folder name


def read_tflearn_pickle(path: Path, size: int | None = None, resize: str = "crop") -> Flowers17:
    """tflearn's ``17flowers.pkl``: ``(X, Y)``, X float images in [0, 1] (an array, or a list of
    arrays when unshuffled), Y tflearn's labels (ints or one-hot). Returns uint8 images in the
    pickle's order and the true classes; a pickle of another size is resized by `resize`."""
    x, y = _unpickle_xy(path)
    if x.ndim != 4 or x.shape[-1] != 3 or len(x) != len(y):
        raise DatasetError(f"{path}: expected (X, Y) with X of shape (N, H, W, 3), got X {x.shape}, Y {y.shape}")
    if len(x) != NUM_IMAGES:
        raise DatasetError(f"{path}: holds {len(x)} images, Flowers 17 has {NUM_IMAGES}")
    raw = y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)
    if raw.min() < 0 or raw.max() >= NUM_CLASSES:
        raise DatasetError(f"{path}: labels outside 0..16 (min {raw.min()}, max {raw.max()})")
    images = np.clip(np.rint(x.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if size is not None and images.shape[1:3] != (size, size):
        images = np.stack([_resize_array(im, size, resize) for im in images])
    return Flowers17(images, TFLEARN_LABEL_TO_CLASS[raw], np.zeros(len(raw), np.int64), str(path))


def _unpickle_xy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            x, y = _NumpyOnlyUnpickler(f).load()
        return np.asarray(x), np.asarray(y)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, OSError) as e:
        raise DatasetError(f"{path}: unreadable tflearn pickle ({type(e).__name__}: {e})") from None


def _resize_array(im: np.ndarray, size: int, resize: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(resize_image(Image.fromarray(im), size, resize), dtype=np.uint8)


# --------------------------------------------------------------------------- download


def download_file(url: str, dest: Path, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download the Flowers 17 archive `url` to `dest` with ``keras.utils.get_file`` (its
    progress bar), atomically (:func:`alexnet_split.runlog.replacing`), and check what it holds
    (:func:`check_archive`) before it takes the name `dest`. A failed transfer, or one stalled for
    `timeout` seconds, deletes its partial file and retries from scratch; no digest is pinned
    (copies are re-packed)."""
    import keras

    dest = Path(dest)
    last_error = None
    for attempt in range(1, retries + 1):
        try:
            with replacing(dest) as part, _socket_timeout(timeout):
                keras.utils.get_file(part.name, url, cache_dir=str(part.parent), cache_subdir="")
                check_archive(part, dest)
            return dest
        except DatasetError:
            raise
        except Exception as e:  # get_file raises a bare Exception for a failed or short transfer
            last_error = e
            if attempt < retries:
                time.sleep(min(2 ** attempt, 10) * float(os.environ.get("ALEXNET_SPLIT_RETRY_DELAY", "1")))
    raise DatasetError(f"download of {url} to {dest} failed after {retries} attempts: {last_error}")


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """get_file's urllib reads honour the socket default timeout; it has no argument of its own."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def check_archive(path: Path, name=None):
    """What the Flowers 17 archive `path` must hold: ``jpg/files.txt`` and image_0001.jpg ..
    image_1360.jpg, each a decodable JPEG. Errors name `name` (default `path`)."""
    from PIL import Image

    name = name or path
    try:
        with tarfile.open(path, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            if not any(m.name.endswith("files.txt") for m in members):
                raise DatasetError(f"{name}: no jpg/files.txt inside; is this the Flowers 17 archive?")
            images = [m for m in members if _IMAGE_RE.search(m.name)]
            _check_numbers([int(_IMAGE_RE.search(m.name).group(1)) for m in images], str(name))
            for m in images:
                with Image.open(io.BytesIO(tar.extractfile(m).read())) as im:
                    im.verify()
    except (tarfile.TarError, OSError, EOFError, zlib.error, SyntaxError) as e:
        raise DatasetError(f"{name}: not a readable Flowers 17 archive ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------- the source to read


ACCEPTED = (f"a data folder (holding jpg/, {ARCHIVE} or {PICKLE}), the archive {ARCHIVE} itself (any name; "
            f"a gzipped tar) or tflearn's pickle {PICKLE} itself (any name)")
_FILE_SUFFIXES = (".tgz", ".gz", ".pkl", ".tar")


def find_source(root: Path) -> tuple[str, Path]:
    """The best available source in `root`: ("folder" | "archive" | "pickle" | "download", path).
    `root` may also be the archive or the pickle file itself; a `root` that does not exist is an error."""
    root = Path(root)
    if root.is_file():
        with open(root, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":  # gzip: the official archive is a .tgz
            return "archive", root
        if head[:1] == b"\x80":  # a pickle (protocol 2+), as tflearn writes 17flowers.pkl
            return "pickle", root
        raise DatasetError(f"{root}: not a Flowers 17 source (neither a gzipped tar nor a pickle). Accepted: "
                           f"{ACCEPTED}")
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder. Accepted: {ACCEPTED}")
    if (root / "jpg").is_dir():
        return "folder", root / "jpg"
    if (root / ARCHIVE).is_file():
        return "archive", root / ARCHIVE
    if (root / PICKLE).is_file():
        return "pickle", root / PICKLE
    return "download", root / ARCHIVE


def locate(root=None, download: bool = False, url: str = URL + ARCHIVE) -> tuple[str, Path]:
    """The source to read (:func:`find_source`), after downloading the archive where that is allowed:
    into the default folder (`root` None and no ``$FLOWERS17_DIR``), or into `root` when `download`.

    So a mistyped path is an error naming it, never a download target; a failed download removes
    what it made, the folders included.
    """
    may_download = download or (root is None and not os.environ.get("FLOWERS17_DIR"))
    root = Path(root) if root is not None else default_dir()
    if may_download and not root.exists() and root.suffix not in _FILE_SUFFIXES:
        kind, path = "download", root / ARCHIVE
    else:
        kind, path = find_source(root)
    if kind != "download":
        return kind, path
    if not may_download:
        raise DatasetError(f"{root}: holds no Flowers 17 data (jpg/, {ARCHIVE} or {PICKLE}); --download "
                           f"(download=True) downloads {ARCHIVE} into it")
    with _made_for(root):
        download_file(url, path)
    return "archive", path


@contextlib.contextmanager
def _made_for(folder: Path):
    """Makes `folder` and its missing parents; removes those it made if the block fails."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for p in made:
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
