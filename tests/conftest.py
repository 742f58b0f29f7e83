"""Test session set-up: two logical CPU devices, created before TensorFlow's runtime starts."""

import atexit
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Decoded images are cached in a folder of this session (its subprocesses inherit it), never in the
# user's ~/.cache/alexnet_split.
os.environ["ALEXNET_SPLIT_CACHE"] = tempfile.mkdtemp(prefix="alexnet_split_test_cache_")
atexit.register(shutil.rmtree, os.environ["ALEXNET_SPLIT_CACHE"], ignore_errors=True)

import alexnet_split  # noqa: E402  (imports TensorFlow quietly: alexnet_split.runlog)

DEVICES = alexnet_split.configure_devices(2, prefer="cpu")

# The real Oxford Flowers 17 archive (CI has it beside the checkout, as this project's machines do).
REAL_ARCHIVE = Path(os.environ.get("FLOWERS17_ARCHIVE",
                                   Path(__file__).resolve().parents[2] / "shared/data/17flowers.tgz"))

# Smallest square inputs each layout accepts (the feature map must survive every pooling).
SMALL_INPUT = {"paper": (67, 67, 3), "seed": (215, 215, 3)}


def run_check(module, check, *args, backend="tensorflow", env=None, timeout=600):
    """``python tests/MODULE.py CHECK ARGS`` in a fresh interpreter (device configuration is per
    process): KERAS_BACKEND=`backend`, JAX on the CPU, plus the variables in `env`."""
    full = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu") | (env or {})
    script = Path(__file__).with_name(f"{module}.py")
    return subprocess.run([sys.executable, str(script), check, *map(str, args)], capture_output=True, text=True,
                          env=full, timeout=timeout)


def cli(*args, timeout=600, env=None, **kw):
    """``alexnet-split ARGS`` in a fresh process: TensorFlow backend, no GPU, no TF_CONFIG. `env`:
    variables to set, or to remove (value None)."""
    full = dict(os.environ, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    full.pop("TF_CONFIG", None)
    for k, v in (env or {}).items():
        full.pop(k, None) if v is None else full.__setitem__(k, v)
    return subprocess.run([sys.executable, "-m", "alexnet_split.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=full, **kw)


def history(run) -> list[dict]:
    """A run folder's history.csv: one dict of strings per validation interval."""
    with open(Path(run) / "history.csv") as f:
        return list(csv.DictReader(f))


# A test that trains or starts a process says so with @pytest.mark.slow (a module that holds only such
# tests: `pytestmark = pytest.mark.slow`); `pytest -m "not slow"` is the quick loop.


# --- synthetic Flowers 17: 1360 tiny JPEGs whose colour encodes their class -----------------


def colour(c):  # class c -> a colour that survives JPEG compression
    return (12 + 14 * c, 240 - 13 * c, 128)


def jpeg_bytes(c, w=24, h=20):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour(c)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def class_from_pixels(images):
    return np.rint((images[:, :, :, 0].mean(axis=(1, 2)) - 12) / 14).astype(int)


@pytest.fixture(scope="session")
def jpg_dir(tmp_path_factory):
    from alexnet_split import data

    root = tmp_path_factory.mktemp("flowers") / "jpg"
    root.mkdir()
    for n in range(1, 1361):
        (root / f"image_{n:04d}.jpg").write_bytes(jpeg_bytes(data.label_of(n)))
    (root / "files.txt").write_text("\n".join(f"image_{n:04d}.jpg" for n in range(1, 1361)))
    return root


@pytest.fixture(scope="session")
def data_root(jpg_dir, tmp_path_factory):
    """A data folder as users give it (``--data DIR`` holding ``jpg/``) with the synthetic images."""
    root = tmp_path_factory.mktemp("flowers_root")
    (root / "jpg").symlink_to(jpg_dir, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def real_flowers(tmp_path_factory):
    """The real Flowers 17 at 64x64 (decoded once per session)."""
    if not REAL_ARCHIVE.is_file():
        pytest.skip(f"real archive not at {REAL_ARCHIVE}")
    from alexnet_split import data

    root = tmp_path_factory.mktemp("real_flowers")
    (root / data.ARCHIVE).symlink_to(REAL_ARCHIVE)
    return data.load(root, size=64)
