"""Oxford Flowers 17 (Nilsback & Zisserman 2006): sources, decoding, labels, splits and caching.

Sources, in order of preference, inside one data directory (``--data``, ``$FLOWERS17_DIR`` or
``~/.cache/alexnet_split/17flowers``); ``--data`` may also name the archive or the pickle itself:

1. an extracted ``jpg/`` folder (flat ``jpg/image_0001.jpg`` ... or tflearn's ``jpg/<k>/``);
2. the official archive ``17flowers.tgz`` (read in place, never extracted);
3. tflearn's cache ``17flowers.pkl`` (read with a numpy-only unpickler);
4. a download of ``17flowers.tgz`` from the official VGG page: only into the default folder
   ``~/.cache/alexnet_split/17flowers``, or into another one when asked (``download=True``,
   ``--download``). A path that does not exist is an error naming it.

The loader only reads the data folder: decoded arrays are cached in :func:`cache_dir`.
Labels are ``(image number - 1) // 80``: the images come in 17 consecutive blocks of 80.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import pickle
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from .runlog import replacing

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
_IMAGE_RE = re.compile(r"(?:^|/)image_(\d{4})\.jpe?g$", re.IGNORECASE)
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


def default_dir() -> Path:
    """``$FLOWERS17_DIR``, else ``~/.cache/alexnet_split/17flowers`` (the only folder downloaded into
    unasked)."""
    env = os.environ.get("FLOWERS17_DIR")
    return Path(env) if env else Path.home() / ".cache" / "alexnet_split" / "17flowers"


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


def _progress(iterable, total: int, what: str):
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
                       for n in _progress(numbers, NUM_IMAGES, f"decoding {folder}")])
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
            for m in _progress(members, len(members), f"decoding {path.name}"):
                n = int(_IMAGE_RE.search(m.name).group(1))
                decoded[n] = decode_resize(tar.extractfile(m).read(), size, f"{path}:{m.name}", resize)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: archive is truncated or corrupt ({type(e).__name__}: {e})") from None
    numbers = np.arange(1, NUM_IMAGES + 1)
    return Flowers17(np.stack([decoded[n] for n in numbers]), numbers_to_labels(numbers), numbers, str(path))


def numbers_to_labels(numbers) -> np.ndarray:
    return np.array([label_of(int(n)) for n in numbers], dtype=np.int64)


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
# sorts j-th: 0, 1, 10, 11, ..., 16, 2, 3, ..., 9.
TFLEARN_LABEL_TO_CLASS = np.array(sorted(range(NUM_CLASSES), key=str))
TFLEARN_LABELS = np.argsort(TFLEARN_LABEL_TO_CLASS)  # class c -> tflearn's label of c


def tflearn_labels(classes) -> np.ndarray:
    """True classes -> the labels tflearn's ``oxflower17.load_data`` gives the same images."""
    return TFLEARN_LABELS[np.asarray(classes, dtype=np.int64)]


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


# --------------------------------------------------------------------------- loading + cache


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


def load(root=None, size: int = 256, cache: bool = True, url: str = URL + ARCHIVE, resize: str = "crop",
         download: bool = False) -> Flowers17:
    """Load Flowers 17 decoded at size x size by `resize` (RESIZES), from the best source in `root`
    (see the module doc and :func:`locate`, which says when `url` is downloaded).

    Reads the data folder and nothing else: decoded arrays are cached in :func:`cache_dir`, keyed
    by the source file, `size` and `resize`.
    """
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {sorted(RESIZES)}, got {resize!r}")
    kind, path = locate(root, download, url)
    cache_file = _cache_path(kind, path, size, resize)
    ds = _read_cache(cache_file) if cache else None
    if ds is None:
        reader = {"folder": read_folder, "archive": read_archive, "pickle": read_tflearn_pickle}[kind]
        ds = reader(path, size, resize)
        if cache:
            _write_cache(cache_file, ds)
    return ds


def _cache_path(kind: str, path: Path, size: int, resize: str) -> Path:
    st = path.stat()
    if kind == "folder":  # a folder's identity: its file names, sizes and times
        st_key = "".join(f"{p.name}{p.stat().st_size}{p.stat().st_mtime_ns}" for p in sorted(path.rglob("*.jp*g")))
    else:
        st_key = f"{st.st_size}{st.st_mtime_ns}"
    key = hashlib.sha256(f"{kind}|{path.resolve()}|{st_key}|{size}|{resize}|v2".encode()).hexdigest()[:16]
    return cache_dir() / f"flowers17_{kind}_{size}px_{resize}_{key}.npz"


