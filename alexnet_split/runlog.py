"""What every command writes beside its results: files that appear whole or not at all, JSON,
and the provenance of a run (git commit, machine, versions)."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

TMP_MARK = ".tmp"  # in the name of every temporary file `replacing` makes


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary path beside `path`, renamed over it when the block ends without an
    error and removed otherwise: a reader (or a kill) never sees a half-written file. The
    temporary name keeps the suffix (``.foo.tmp123.keras``): Keras's save requires it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_partial_files(*folders):
    """Delete the temporary files :func:`replacing` left in `folders` when a kill cut it short."""
    for folder in folders:
        for f in Path(folder).glob(f".*{TMP_MARK}*"):
            if re.fullmatch(rf"\..+{re.escape(TMP_MARK)}\d+(\.\w+)?", f.name) and f.is_file():
                f.unlink()


def check_folder(path, what: str):
    """Refuse (ValueError naming it) a folder path that is a file or lies under one, before
    anything is written there; a missing folder is fine (it is made when the first file is)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "is a file" if p == path else f"lies under {p}, a file"
                raise ValueError(f"{what} {path} {where}; give a folder path (a missing folder is made)")
            return


def atomic_write(path, content: str | bytes):
    with replacing(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content)


def write_figure(fig, path, **savefig):
    """Save a ``matplotlib.figure.Figure`` whole (format from the suffix). No software or date stamp,
    so a figure regenerates byte for byte. The figure is not pyplot's, so there is nothing to close."""
    import io

    fmt = Path(path).suffix.lstrip(".") or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else {"Software": None}, **savefig)
    atomic_write(path, buf.getvalue())


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def git_commit() -> str:
    """HEAD of the checkout this package runs from, "-dirty" with uncommitted changes."""
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """The CPU model and core count, and the accelerator when the JAX backend has one."""
    import keras

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    accel = ""
    if keras.backend.backend() == "jax":
        import jax

        d = jax.devices()[0]
        accel = "" if d.platform == "cpu" else f"; {d.device_kind} ({d.platform})"
    return f"{cpu}, {os.cpu_count()} cores{accel}"


def versions() -> dict:
    import keras
    import numpy as np

    v = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    for mod in ("tensorflow", "jax"):
        if mod in sys.modules:
            v[mod] = sys.modules[mod].__version__
    return v


def quiet_tensorflow_import():
    """Keep TensorFlow's C++ start-up banner (absl INFO lines, oneDNN notes, a cuInit "error" on a
    machine without CUDA) off the terminal whenever this process imports TensorFlow, and keep its
    C++ log at level 3 (errors off) after that. Imports nothing itself. Called where the command
    line starts (:func:`alexnet_split.cli.main`) and where its spawned workers start: importing
    the package changes nothing global.

    The banner is written to file descriptor 2 before TensorFlow reads TF_CPP_MIN_LOG_LEVEL (so
    a user's own ``TF_CPP_MIN_LOG_LEVEL=3`` cannot hide it): the first ``import tensorflow``
    (Keras's, or anyone's) runs with fd 2 pointed at a temporary file, which is replayed if the
    import fails. The level is set to 3 whatever it was: TensorFlow's log comes back only with
    ``alexnet-split --verbose`` (ALEXNET_SPLIT_VERBOSE=1), so no setting makes the terminal louder
    by accident. Children inherit the choice through the environment."""
    if os.environ.get("ALEXNET_SPLIT_VERBOSE") == "1":
        return
    os.environ.update(TF_CPP_MIN_LOG_LEVEL="3", _ALEXNET_SPLIT_QUIET="1")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def quiet_like_the_parent():
    """In a spawned worker: quiet TensorFlow's import when the process that started it was quiet."""
    if os.environ.get("_ALEXNET_SPLIT_QUIET") == "1":
        quiet_tensorflow_import()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once (then leaves sys.meta_path) and loads it with fd 2 muted."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _MutedLoader(spec.loader)
        return spec


class _MutedLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # the real one from here on
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as log:
            os.dup2(log.fileno(), 2)
            try:
                self.loader.exec_module(module)
            except Exception:  # its log says why (not on Ctrl-C)
                os.dup2(saved, 2)
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)


def shell_path(path) -> str:
    """`path` as a shell argument from the working directory: relative below it, else absolute."""
    path = Path(path).resolve()
    rel = os.path.relpath(path)
    return shlex.quote(path.as_posix() if rel.startswith("..") else Path(rel).as_posix())
