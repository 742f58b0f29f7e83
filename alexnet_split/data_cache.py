"""The decoded-image cache: each source decoded at one size and resize is kept as one ``.npz`` in
:func:`cache_dir`, so a run decodes Flowers 17 once per size, and never writes into the data folder.
``alexnet-split cache`` lists (:func:`cache_entries`) and clears (:func:`clear_cache`) it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np

from .data import Flowers17
from .runlog import replacing


def cache_path(kind: str, path: Path, size: int, resize: str) -> Path:
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


def read_cache(cache_file: Path) -> Flowers17 | None:
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file) as z:
            return Flowers17(z["images"], z["labels"], z["numbers"], str(z["source"]))
    except (OSError, ValueError, KeyError, EOFError):
        with contextlib.suppress(OSError):
            cache_file.unlink()  # a stale or damaged cache is rebuilt, never trusted
        return None


def write_cache(cache_file: Path, ds: Flowers17):
    """Best effort: a cache folder that cannot be written costs a decode next time, nothing else."""
    try:
        with replacing(cache_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=ds.images, labels=ds.labels, numbers=ds.numbers, source=np.array(ds.source))
    except OSError as e:
        warnings.warn(f"decoded images not cached ({e}); set ALEXNET_SPLIT_CACHE to a writable folder", stacklevel=3)