def cache_dir() -> Path:
    """Where decoded images are cached: ``$ALEXNET_SPLIT_CACHE``, else ``~/.cache/alexnet_split/decoded``;
    never the data folder, which the loader only reads."""
    if os.environ.get("ALEXNET_SPLIT_CACHE"):
        return Path(os.environ["ALEXNET_SPLIT_CACHE"])
    return Path.home() / ".cache" / "alexnet_split" / "decoded"


_CACHE_NAME = re.compile(r"flowers17_(folder|archive|pickle)_(\d+)px_(\w+?)_[0-9a-f]{16}\.npz")


def cache_entries(folder=None) -> list[dict]:
    """The decoded-image files in the cache `folder` (default :func:`cache_dir`): path, source kind,
    image size, resize and bytes, largest first. Other files in the folder are not the cache's."""
    folder = Path(folder) if folder else cache_dir()
    entries = []
    for path in sorted(folder.glob("flowers17_*.npz")) if folder.is_dir() else []:
        m = _CACHE_NAME.fullmatch(path.name)
        if m and path.is_file():
            entries.append({"path": path, "kind": m[1], "size": int(m[2]), "resize": m[3],
                            "bytes": path.stat().st_size})
    return sorted(entries, key=lambda e: -e["bytes"])


def clear_cache(folder=None) -> int:
    """Delete the decoded-image files of :func:`cache_entries`; returns the bytes freed. The next
    load decodes again (about a minute per image size on 2 cores)."""
    freed = 0
    for entry in cache_entries(folder):
        with contextlib.suppress(FileNotFoundError):
            entry["path"].unlink()
            freed += entry["bytes"]
    return freed


def _read_cache(cache_file: Path) -> Flowers17 | None:
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file) as z:
            return Flowers17(z["images"], z["labels"], z["numbers"], str(z["source"]))
    except (OSError, ValueError, KeyError, EOFError):
        with contextlib.suppress(OSError):
            cache_file.unlink()  # a stale or damaged cache is rebuilt, never trusted
        return None


def _write_cache(cache_file: Path, ds: Flowers17):
    """Best effort: a cache folder that cannot be written costs a decode next time, nothing else."""
    try:
        with replacing(cache_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=ds.images, labels=ds.labels, numbers=ds.numbers, source=np.array(ds.source))
    except OSError as e:
        warnings.warn(f"decoded images not cached ({e}); set ALEXNET_SPLIT_CACHE to a writable folder", stacklevel=3)


def export_folder(ds: Flowers17, out, quality: int = 90) -> Path:
    """Write `ds` as an official-layout folder (``out/jpg/image_NNNN.jpg`` + ``files.txt``) of
    JPEGs at the size it was decoded at, with a PROVENANCE.txt saying how it was made.

    A compact copy to carry where the data cannot be downloaded (the 1360 images at 256x256 are
    about a third of the 60 MB archive). The folder appears whole or not at all.
    """
    from PIL import Image

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
        for image, number in _progress(zip(ds.images, ds.numbers, strict=True), len(ds), f"writing {out}"):
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


# --------------------------------------------------------------------------- tflearn API


def load_data(dirname=None, resize_pics=(224, 224), shuffle=True, one_hot=False, true_labels=False, seed=0,
              resize="squash", download=False):
    """tflearn 0.5.0's ``oxflower17.load_data`` without tflearn (which cannot import under TF 2.x).

    Returns tflearn's ``(X, Y)``: X float32 (1360, h, w, 3) in [0, 1], each whole image squashed to
    `resize_pics` with LANCZOS; Y tflearn's folder-id labels (int64, or one-hot float64), which are
    not the true classes (:data:`TFLEARN_LABELS`). ``true_labels=True`` gives the true classes;
    ``resize="crop"`` the paper's short side and central square. Unshuffled, the images come by
    label, then image number (tflearn: by label, then directory order); a pickle keeps its order.
    The shuffle is seeded by `seed` (tflearn's is not). `dirname`: a folder, archive or pickle
    as :func:`load` reads; None is the default folder (tflearn's is ``./17flowers``), which is
    downloaded into as :func:`locate` says.
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
